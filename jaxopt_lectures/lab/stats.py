"""The verdict statistics of the lecture table: a paired test across seeds, its interval, divergence.

Each row of ``jaxopt-lectures recipe`` trains a baseline and a variant on the same seeds (same
initialization, same data split per seed). This module turns the two lists of per-seed values
(a loss or an accuracy) into a verdict, with pure numpy functions that are tested on their own
by simulation (``tests/test_lab_stats.py``). The rule:

* **Per-seed relative change** ``r_i = (var_i − base_i) / max(|base_i|, TINY)``: each seed is its
  own control, and relative changes make rows with different loss scales comparable.
* **Paired t-test across seeds** on the ``r_i`` (two-sided, α = 0.05, ``n − 1`` degrees of
  freedom). It assumes the seed-to-seed spread of ``r`` is roughly normal; with few seeds that
  is an approximation, and the t distribution (not the normal) is what pays for the unknown
  spread: at n = 3 an effect needs ``|t| > 4.30``.
* **An effect shows** when ``p < α`` *and* the mean relative change exceeds a practical
  ``margin`` (2 %): significant but trivial changes are not effects.
* **The 95 % interval** of the mean relative change, ``r̄ ± t_{0.975, n−1} · s / √n``.
* **Diverged runs** never enter a mean: the pairs where either arm diverged are dropped, and
  the counts ``k/n`` per arm are reported beside the test. Divergence alone never decides a
  direction; an arm that diverges on every seed gets a status of its own instead.

The Student-t distribution comes from ``scipy.stats.t`` (issue 20 item 6: the hand-written
incomplete-beta version it replaces is gone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.stats as sps

#: Denominator floor of the relative change (a baseline value of exactly 0 divides by this).
TINY = 1e-12
#: Default significance level of the paired test (two-sided).
ALPHA = 0.05
#: Default practical margin: the mean relative change must exceed 2 % to count as an effect.
MARGIN = 0.02

# ---------------------------------------------------------------------------------------
# The paired test.


class TestResult(NamedTuple):
    """A paired t-test of the per-seed relative changes ``r_i`` (variant against baseline).

    ``mean_diff``: mean of ``var_i − base_i``; ``rel_change``: mean of ``r_i``; ``interval``:
    (lo, hi), the 95 % t interval of the mean relative change; ``p_value``: two-sided;
    ``n``: pairs used; ``t``: the statistic ``r̄ / (s/√n)``. Scalars for one row of seeds,
    arrays (one entry per row) when the inputs carry leading batch axes.
    """

    __test__ = False  # not a pytest class

    mean_diff: float
    rel_change: float
    interval: tuple
    p_value: float
    n: int
    t: float


def _check_alpha_margin(alpha: float, margin: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if not margin >= 0.0:
        raise ValueError(f"margin must be >= 0 (a fraction: 0.02 is 2 %), got {margin!r}")


def _pairs(base, var) -> tuple[np.ndarray, np.ndarray]:
    b, v = np.asarray(base, float), np.asarray(var, float)
    if b.shape != v.shape or b.ndim == 0:
        raise ValueError(
            f"base and var must be arrays of the same shape with seeds on the last axis, "
            f"got shapes {b.shape} and {v.shape}"
        )
    return b, v


def relative_changes(base, var) -> np.ndarray:
    """The per-seed relative change r_i = (var_i − base_i) / max(|base_i|, TINY)."""
    b, v = _pairs(base, var)
    return (v - b) / np.maximum(np.abs(b), TINY)


def paired_test(base, var, *, confidence: float = 0.95) -> TestResult:
    """Paired t-test across seeds of the relative change of ``var`` against ``base``.

    r_i = (var_i − base_i) / max(|base_i|, TINY), r̄ = mean r_i, s = std(r, ddof=1),
    t = r̄ / (s/√n), p = P(|T_{n−1}| ≥ |t|) (two-sided), interval r̄ ± t_{(1+c)/2, n−1} · s/√n.

    Seeds are the last axis; pairs where either value is not finite are left out (``n`` counts
    the pairs used; :func:`split_diverged` is the place to drop diverged runs explicitly).
    Degenerate cases: with n < 2 the spread is unknown, so ``t``, ``p_value`` and the interval
    are ``nan`` (``rel_change`` is still the mean of what there is; ``nan`` when n = 0). With
    zero spread (every seed the same change) the interval is the point ``(r̄, r̄)`` and p = 0
    when r̄ ≠ 0 (t = ±inf), p = 1 when r̄ = 0 (t = 0).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    b, v = _pairs(base, var)
    ok = np.isfinite(b) & np.isfinite(v)
    n = ok.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.where(ok, (v - b) / np.maximum(np.abs(b), TINY), 0.0)
        d = np.where(ok, v - b, 0.0)
        mean_r = r.sum(axis=-1) / n
        mean_d = d.sum(axis=-1) / n
        dev = np.where(ok, r - mean_r[..., None], 0.0)
        s = np.sqrt((dev * dev).sum(axis=-1) / (n - 1))
        se = s / np.sqrt(n)
        t = np.where(se > 0, mean_r / se, np.where(mean_r == 0, 0.0, np.sign(mean_r) * np.inf))
        t = np.where(n >= 2, t, np.nan)
        df = np.where(n >= 2, n - 1, 1).astype(float)
        p = np.where(n >= 2, 2.0 * sps.t.sf(np.abs(np.where(n >= 2, t, 0.0)), df), np.nan)
        crit = _critical_values((1.0 + confidence) / 2.0, df)
        half = np.where(se > 0, crit * se, 0.0)
        lo = np.where(n >= 2, mean_r - half, np.nan)
        hi = np.where(n >= 2, mean_r + half, np.nan)
    if b.ndim == 1:
        return TestResult(float(mean_d), float(mean_r), (float(lo), float(hi)), float(p), int(n), float(t))
    return TestResult(mean_d, mean_r, (lo, hi), p, n, t)


