"""Verdicts on a suite's claims (:mod:`auxbench.claims`) and the board's "Claims" section.

Every claim reduces to one sample of effects, oriented so that positive is the claimed direction
(the metric's direction applied): per seed when the cells share seeds (paired, as
:func:`auxbench.leaderboard.tables.compare_cells` pairs), else two samples compared unpaired
(Welch). Then one rule, with Holm over the suite's claims (docs/claims.md):

* **reproduced**: the one-sided test in the claimed direction rejects (Holm-adjusted p < alpha);
  never when a cell the claim reads has a diverged trial (the failure rule of :mod:`.tables`);
* **contradicted**: the one-sided test in the opposite direction rejects;
* **not reproduced**: the equivalence test (TOST) within ``(-delta, delta)`` rejects: an effect
  of size delta would have been seen;
* **inconclusive**: none of these; the seeds that would decide it come from :mod:`.power`: enough
  that a true effect of delta is detected, and that a true zero passes the equivalence test, each
  with 80 % power at Holm's strictest level; whichever needs more.

Differences on a count grid are snapped (:func:`stats.snap`) and constant ones get the exact
sign-flip test (one-sided here), as in :func:`stats.compare`, so float rounding never makes a
verdict.

Over 400 lines for a reason: one concept, a claim's path from the board to its row (effects of the
three forms, the verdict rule, the seeds that would decide it, the section), read top to bottom.
"""
from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from auxbench.claims import WEIGHT_TEMPLATE, Claim, weight_tasks
from auxbench.leaderboard import board as B
from auxbench.leaderboard import power as P
from auxbench.leaderboard import stats as S
from auxbench.leaderboard.formatting import ci_text, markdown_table, number, p_text

VERDICTS = ("reproduced", "contradicted", "not reproduced", "inconclusive")
PILOT_SEEDS = 3
EQUIVALENCE_POWER = 1 - (1 - P.POWER) / 2  # TOST at a true zero: each of its two tails may miss half


@dataclass(frozen=True)
class Effect:
    """A claim's oriented effects: ``paired`` per seed (one sample against 0), else the two
    unpaired samples ``a`` and ``b`` (effect: mean(a) - mean(b)). ``resolution``: the grid the
    effects lie on (None: not counts); ``tolerance``: a spread at most this is none;
    ``failures``: cells with a diverged or degenerate trial, in words; ``missing``: why there is
    no effect at all."""

    paired: np.ndarray | None = None
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    resolution: float | None = None
    tolerance: float = 0.0
    failures: list[str] = field(default_factory=list)
    missing: str = ""

    @property
    def n(self) -> int:
        if self.paired is not None:
            return int(self.paired.size)
        return 0 if self.a is None else int(min(self.a.size, self.b.size))

    @property
    def mean(self) -> float:
        if self.paired is not None and self.paired.size:
            return float(np.mean(self.paired))
        if self.a is not None and self.a.size and self.b.size:
            return float(np.mean(self.a) - np.mean(self.b))
        return math.nan

    def _constant(self) -> bool:
        return self.paired is not None and self.paired.size >= 2 and float(np.ptp(self.paired)) <= self.tolerance

    def se_df(self) -> tuple[float, float]:
        """Standard error of the mean effect and its degrees of freedom (NaN when untestable)."""
        if self.paired is not None:
            n = self.paired.size
            return (float(np.std(self.paired, ddof=1) / math.sqrt(n)), n - 1.0) if n >= 2 else (math.nan, math.nan)
        if self.a is None or self.a.size < 2 or self.b.size < 2:
            return math.nan, math.nan
        va, vb = np.var(self.a, ddof=1) / self.a.size, np.var(self.b, ddof=1) / self.b.size
        se2 = float(va + vb)
        if not se2 > self.tolerance ** 2:
            return math.nan, math.nan
        return math.sqrt(se2), se2 ** 2 / (va ** 2 / (self.a.size - 1) + vb ** 2 / (self.b.size - 1))

    def p_above(self, shift: float) -> float:
        """One-sided p of "the mean effect exceeds ``shift``" (t-test; the exact sign-flip test for
        a constant paired effect, as :func:`stats.sign_flip_p` but one-sided); NaN when untestable."""
        if self._constant():  # of the 2^n sign patterns only the observed one reaches its mean
            return 2.0 ** -self.paired.size if self.mean > shift else 1.0
        se, df = self.se_df()
        if not (se > 0 and df > 0):
            return math.nan
        return float(scipy_stats.t.sf((self.mean - shift) / se, df))

    def p_below(self, shift: float) -> float:
        """One-sided p of "the mean effect is below ``shift``"."""
        return _negated(self).p_above(-shift)

    def interval(self, alpha: float) -> tuple[float, float]:
        """The (1 - 2 alpha) interval of the mean effect: inside (-delta, delta) exactly when TOST at
        alpha passes (before Holm); a point for a constant effect; NaN when untestable."""
        if self._constant():
            return self.mean, self.mean
        se, df = self.se_df()
        if not (se > 0 and df > 0):
            return math.nan, math.nan
        half = float(scipy_stats.t.ppf(1 - alpha, df)) * se
        return self.mean - half, self.mean + half

    def sd(self) -> float:
        """Seed-to-seed SD of one effect (unpaired: of a difference of two independent seeds)."""
        if self.paired is not None:
            return float(np.std(self.paired, ddof=1)) if self.paired.size >= 2 else math.nan
        if self.a is None or self.a.size < 2 or self.b.size < 2:
            return math.nan
        return math.sqrt(float(np.var(self.a, ddof=1) + np.var(self.b, ddof=1)))


