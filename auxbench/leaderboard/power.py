"""Power: what a column of seeds could have detected, and how many seeds it needs to detect a
stated effect. Used by the leaderboard's answer (every column says what its "no difference"
means) and by ``auxbench run --dry-run`` (before spending the seeds).

The unit is the paired difference from the baseline over seeds (the test the leaderboard runs):
its seed-to-seed SD, pooled over the column's methods, is the noise a comparison has to beat.
Every comparison is judged at alpha / m, the strictest level Holm applies to a family of m
comparisons with the baseline, with the t-test's power from the noncentral t
(:func:`auxbench.leaderboard.stats.min_detectable_effect`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from auxbench.leaderboard import stats as S

POWER = 0.8
MAX_SEEDS = 1000


@dataclass(frozen=True)
class ColumnPower:
    """One column: the pooled SD of paired differences from the baseline (``sd``, on ``df``
    degrees of freedom), the seeds it has (``n``), the comparisons in its family (``m``), the
    smallest difference it detects with 80 % power (``detectable``) and, for an ``effect``, the
    seeds that effect needs (``needed``; 0 when not asked, ``MAX_SEEDS`` + 1 when out of reach)."""

    sd: float
    df: int
    n: int
    m: int
    alpha: float
    detectable: float
    effect: float | None = None
    needed: int = 0


def pooled_sd(differences: list[np.ndarray]) -> tuple[float, int]:
    """SD of the per-seed paired differences, pooled over methods (each weighted by its df)."""
    usable = [np.asarray(d, dtype=float) for d in differences if np.size(d) >= 2]
    df = sum(d.size - 1 for d in usable)
    if df == 0:
        return math.nan, 0
    return math.sqrt(sum(float(np.var(d, ddof=1)) * (d.size - 1) for d in usable) / df), df


def detectable(sd: float, n: int, alpha: float, m: int, power: float = POWER) -> float:
    """The difference a paired t-test on n seeds detects with ``power`` at level alpha / m."""
    if not (sd > 0 and n >= 2 and m >= 1):
        return math.nan
    return S.min_detectable_effect(sd / math.sqrt(n), n - 1, alpha / m, power)


def seeds_needed(sd: float, effect: float, alpha: float, m: int, power: float = POWER) -> int:
    """Fewest seeds whose paired t-test detects ``effect`` with ``power`` at alpha / m
    (``MAX_SEEDS + 1`` when even ``MAX_SEEDS`` do not; 2 when there is no noise)."""
    if not sd > 0:
        return 2
    low, high = 2, MAX_SEEDS
    if detectable(sd, high, alpha, m, power) > effect:
        return MAX_SEEDS + 1
    while low < high:  # detectable() falls as n grows
        mid = (low + high) // 2
        if detectable(sd, mid, alpha, m, power) <= effect:
            high = mid
        else:
            low = mid + 1
    return low


def column_power(differences: list[np.ndarray], n: int, alpha: float, m: int,
                 effect: float | None = None) -> ColumnPower:
    """:class:`ColumnPower` from a column's paired differences with its baseline."""
    sd, df = pooled_sd(differences)
    needed = seeds_needed(sd, effect, alpha, m) if effect and math.isfinite(sd) else 0
    return ColumnPower(sd, df, n, m, alpha, detectable(sd, n, alpha, m), effect, needed)


def in_words(p: ColumnPower, unit: float = 1.0, unit_name: str = "") -> str:
    """"differences under 4.1 points are not detectable with 3 seeds ..." (``unit``: the size of one
    printed unit, 0.01 for accuracy points; ``unit_name`` its name)."""
    def size(x: float) -> str:
        v = x / unit
        text = f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 10 else f"{v:.0f}"
        return f"{text} {unit_name}".strip()

    if not math.isfinite(p.sd):
        return "its noise cannot be estimated (fewer than 2 seeds paired with the baseline)"
    family = f"Holm over {p.m} comparison{'s' if p.m != 1 else ''} with the baseline"
    text = (f"differences under {size(p.detectable)} are not reliably detectable with {p.n} seeds "
            f"(80 % power, {family}; seed-to-seed SD of a difference {size(p.sd)})")
    if p.effect:
        need = f"more than {MAX_SEEDS}" if p.needed > MAX_SEEDS else f"about {p.needed}"
        text += f"; detecting {size(p.effect)} needs {need} seeds"
    return text