def _critical_values(q: float, df: np.ndarray) -> np.ndarray:
    """t_{q, df} for an array of degrees of freedom (``scipy.stats.t.ppf``)."""
    return sps.t.ppf(q, df)


def direction(base, var, *, alpha: float = ALPHA, margin: float = MARGIN):
    """Which way the variant moves the value: −1 lower, +1 higher, 0 when no effect shows.

    −1 when the paired test rejects (p < ``alpha``) *and* the mean relative change r̄ < −``margin``;
    +1 when p < ``alpha`` and r̄ > ``margin``; 0 otherwise (including n < 2 pairs, p = ``nan``).
    This is raw direction of the value; :func:`compare` says which way is better. Seeds are
    the last axis: one row gives an ``int``, leading batch axes give an int array.
    """
    _check_alpha_margin(alpha, margin)
    res = paired_test(base, var)
    p, m = np.asarray(res.p_value), np.asarray(res.rel_change)
    with np.errstate(invalid="ignore"):
        sig = p < alpha
        out = np.where(sig & (m < -margin), -1, np.where(sig & (m > margin), 1, 0))
    return int(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------
# Diverged runs and the comparison of one row.


class Split(NamedTuple):
    """The finite pairs of a row and the divergence counts: ``k_base``, ``k_var`` of ``n`` seeds."""

    base: np.ndarray
    var: np.ndarray
    k_base: int
    k_var: int
    n: int


def split_diverged(base, var, base_diverged=None, var_diverged=None) -> Split:
    """Drop every pair where either arm diverged; count the diverged runs of each arm.

    A run counts as diverged when its flag is true or its value is not finite (inf/nan), so
    a diverged run never enters a mean. Flags are booleans per seed (from the trainer's
    ``diverged_step``: ``[s is not None for s in steps]``); ``None`` means "no flags".
    """
    b, v = _pairs(base, var)
    if b.ndim != 1:
        raise ValueError(f"split_diverged takes one row of seeds (1-D), got shape {b.shape}")
    n = b.size

    def flags(given, values, arg):
        if given is None:
            return ~np.isfinite(values)
        f = np.asarray(given, bool)
        if f.shape != values.shape:
            raise ValueError(f"{arg} must have one flag per seed ({n}), got shape {f.shape}")
        return f | ~np.isfinite(values)

    db, dv = flags(base_diverged, b, "base_diverged"), flags(var_diverged, v, "var_diverged")
    keep = ~db & ~dv
    return Split(b[keep], v[keep], int(db.sum()), int(dv.sum()), n)


class Comparison(NamedTuple):
    """The verdict of one metric of one row.

    ``direction``: +1 the variant is significantly BETTER, −1 significantly WORSE, 0 no effect
    shows (always 0 unless ``status == "ok"``); "better" is lower for losses and higher for
    accuracies (``higher_is_better``). ``test``: the :class:`TestResult` on the finite pairs
    (raw relative change of the value, not flipped). ``diverged``: ``(k_base, k_var, n)``.
    ``status``: "ok", "baseline never trains", "variant never trains", "too few finite pairs".
    """

    direction: int
    test: TestResult
    diverged: tuple
    status: str


STATUSES = ("ok", "baseline never trains", "variant never trains", "too few finite pairs")


def compare(
    base,
    var,
    base_diverged=None,
    var_diverged=None,
    *,
    alpha: float = ALPHA,
    margin: float = MARGIN,
    higher_is_better: bool = False,
) -> Comparison:
    """Compare one metric of a row across seeds: the direction in "better" terms, test, divergence.

    The finite pairs (:func:`split_diverged`) go through :func:`direction`; the result is
    flipped so that +1 means the variant is better (lower loss, or higher accuracy with
    ``higher_is_better``). Divergence never decides a direction: 1 diverged seed of 5 only
    leaves 4 pairs. The statuses, checked in this order: every baseline run diverged ->
    "baseline never trains" (also when the variant never trains either); every variant run
    diverged -> "variant never trains"; fewer than 2 finite pairs -> "too few finite pairs".
    Any status but "ok" has direction 0; the report prints the status instead.
    """
    _check_alpha_margin(alpha, margin)
    sp = split_diverged(base, var, base_diverged, var_diverged)
    test = paired_test(sp.base, sp.var)
    if sp.k_base == sp.n:
        status = "baseline never trains"
    elif sp.k_var == sp.n:
        status = "variant never trains"
    elif sp.base.size < 2:
        status = "too few finite pairs"
    else:
        status = "ok"
    raw = direction(sp.base, sp.var, alpha=alpha, margin=margin) if status == "ok" else 0
    better = raw if higher_is_better else -raw
    return Comparison(int(better), test, (sp.k_base, sp.k_var, sp.n), status)


# ---------------------------------------------------------------------------------------
# Claims, chance and multiplicity.

CLAIM_EXPECTATIONS = ("better", "not better", "worse", "not worse", "any")


def claim_check(expected: str | None, observed_direction: int) -> bool | None:
    """Does the observed direction (+1 better, 0 none, −1 worse; :class:`Comparison`) meet the claim?

    "better": observed +1. "not better" (the lecture's "not for X"): observed ≠ +1, i.e. no
    significant improvement (no effect or worse). "worse" (e.g. "(worse optimization)"):
    observed −1. "not worse": observed ≠ −1. "any" or ``None``: the half is not checked -> ``None``.
    """
    if observed_direction not in (-1, 0, 1):
        raise ValueError(f"observed_direction must be -1, 0 or +1, got {observed_direction!r}")
    if expected is None or expected == "any":
        return None
    checks = {
        "better": observed_direction == 1,
        "not better": observed_direction != 1,
        "worse": observed_direction == -1,
        "not worse": observed_direction != -1,
    }
    if expected not in checks:
        raise ValueError(f"expected must be one of {CLAIM_EXPECTATIONS} or None, got {expected!r}")
    return checks[expected]


def chance_agreements(n_rows: int, alpha: float = ALPHA) -> float:
    """Expected number of rows showing their claimed direction by chance when no row has an effect.

    Each directional claim ("better", "worse") is one side of a two-sided test at level α, so
    under no effect a row shows it with probability at most α/2 (the margin only lowers it):
    E = n_rows · α/2, e.g. 27 rows -> 0.675. Rows are counted as independent; rows that share
    a baseline are correlated, which leaves the mean unchanged but widens its spread. Claims of
    "no effect" ("not better") agree by chance with probability about 1 − α/2 and are not counted.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows!r}")
    _check_alpha_margin(alpha, 0.0)
    return n_rows * alpha / 2.0


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm-Bonferroni step-down: which of m hypotheses are rejected at family-wise level α.

    Sort p ascending, p_(1) ≤ ... ≤ p_(m); reject H_(1..k) for the largest k with
    p_(j) ≤ α / (m − j + 1) for every j ≤ k; stop at the first failure. ``nan`` p-values
    (untested rows) count in m and are never rejected. Returns flags in the input order.
    """
    _check_alpha_margin(alpha, 0.0)
    p = np.asarray(pvalues, float)
    m = p.size
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    reject = [False] * m
    for j, i in enumerate(order):
        if not (p[i] <= alpha / (m - j)):
            break
        reject[int(i)] = True
    return reject


def fmt_interval(lo: float, hi: float) -> str:
    """A relative-change interval as percentages, e.g. ``fmt_interval(-0.12, -0.03) == "[-12%, -3%]"``.

    Whole percents when either end reaches 10 %, one decimal below that; a sign on every
    non-zero end; "[n/a]" when the interval is undefined (fewer than 2 pairs).
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "[n/a]" if (np.isnan(lo) or np.isnan(hi)) else f"[{_pct(lo, 0)}, {_pct(hi, 0)}]"
    digits = 0 if max(abs(lo), abs(hi)) >= 0.095 else 1
    return f"[{_pct(lo, digits)}, {_pct(hi, digits)}]"


def _pct(x: float, digits: int) -> str:
    if math.isinf(x):
        return "+inf%" if x > 0 else "-inf%"
    v = round(100.0 * x, digits)
    if v == 0:
        return "0%"
    return f"{v:+.{digits}f}%"


# ---------------------------------------------------------------------------------------
# Selection and the equal-training-loss regime (shared by the table and the batch-size figure).


def pick_grid_point(val: np.ndarray, diverged: np.ndarray) -> int:
    """The grid point with the lowest mean validation loss among those where no seed diverged
    (else the fewest diverged seeds, then the lowest median over the finite ones)."""
    clean = ~diverged.any(axis=1)
    if clean.any():
        scores = np.where(clean, np.nanmean(np.where(np.isfinite(val), val, np.nan), axis=1), np.inf)
        return int(np.nanargmin(scores))
    counts = diverged.sum(axis=1)
    cand = np.flatnonzero(counts == counts.min())
    med = [
        np.nanmedian(np.where(np.isfinite(val[c]), val[c], np.nan)) if np.isfinite(val[c]).any() else np.inf
        for c in cand
    ]
    return int(cand[int(np.argmin(med))])


#: Two mean training losses count as the same level when they differ by at most 25 % of the
#: larger plus 0.01 (an absolute floor for losses near 0): Keskar et al.'s regime, equal training loss.
SAME_LOSS_REL, SAME_LOSS_ABS = 0.25, 0.01


def same_training_loss(a: float, b: float) -> bool:
    """Did two arms reach the same training loss (``|a − b| <= 0.25·max(a, b) + 0.01``)?"""
    return bool(abs(a - b) <= SAME_LOSS_REL * max(a, b) + SAME_LOSS_ABS)