def _negated(e: Effect) -> Effect:
    if e.paired is not None:
        return Effect(paired=-e.paired, resolution=e.resolution, tolerance=e.tolerance)
    return Effect(a=e.b, b=e.a, resolution=e.resolution, tolerance=e.tolerance)


# ----- effects from a board ----------------------------------------------------------------
def _oriented(board: B.Board, column: str, a: str, b: str) -> tuple[pd.Series, pd.Series] | None:
    higher = board.higher.get(column)
    if higher is None:
        return None
    sign = 1.0 if higher else -1.0
    return sign * board.seeds(column, a), sign * board.seeds(column, b)


def _failures(board: B.Board, cells: list[tuple[str, str]]) -> list[str]:
    out = []
    for column, method in cells:
        k = board.failures(column, method)
        if k:
            out.append(f"{k}/{len(board.cell(column, method))} trials of ({column}, {method}) diverged or degenerate")
    return out


def _grid(steps: list[float | None]) -> float | None:
    """The grid differences of scores on these grids lie on (None when any is not a grid)."""
    if not steps or any(s is None for s in steps):
        return None
    return 1.0 / math.lcm(*(round(1.0 / s) for s in steps))


def comparison_effect(board: B.Board, column: str, a: str, b: str) -> Effect:
    """A better than B on ``column``: paired on shared seeds (at least 2), else Welch."""
    cells = [(column, a), (column, b)]
    sides = _oriented(board, column, a, b)
    if sides is None or sides[0].empty or sides[1].empty:
        return Effect(failures=_failures(board, cells), missing="no finished trials on a side")
    x, y = sides
    shared = [s for s in x.index if s in y.index]
    step, tol = board.resolution.get(column), board.tolerance(column)
    if len(shared) >= 2:
        d = S.snap(x.loc[shared].to_numpy() - y.loc[shared].to_numpy(), step)
        return Effect(paired=d, resolution=step, tolerance=tol, failures=_failures(board, cells))
    return Effect(a=x.to_numpy(), b=y.to_numpy(), resolution=step, tolerance=tol, failures=_failures(board, cells))


