"""How a leaderboard writes numbers and tables: each number at the precision its uncertainty
supports, p-values, effect sizes, intervals, seed lists, GitHub-flavoured tables, file names."""
from __future__ import annotations

import math
import re

from tabulate import tabulate


def decimals_for(scale: float | None, x: float) -> int:
    """Decimals that show a number at the precision its uncertainty supports: two significant
    digits of ``scale`` (an interval half-width or SD) when it is known and positive, else four
    significant digits of ``x``."""
    if scale is not None and math.isfinite(scale) and scale > 0:
        return max(0, 1 - math.floor(math.log10(scale)))
    if x == 0 or not math.isfinite(x):
        return 4
    return max(0, 3 - math.floor(math.log10(abs(x))))


def number(x, scale: float | None = None, signed: bool = False, decimals: int | None = None) -> str:
    """A number at the precision of ``scale`` (see :func:`decimals_for`); '–' for a missing value.
    Beyond 6 decimals it switches to scientific notation, so 2e-5 never prints as 0.0000."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    d = decimals_for(scale, x) if decimals is None else decimals
    sign = "+" if signed else ""
    if d <= 6 or x == 0:
        return format(round(x, min(d, 6)) or 0.0, f"{sign}.{min(d, 6)}f")  # no "-0.0000"
    significant = max(1, math.floor(math.log10(abs(x))) + d + 1)
    return format(x, f"{sign}.{significant - 1}e")


def half_width(low: float, high: float) -> float:
    return (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan


def p_text(p: float) -> str:
    return "–" if math.isnan(p) else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def g_text(g: float) -> str:
    """Effect sizes to 2 decimals: their own uncertainty with a few seeds is far larger."""
    return "–" if math.isnan(g) else ("+inf" if g == math.inf else "-inf" if g == -math.inf else f"{g:+.2f}")


def ci_text(low: float, high: float, scale: float | None = None) -> str:
    if math.isnan(low):
        return "–"
    scale = half_width(low, high) if scale is None else scale
    return f"[{number(low, scale)}, {number(high, scale)}]"


def seeds_text(seeds) -> str:
    return ", ".join(str(s) for s in seeds) if isinstance(seeds, list) and seeds else ""


def markdown_table(rows: list[list[str]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def file_slug(text: str) -> str:
    """``text`` as a file name part (a column's curves figure)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