def interaction_effect(board: B.Board, columns: list[str], a: str, b: str) -> Effect:
    """A's advantage over B on columns[0] minus that on columns[1]: per seed where all four cells
    share seeds (at least 2), else the two columns' paired advantages compared unpaired."""
    cells = [(c, m) for c in columns for m in (a, b)]
    sides = [_oriented(board, c, a, b) for c in columns]
    if any(s is None or s[0].empty or s[1].empty for s in sides):
        return Effect(failures=_failures(board, cells), missing="no finished trials in a cell")
    advantages = [(x - y).dropna() for x, y in sides]  # per seed, on the seeds both cells hold
    step = _grid([board.resolution.get(c) for c in columns])
    tol = max(board.tolerance(c) for c in columns)
    first, second = (pd.Series(S.snap(v, step), index=v.index) for v in advantages)
    shared = [s for s in first.index if s in second.index]
    if len(shared) >= 2:
        d = S.snap(first.loc[shared].to_numpy() - second.loc[shared].to_numpy(), step)
        return Effect(paired=d, resolution=step, tolerance=tol, failures=_failures(board, cells))
    return Effect(a=first.to_numpy(), b=second.to_numpy(), resolution=step, tolerance=tol,
                  failures=_failures(board, cells))


def _weight_keys(here: pd.DataFrame, selection: str, claim: Claim, task: str) -> list[str]:
    """The columns of ``here`` holding ``task``'s weight: the claim's ``weight`` template, else
    ``diag/weight/<task>`` (a weight per task), else ``diag/weight/<task>/mean`` (per-sample weights)."""
    for template in [claim.weight] if claim.weight else [WEIGHT_TEMPLATE, f"{WEIGHT_TEMPLATE}/mean"]:
        pattern = f"{selection}:" + template.replace("{task}", task)
        keys = [k for k in here.columns if fnmatch.fnmatchcase(k, pattern) and here[k].notna().any()]
        if keys:
            return keys
    return []


def _logged_tasks(here: pd.DataFrame, selection: str, claim: Claim) -> list[str]:
    """Task names that the weight template finds in the columns of ``here``."""
    template = re.escape(f"{selection}:{claim.weight or WEIGHT_TEMPLATE}").replace(r"\{task\}", "([^/]+)")
    pattern = re.compile(template.replace(r"\*", ".*") + "(/.*)?")
    return sorted({m.group(1) for k in here.columns if (m := pattern.fullmatch(k)) and here[k].notna().any()})


def weights_effect(board: B.Board, df: pd.DataFrame, claim: Claim) -> Effect:
    """Per seed: the weight of ``than_task`` minus the mean weight of the tasks ``less_weight``
    matches, at the board's selected epoch, over the cell's counted trials; one sample against 0."""
    cells = [(claim.column, claim.method)]
    counted = board.cell(claim.column, claim.method)
    counted = counted[counted["counted"]]
    here = df[df["trial_id"].isin(counted["trial_id"])].set_index("trial_id")
    tasks = weight_tasks(claim, _logged_tasks(here, board.selection, claim))
    keys = {t: _weight_keys(here, board.selection, claim, t) for t in [claim.than_task, *tasks]}
    if here.empty or not tasks or not all(keys.values()):
        return Effect(failures=_failures(board, cells),
                      missing=f"no counted trial of `{claim.method}` logged the weights of {claim.than_task} and "
                              f"{', '.join(claim.less_weight)}")
    seeds = counted.set_index("trial_id")["seed"]
    frame = pd.DataFrame({t: here[k].astype(float).mean(axis=1) for t, k in keys.items()}).dropna()
    frame.index = seeds.loc[frame.index].to_numpy()
    frame = frame.sort_index()
    d = (frame[claim.than_task] - frame[tasks].mean(axis=1)).to_numpy()
    tol = 1e-6 * float(frame.abs().to_numpy().max()) if len(frame) else 0.0
    return Effect(paired=d, tolerance=tol, failures=_failures(board, cells))


# ----- verdicts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """One claim's verdict and the numbers behind it (``p_*``: Holm-adjusted over the suite's
    claims; ``low``/``high``: the (1 - 2 alpha) interval; ``needed``: seeds that would decide it,
    0 when decided; ``fits``: whether they fit the suite's budget, None when it cannot be said)."""

    claim: Claim
    verdict: str
    mean: float
    low: float
    high: float
    n: int
    sd: float
    paired: bool
    p_claimed: float
    p_opposite: float
    p_equivalent: float
    needed: int
    fits: bool | None
    note: str


def claim_effect(claim: Claim, board: B.Board, boards, df: pd.DataFrame) -> Effect:
    """``boards(metric)``: the board of another metric than ``board``'s (same reading otherwise)."""
    if claim.form == "weights":
        return weights_effect(board, df, claim)
    b = board if claim.metric in (None, board.metric) else boards(claim.metric)
    than = claim.than or board.baseline
    if claim.form == "interaction":
        return interaction_effect(b, claim.columns, claim.better, than)
    return comparison_effect(b, claim.column, claim.better, than)


def seeds_to_decide(effect: Effect, delta: float, alpha: float, m: int) -> int:
    """Seeds (per cell) whose test detects a true effect of ``delta`` and whose equivalence test
    passes at a true 0, each with 80 % power at Holm's strictest level alpha / m (one-sided, as
    a two-sided test at 2 alpha / m); 0 when the noise cannot be estimated yet. A constant
    effect needs the exact sign-flip test's 2^-n below alpha / m.

    When the claim already has those seeds and is still undecided, the true effect lies between
    0 and delta, where neither test was sized to decide: the seeds then come from the effect
    observed, whichever test would decide first (the detection of the observed effect, or
    equivalence with the margin left between it and delta), and are more than it has."""
    if effect._constant():
        return max(2, math.floor(math.log2(m / alpha)) + 1)
    sd = effect.sd()
    if not math.isfinite(sd):
        return 0
    planned = max(P.seeds_needed(sd, delta, 2 * alpha, m), P.seeds_needed(sd, delta, 2 * alpha, m, EQUIVALENCE_POWER))
    if effect.n < planned:
        return planned
    observed = abs(effect.mean)
    options = [P.seeds_needed(sd, observed, 2 * alpha, m) if observed > 0 else P.MAX_SEEDS + 1,
               P.seeds_needed(sd, delta - observed, 2 * alpha, m) if observed < delta else P.MAX_SEEDS + 1]
    return max(effect.n + 1, min(options))


def judge(claims: list[Claim], effects: list[Effect], alpha: float, costs=None, budget: float | None = None) -> list[Verdict]:
    """The verdict of every claim. ``costs(claim, extra_seeds)``: projected CPU-hours of the suite
    with that many more seeds in the claim's columns (None: unknown); ``budget``: the suite's."""
    claimed = np.array([e.p_above(0.0) for e in effects], dtype=float)
    opposite = np.array([e.p_below(0.0) for e in effects], dtype=float)
    equivalent = np.array([max(e.p_above(-c.delta), e.p_below(c.delta)) for c, e in zip(claims, effects, strict=True)],
                          dtype=float)
    m = max(1, int(np.sum(~np.isnan(claimed))))
    claimed, opposite, equivalent = S.holm(claimed), S.holm(opposite), S.holm(equivalent)
    out = []
    for k, (claim, effect) in enumerate(zip(claims, effects, strict=True)):
        note = "; ".join(filter(None, [effect.missing, *effect.failures]))
        if claimed[k] < alpha:
            verdict = "inconclusive" if effect.failures else "reproduced"
            if effect.failures:
                note += " (significant in the claimed direction, but a diverged trial is a result of the method)"
        elif opposite[k] < alpha:
            verdict = "contradicted"
        elif equivalent[k] < alpha:
            verdict = "not reproduced"
        else:
            verdict = "inconclusive"
        needed, fits = 0, None
        if verdict == "inconclusive":
            needed = seeds_to_decide(effect, claim.delta, alpha, m)
            if needed and needed <= P.MAX_SEEDS and costs is not None and budget is not None:
                projected = costs(claim, max(0, needed - effect.n))
                fits = None if projected is None else projected <= budget
        low, high = effect.interval(alpha)
        out.append(Verdict(claim, verdict, effect.mean, low, high, effect.n, effect.sd(), effect.paired is not None,
                           float(claimed[k]), float(opposite[k]), float(equivalent[k]), needed, fits, note))
    return out


def cpu_hours(df: pd.DataFrame, cpu: float):
    """``costs`` for :func:`judge`: CPU-hours of the finished trials (``run_wall_s`` times the
    suite's ``resources.cpu``) plus ``extra`` seeds of the claim's columns at their measured cost
    per seed; None when no finished trial recorded its time."""
    if "run_wall_s" not in df or not df["run_wall_s"].notna().any():
        return None
    hours = df["run_wall_s"].astype(float) * cpu / 3600
    spent = float(hours.sum())

    def per_seed(column: str) -> float:
        here = df["column"] == column
        by_method = hours[here].groupby(df.loc[here, "method"]).mean()
        return float(by_method.sum())

    def costs(claim: Claim, extra: int) -> float | None:
        columns = claim.columns or [claim.column]
        each = [per_seed(c) for c in columns]
        return None if any(math.isnan(x) for x in each) else spent + extra * sum(each)

    return costs


def suite_verdicts(board: B.Board, df: pd.DataFrame, record: dict | None) -> list[Verdict]:
    """The verdicts of the claims in ``record``'s suite spec (none without claims)."""
    spec = (record or {}).get("spec") or {}
    claims = [Claim.model_validate(c) for c in spec.get("claims") or []]
    if not claims:
        return []
    other: dict[str, B.Board] = {}

    def boards(metric: str) -> B.Board:
        if metric not in other:
            other[metric] = B.build_board(df, record, metric, board.selection, board.baseline, board.alpha)
        return other[metric]

    effects = [claim_effect(c, board, boards, df) for c in claims]
    cpu = float((spec.get("resources") or {}).get("cpu", 1.0))
    return judge(claims, effects, board.alpha, cpu_hours(df, cpu), spec.get("claims_budget_cpu_hours"))


def plan_lines(run_dir, spec: dict) -> list[str]:
    """What ``auxbench run --dry-run`` prints per claim of ``spec`` (the suite's dump): from the
    finished trials of ``run_dir``, the seeds that would decide it; without them, a pilot."""
    from pathlib import Path

    from auxbench.errors import AuxbenchError
    from auxbench.results import load_results, load_run_record

    claims = spec.get("claims") or []
    if not claims:
        return []
    board = df = record = None
    if Path(run_dir, "run.json").exists():
        try:
            df = load_results(Path(run_dir))
            record = {**(load_run_record(Path(run_dir)) or {}), "spec": spec}
            lb = spec["leaderboard"]
            board = B.build_board(df, record, lb["metric"], lb["selection"], lb["baseline"], lb["alpha"])
        except AuxbenchError:
            board = None
    verdicts = suite_verdicts(board, df, record) if board is not None else []
    by_id = {v.claim.id: v for v in verdicts}
    budget = spec.get("claims_budget_cpu_hours")
    lines = [f"claims (Holm over {len(claims)}; 80 % power to detect δ and to show equivalence within ±δ):"]
    for c in claims:
        v = by_id.get(c["id"])
        columns = ", ".join(c.get("columns") or [c["column"]])
        if v is None or v.n < 2 or not math.isfinite(v.sd):
            lines.append(f"claim {c['id']}: no finished trials of its cells in {run_dir} to measure the noise; "
                         f"run a pilot of {PILOT_SEEDS} seeds (`seeds: {PILOT_SEEDS}` in the experiments of {columns}) "
                         "and plan again: its trials count towards the full run")
            continue
        text = f"claim {c['id']}: {v.n} seeds now, SD of one effect {v.sd:.3g}; "
        if v.verdict != "inconclusive":
            text += f"decided: {v.verdict}"
        else:
            text += f"{decide_in_words(v, budget)} seeds would decide it"
        lines.append(text)
    return lines


# ----- words -----------------------------------------------------------------------------------
def in_words(claim: Claim, baseline: str, metric: str) -> str:
    """The claim as a sentence (its ``text`` when the suite gives one)."""
    if claim.text:
        return claim.text
    if claim.form == "weights":
        return f"`{claim.method}` ends with less weight on {', '.join(claim.less_weight)} than on {claim.than_task} ({claim.column})"
    than = claim.than or baseline
    metric = claim.metric or metric
    if claim.form == "interaction":
        return f"`{claim.better}`'s advantage over `{than}` is larger on {claim.columns[0]} than on {claim.columns[1]} ({metric})"
    return f"`{claim.better}` is better than `{than}` on {claim.column} ({metric})"


def decide_in_words(v: Verdict, budget: float | None) -> str:
    if v.verdict != "inconclusive":
        return "–"
    if not v.needed:
        return f"unknown: run a pilot of {PILOT_SEEDS} seeds to measure the noise"
    if v.needed > P.MAX_SEEDS:
        return f"more than {P.MAX_SEEDS}"
    if budget is None:
        fit = "the suite states no claims_budget_cpu_hours"
    else:
        fit = {True: "fits", False: "beyond", None: "cost unknown against"}[v.fits] + f" the budget of {budget:g} CPU-h"
    return f"{v.needed} ({fit})"


def section(board: B.Board, df: pd.DataFrame, record: dict | None) -> list[str]:
    """The "Claims" section of the page (nothing when the suite makes no claims)."""
    verdicts = suite_verdicts(board, df, record)
    if not verdicts:
        return []
    budget = ((record or {}).get("spec") or {}).get("claims_budget_cpu_hours")
    rows = []
    for v in verdicts:
        scale = (v.high - v.low) / 2 if math.isfinite(v.low) and v.high > v.low else None
        spread = "(no interval)" if math.isnan(v.low) else ci_text(v.low, v.high) if v.high > v.low else "(constant)"
        effect = (f"{number(v.mean, scale, signed=True)} {spread}, n = {v.n}{'' if v.paired else ' per side, unpaired'}"
                  if v.n else "–")
        seen = f"an effect of {v.claim.delta:g} would have been seen" if v.verdict == "not reproduced" else ""
        verdict = f"**{v.verdict}**" + "".join(f" ({x})" for x in (seen, v.note) if x)
        rows.append([f"`{v.claim.id}`", in_words(v.claim, board.baseline, board.metric), v.claim.source, effect,
                     f"{v.claim.delta:g}", verdict, f"{p_text(v.p_claimed)} / {p_text(v.p_opposite)} / {p_text(v.p_equivalent)}",
                     decide_in_words(v, budget)])
    m = len([v for v in verdicts if not math.isnan(v.p_claimed)])
    return [
        "## Claims", "",
        markdown_table(rows, ["claim", "in words", "source", "effect (mean, interval, n)", "δ", "verdict",
                      "p: claimed / opposite / within ±δ", "seeds that would decide it"]),
        "",
        f"Effect: oriented so that positive is the claimed direction, {1 - 2 * board.alpha:.0%} interval (inside ±δ "
        f"exactly when the equivalence test passes before Holm). p-values one-sided, Holm-adjusted over the {m} "
        f"testable claim{'s' if m != 1 else ''}; a verdict needs p < {board.alpha:g}. **reproduced**: significant in "
        "the claimed direction; **contradicted**: in the opposite one; **not reproduced**: an effect of δ would have "
        "been seen (equivalence within ±δ shown); **inconclusive**: the seeds per cell that would decide it (80 % "
        "power to detect δ and to show equivalence at a true 0). See [claims](../docs/claims.md).",
        "",
    ]
