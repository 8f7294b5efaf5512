"""The verdict of one row: a pure function of its two arms' results (no training, no files).

Each half of a lecture claim is tuned and judged on its own metric (teaching-truth v3, D1-D7):

* **Optimization** ("better optimization" = the training loss falls further or faster) is
  speed, as in AlgoPerf: the updates each run needs to reach a declared training *target*,
  with the budget as the cap. The target is 99 % training accuracy when the tuned baseline
  reaches it on every seed; otherwise the training loss that the baseline's training-best
  grid point reaches (the median over seeds of its final loss). Each arm's grid point is the
  one with the fewest updates to the target (the mean over seeds of log updates; a run that
  never gets there counts as the cap, one epoch past the budget, and is *counted* as not
  reaching it in the report, never averaged as if it had). When no run of either arm reaches
  the target, the half falls back to the final training loss at each arm's training-best
  point, and says so. The final training loss at the training-best points is always printed
  beside (secondary), and a baseline that reaches 100 % training accuracy within half its
  budget is flagged "saturated": its final loss measures margin growth, not optimization.
* **Generalization** ("better generalization" = a lower validation loss) is tuned on the
  validation split and judged on the untouched test split: each arm at its grid point of
  lowest mean validation cross-entropy, compared on test cross-entropy. A claim whose regime
  is overfitting (the regularizers) compares the baseline where it fits the training data (its
  training-best η: picking η on validation loss at a fixed budget would itself be early
  stopping, and that baseline never overfits) with the variant at the same η, its strength
  picked on validation: the lecture's recipe, regularize once training is good (004 l.353). Test error, with each
  arm picked on validation *accuracy*, is printed beside it in points; a row whose
  cross-entropy half holds while the error shows no gain is flagged "calibration only".
* Positive measures (losses, updates, sharpness) are compared as paired log-ratios
  (:func:`.stats.paired_ratio`, a ratio of geometric means with its interval), accuracies as
  paired differences in points (:func:`.stats.paired_points`).

The kind of test follows the claim (:attr:`.claims.rows.Row.design` and the claim's
expected effects): "better"/"worse" is superiority beyond a margin, "not better" is
non-superiority with a margin, a tie is equivalence (TOST), a demonstration (true by
construction) is labelled as such. Step-scale claims (``design="equal_eta"``) are compared
at equal η over the shared grid (per seed, the geometric mean over η of the final training
loss), since tuning η per arm absorbs a constant step factor. An interaction claim
(``design="interaction"``: the technique works better under one level of a second factor than
under the other) is judged on four arms, a 2 x 2 design (:func:`interaction_half`). Each half comes out as
``holds`` / ``fails`` / ``inconclusive``; the row label is :func:`.stats.row_label` of them,
unless the claim's regime is not reached on the compared runs (:func:`check_regime`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxopt_lectures.lab import stats
from jaxopt_lectures.lab.claims import quotes
from jaxopt_lectures.lab.claims.rows import Row

#: The declared training target: this training accuracy, when the tuned baseline reaches it.
TARGET_ACC = 0.99
#: A baseline that reaches 100 % training accuracy within this fraction of its budget is saturated.
SATURATION_FRACTION = 0.5
#: Rows whose claim is about a measure rather than the losses: expected direction of the measure.
MEASURE_CLAIMS = {"l1_vs_l2_sparsity": "higher", "init_minimum": "differs"}
#: The regime checks' thresholds: overfitting (training accuracy, validation risen from its
#: minimum by this factor), plateau (relative drop over the last quarter), equal training loss.
OVERFIT_TRAIN_ACC, OVERFIT_VAL_RISE = 0.99, 1.05
PLATEAU_DROP = 0.1
EQUAL_LOSS_RATIO = 1.25
#: An input covariance with a condition number at least this large is ill-conditioned (the
#: lecture's steep-and-flat loss surface, 000 around line 146: g⁰ = (500, 0.4)).
ILL_CONDITIONED = 1e4
CHANCE_LOSS = math.log(10.0)
LR_KEY = "optimizer.learning_rate"
#: Every label a row can get.
LABELS = (
    "yes",
    "partly",
    "no",
    "inconclusive",
    "regime not reached",
    "demonstration",
    "baseline never trains",
    "not testable",
)
#: Labels decided by the design or the regime, not by the halves' results.
FIXED_LABELS = ("regime not reached", "demonstration", "baseline never trains", "not testable")
#: How the table's halves are corrected for multiplicity (:func:`decide_table`): Benjamini-
#: Hochberg over both one-sided p-values of every judged half. Holm keeps a x1.5 effect's power
#: at 0.43 inside a 43-row table, BH at 0.91 (tests/test_lab_stats.py), and a table with no
#: effect anywhere still reads yes on about 4 % of rows (stats.expected_null_counts).
MULTIPLICITY_METHOD = "bh"
MULTIPLICITY = (
    "Benjamini-Hochberg (false discovery rate 0.05) over both one-sided decisions of every judged half "
    "(demonstrations excluded)"
)


def _arr(xs) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], float)


def _last_finite(curve) -> float:
    a = _arr(curve)
    a = a[np.isfinite(a)]
    return float(a[-1]) if a.size else float("nan")


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def budget_updates(arm: dict) -> int:
    return int(arm["epochs"]) * int(arm["updates_per_epoch"])


def updates_to_target(arm: dict, point: dict, target: tuple[str, float]) -> list[int | None]:
    """Per seed, the updates after which ``point``'s run first meets ``target`` (``("train_acc",
    a)``: accuracy >= a; ``("train", l)``: training loss <= l), measured at epoch ends; ``None``
    when it never does within the budget."""
    metric, level = target
    out: list[int | None] = []
    for curve in point["curves"][metric]:
        a = _arr(curve)
        with np.errstate(invalid="ignore"):
            hit = np.flatnonzero(a >= level) if metric == "train_acc" else np.flatnonzero(a <= level)
        out.append(int((hit[0] + 1) * arm["updates_per_epoch"]) if hit.size else None)
    return out


def _capped(arm: dict, times: Sequence[int | None]) -> np.ndarray:
    cap = budget_updates(arm) + int(arm["updates_per_epoch"])
    return np.array([cap if t is None else t for t in times], float)


def _pick(scores: Sequence[float]) -> int:
    s = np.array(scores, float)
    if not np.isfinite(s).any():
        return 0
    return int(np.nanargmin(np.where(np.isfinite(s), s, np.nan)))


def _train_best(arm: dict) -> int:
    """The grid point with the lowest mean log final training loss (diverged seeds: excluded;
    a point where any seed diverged ranks after every point where none did)."""
    scores = []
    for p in arm["points"]:
        t = _arr(p["train"])
        bad = ~np.isfinite(t) | (t <= 0)
        scores.append(np.inf if bad.all() else float(np.mean(np.log(t[~bad]))) + (1e6 if bad.any() else 0.0))
    return _pick(scores)


def _val_best(arm: dict, key: str = "val", among: Sequence[int] | None = None) -> int:
    """The grid point (of ``among``, default all) with the lowest mean validation loss (``key=
    "val"``) or the highest mean validation accuracy (``"val_acc"``), as the table always picks."""
    index = list(range(len(arm["points"]))) if among is None else list(among)
    pts = [arm["points"][i] for i in index]
    val = np.array([_arr(p[key]) for p in pts])
    div = np.array([[d >= 0 for d in p["diverged_epoch"]] for p in pts])
    return index[stats.pick_grid_point(val if key == "val" else -val, div)]


def _fitted_pair(base: dict, var: dict, key: str) -> tuple[int, int]:
    """The overfitting regime's comparison (seed 004 l.353: regularize once training is good):
    the baseline at the η where it fits the training data best (its training-best point), the
    variant at that same η with its own strength picked on validation (``key``)."""
    ib = _train_best(base)
    eta = base["points"][ib]["config"].get(LR_KEY)
    same = [i for i, p in enumerate(var["points"]) if p["config"].get(LR_KEY) == eta]
    return ib, _val_best(var, key, same or None)


def _compared_pair(base: dict, var: dict, key: str, fitted: bool) -> tuple[int, int]:
    """The grid points a generalization comparison reads: the overfitting regime's
    :func:`_fitted_pair` when ``fitted``, else each arm at its own validation pick (``key``)."""
    return _fitted_pair(base, var, key) if fitted else (_val_best(base, key), _val_best(var, key))


def declare_target(base: dict) -> tuple[str, float]:
    """The training target of a row, decided by the baseline alone (see the module docstring)."""
    for p in base["points"]:
        if all(t is not None for t in updates_to_target(base, p, ("train_acc", TARGET_ACC))):
            return ("train_acc", TARGET_ACC)
    final = _arr(base["points"][_train_best(base)]["train"])
    final = final[np.isfinite(final)]
    return ("train", float(np.median(final)) if final.size else float("nan"))


def time_to_target(arm: dict, target: tuple[str, float]) -> dict:
    """Per grid point, per seed, the updates to ``target``; the point with the fewest (mean log,
    unreached = the cap) is the arm's pick for the optimization half."""
    per_point = [updates_to_target(arm, p, target) for p in arm["points"]]
    scores = [float(np.mean(np.log(_capped(arm, t)))) for t in per_point]
    c = _pick(scores)
    return {
        "target": {"metric": target[0], "level": target[1]},
        "per_point": per_point,
        "chosen_index": c,
        "chosen": arm["points"][c]["config"],
        "updates": per_point[c],
        "reached": sum(t is not None for t in per_point[c]),
        "cap": budget_updates(arm) + int(arm["updates_per_epoch"]),
        "train_curve": _mean_curve(arm["points"][c]["curves"]["train"]),
    }


def curve_summary(a) -> dict:
    """Mean and standard deviation over seeds (axis 0), epoch by epoch (NaN after a run stopped:
    ignored; ``None`` where no seed has a finite value)."""
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(a), a, np.nan)
        counts = np.isfinite(finite).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(finite, axis=0) / np.maximum(counts, 1), np.nan)
        sq = np.nansum((finite - mean) ** 2, axis=0) / np.maximum(counts, 1)
    return {"mean": [_finite_or_none(x) for x in mean], "std": [_finite_or_none(x) for x in np.sqrt(sq)]}


def _mean_curve(per_seed) -> list[float | None]:
    """The mean over seeds of per-epoch lists of unequal length (:func:`curve_summary`): the
    chosen point's training curve the report draws."""
    rows = [_arr(c) for c in per_seed]
    table = np.full((len(rows), max((len(r) for r in rows), default=0)), np.nan)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return curve_summary(table)["mean"]


def stall_check(base: dict, var: dict) -> dict:
    """Does the baseline stall where the two arms were trained (the problem an optimizer, an
    initialization or a normalization is there to fix)? Each arm at its fastest grid point for
    :data:`TARGET_ACC` training accuracy (:func:`time_to_target`): the seeds that never reach it
    within the budget, and the median updates of those that do. The baseline stalls when any of
    its seeds never gets there."""
    target = ("train_acc", TARGET_ACC)
    times = {"without": time_to_target(base, target), "with": time_to_target(var, target)}
    never = {k: len(t["updates"]) - t["reached"] for k, t in times.items()}
    median = {
        k: (int(np.median(hit)) if (hit := [u for u in t["updates"] if u is not None]) else None)
        for k, t in times.items()
    }

    def said(k: str) -> str:
        n = len(times[k]["updates"])
        return f"{never[k]} of {n} seeds never reach it" + (
            f" (the others in a median of {median[k]} updates)" if median[k] is not None and never[k] < n else ""
        )

    return {
        "check": "baseline stalls",
        "stalls": never["without"] > 0,
        "never_reached": never,
        "median_updates": median,
        "budget": {"without": budget_updates(base), "with": budget_updates(var)},
        "detail": (
            f"{TARGET_ACC:.0%} training accuracy within the budget ({budget_updates(base)} updates), each arm at "
            f"its fastest grid point: without, {said('without')}; with, {said('with')}"
        ),
    }


def eta_curve(arm: dict) -> list[dict]:
    """Each grid point's mean final training, validation and test losses (Schmidt et al.'s view of
    tuning: how the result depends on the knob), with the failures per point."""
    out = []
    for p in arm["points"]:
        row = {"config": p["config"]}
        for k in ("train", "val", "test", "val_acc", "test_acc"):
            a = _arr(p[k])
            a = a[np.isfinite(a)]
            row[k] = float(np.mean(a)) if a.size else None
        row["diverged"] = sum(d >= 0 for d in p["diverged_epoch"])
        out.append(row)
    return out


def _grid_edge(arm: dict, index: int) -> list[str]:
    """The tuned knobs whose picked value is the first or last of a grid of three or more."""
    edges = []
    for k, values in arm["grid"].items():
        if len(values) >= 3 and arm["points"][index]["config"][k] in (values[0], values[-1]):
            edges.append(k)
    return edges


def _half(result: stats.HalfResult, metric: str, tuned_on: str, extra: dict | None = None) -> dict:
    est = result.estimate
    assert est is not None, "every judged half has an estimate"
    out = {
        "metric": metric,
        "tuned_on": tuned_on,
        "kind": result.kind,
        "scale": est.scale,
        "estimate": _finite_or_none(est.estimate),
        "interval": [_finite_or_none(est.interval[0]), _finite_or_none(est.interval[1])],
        "p_value": _finite_or_none(est.p_value),
        "p_holds": _finite_or_none(result.p_holds),
        "p_fails": _finite_or_none(result.p_fails),
        "margin": result.margin,
        "better": result.better,
        "sd": _finite_or_none(est.sd),
        "mean": _finite_or_none(est.mean),
        "confidence": est.confidence,
        "result": result.result,
        "seeds": int(est.n),
    }
    out.update(extra or {})
    return out


def _kind_test(expected: str | None, est: stats.Estimate, tie: bool) -> stats.HalfResult:
    """The test that fits the lecture's expected effect (``est``: variant against baseline, a
    ratio where lower is better)."""
    if tie:
        return stats.equivalence(est, stats.EQUIVALENCE_RATIO)
    if expected == "better":
        return stats.superiority(est, stats.RATIO_MARGIN, "lower")
    if expected == "worse":
        return stats.superiority(est, stats.RATIO_MARGIN, "higher")
    if expected == "not better":
        return stats.non_superiority(est, stats.RATIO_MARGIN, "lower")
    raise ValueError(f"unknown expected effect {expected!r}")


def optimization_half(row: Row, claim: quotes.Claim, base: dict, var: dict) -> dict:
    """The optimization half (see the module docstring), with its secondary readings."""
    ib, iv = _train_best(base), _train_best(var)
    final = stats.paired_ratio(_arr(base["points"][ib]["train"]), _arr(var["points"][iv]["train"]))
    secondary = {
        "final_train_loss": {
            "estimate": _finite_or_none(final.estimate),
            "interval": [_finite_or_none(final.interval[0]), _finite_or_none(final.interval[1])],
            "p_value": _finite_or_none(final.p_value),
        }
    }
    tie = row.design == "tie"
    if row.design == "equal_eta":
        est, shared = equal_eta_ratio(base, var)
        return _half(
            _kind_test(claim.train, est, tie),
            "final training loss at equal η (geometric mean over the shared η grid)",
            f"none: both arms at every shared η {shared}",
            secondary,
        )
    target = declare_target(base)
    tb, tv = time_to_target(base, target), time_to_target(var, target)
    saturated = _saturated(base, tb["chosen_index"])
    extra = {
        **secondary,
        "time_to_target": {"without": tb, "with": tv},
        "saturated": saturated,
        "grid_edge": {"without": _grid_edge(base, tb["chosen_index"]), "with": _grid_edge(var, tv["chosen_index"])},
    }
    if tb["reached"] == 0 and tv["reached"] == 0:
        return _half(
            _kind_test(claim.train, final, tie),
            "final training loss (no run of either arm reached the target)",
            "training loss (each arm at its training-best point)",
            extra,
        )
    est = time_ratio(base, tb["updates"], var, tv["updates"])
    name = "training accuracy" if target[0] == "train_acc" else "training loss"
    metric = f"updates to {name} {'>=' if target[0] == 'train_acc' else '<='} {target[1]:.4g}"
    return _half(_kind_test(claim.train, est, tie), metric, "updates to the target (each arm's fastest point)", extra)


def _log_epoch_moments(k: int) -> tuple[float, float]:
    """Mean and variance of log U for U uniform on (k−1, k]: a target first seen at the end of
    epoch k was crossed somewhere during that epoch (k = 1: log U has variance 1)."""

    def f1(u):
        return u * math.log(u) - u if u > 0 else 0.0

    def f2(u):
        return u * (math.log(u) ** 2 - 2 * math.log(u) + 2) if u > 0 else 0.0

    m1 = f1(k) - f1(k - 1)
    return m1, max(f2(k) - f2(k - 1) - m1 * m1, 0.0)


def _log_times(arm: dict, times: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, the expected log of the true updates to the target and that log's variance from
    the epoch-end resolution; a run that never got there sits at the cap (log cap, variance 0)."""
    upe = int(arm["updates_per_epoch"])
    cap = budget_updates(arm) + upe
    means, variances = [], []
    for t in times:
        if t is None:
            means.append(math.log(cap))
            variances.append(0.0)
        else:
            m, v = _log_epoch_moments(int(round(t / upe)))
            means.append(math.log(upe) + m)
            variances.append(v)
    return np.array(means), np.array(variances)


def time_ratio(base: dict, tb: Sequence[int | None], var: dict, tv: Sequence[int | None]) -> stats.Estimate:
    """The paired ratio of updates to the target (variant / baseline), with the rounding of
    times observed at epoch ends in its interval (:func:`.stats.log_ratio_estimate`)."""
    mb, vb = _log_times(base, tb)
    mv, vv = _log_times(var, tv)
    return stats.log_ratio_estimate(mv - mb, vb + vv)


def _saturated(base: dict, index: int) -> bool:
    times = updates_to_target(base, base["points"][index], ("train_acc", 1.0))
    return all(t is not None and t <= SATURATION_FRACTION * budget_updates(base) for t in times)


def equal_eta_ratio(base: dict, var: dict) -> tuple[stats.Estimate, list]:
    """Per seed, the geometric mean over the η both arms share of the final training loss (a run
    that diverged counts as the chance loss, ln 10: it did not train), then the paired ratio."""
    key = LR_KEY
    vb = {p["config"].get(key): p for p in base["points"]}
    vv = {p["config"].get(key): p for p in var["points"]}
    shared = [eta for eta in vb if eta in vv]

    def logs(points):
        rows = []
        for eta in shared:
            t = _arr(points[eta]["train"])
            rows.append(np.log(np.where(np.isfinite(t) & (t > 0), np.minimum(t, CHANCE_LOSS), CHANCE_LOSS)))
        return np.exp(np.mean(rows, axis=0))

    return stats.paired_ratio(logs(vb), logs(vv)), shared


def generalization_half(row: Row, claim: quotes.Claim, base: dict, var: dict) -> dict:
    """Test cross-entropy, each arm picked on validation; for a claim whose regime is
    overfitting, the baseline where it fits the training data and the variant at its η
    (:func:`_fitted_pair`), so that the compared baseline is the one that overfits."""
    fitted = row.regime == "overfits"
    ib, iv = _compared_pair(base, var, "val", fitted)
    est = stats.paired_ratio(_arr(base["points"][ib]["test"]), _arr(var["points"][iv]["test"]))
    ab, av = _compared_pair(base, var, "val_acc", fitted)
    acc = stats.paired_points(_arr(base["points"][ab]["test_acc"]), _arr(var["points"][av]["test_acc"]))
    result = _kind_test(claim.val, est, row.design == "tie")
    extra = {
        "test_error": {
            "tuned_on": "validation accuracy",
            "estimate_points": _finite_or_none(acc.estimate),
            "interval": [_finite_or_none(acc.interval[0]), _finite_or_none(acc.interval[1])],
            "p_value": _finite_or_none(acc.p_value),
            "chosen": {"without": base["points"][ab]["config"], "with": var["points"][av]["config"]},
        },
        "chosen": {"without": base["points"][ib]["config"], "with": var["points"][iv]["config"]},
        "grid_edge": {"without": _grid_edge(base, ib), "with": _grid_edge(var, iv)},
        "calibration_only": bool(claim.val == "better" and result.result == "holds" and not acc.interval[0] > 0),
    }
    tuned_on = (
        "the baseline at its training-best η (where it fits), the variant's strength on validation at that η"
        if fitted
        else "validation cross-entropy (each arm)"
    )
    if result.kind == "non_superiority":
        return matched_loss_half(base["points"][ib], var["points"][iv], est, result, tuned_on, extra)
    return _half(result, "test cross-entropy", tuned_on, extra)


#: The four arms of an interaction row (design "interaction"), as ``judge`` names them: baseline
#: and variant at the row's own level of the second factor, then at its other level.
INTERACTION_ARMS = ("without", "with", "level2_without", "level2_with")


def _simple_effect(base: dict, var: dict, level: str, fitted: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """The knob's effect at one level of the second factor: per seed, the log test cross-entropy
    ratio variant/baseline and the test accuracy difference in points, with the paired ratio.
    Each arm at its validation-loss (validation-accuracy) pick; ``fitted`` (a regularizer in the
    overfitting regime): the pair :func:`_fitted_pair` compares, as the regularizer rows do."""
    ib, iv = _compared_pair(base, var, "val", fitted)
    b, v = _arr(base["points"][ib]["test"]), _arr(var["points"][iv]["test"])
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(v) - np.log(b)  # a pair with a value not finite or not positive: dropped (nan)
    logs = np.where(np.isfinite(logs), logs, np.nan)
    ab, av = _compared_pair(base, var, "val_acc", fitted)
    ba, va = _arr(base["points"][ab]["test_acc"]), _arr(var["points"][av]["test_acc"])
    est = stats.paired_ratio(b, v)
    acc = stats.paired_points(ba, va)
    summary = {
        "level": level,
        "estimate": _finite_or_none(est.estimate),
        "interval": [_finite_or_none(est.interval[0]), _finite_or_none(est.interval[1])],
        "p_value": _finite_or_none(est.p_value),
        "seeds": int(est.n),
        "test_error": {
            "estimate_points": _finite_or_none(acc.estimate),
            "interval": [_finite_or_none(acc.interval[0]), _finite_or_none(acc.interval[1])],
            "p_value": _finite_or_none(acc.p_value),
        },
        "chosen": {"without": base["points"][ib]["config"], "with": var["points"][iv]["config"]},
    }
    return logs, 100.0 * (va - ba), summary


def interaction_half(row: Row, claim: quotes.Claim, arms: Sequence[dict]) -> dict:
    """The generalization half of a 2 x 2 design (``row.design == "interaction"``): ``arms`` are
    baseline and variant at the row's level of the second factor, then at its other level
    (:data:`INTERACTION_ARMS`). Per seed (the four arms share seeds and data splits), the
    interaction is log(test CE ratio variant/baseline at the first level) − log(that ratio at the
    second level), each arm at its own validation pick (in the overfitting regime, each level's
    baseline at its training-best η and the variant at that η, its strength picked on validation,
    as :func:`generalization_half` compares a regularizer); its mean and t interval
    (:func:`.stats.log_ratio_estimate`) are a ratio of ratios, judged like any half by the claim's
    expected effect against :data:`.stats.RATIO_MARGIN` ("better": the knob helps more at the
    first level by more than the margin). Each level's simple effect is reported beside, and the
    same interaction in test error points (each arm picked on validation accuracy)."""
    b1, v1, b2, v2 = arms
    fitted = row.regime == "overfits"
    d1, e1, first = _simple_effect(b1, v1, row.levels[0], fitted)
    d2, e2, second = _simple_effect(b2, v2, row.levels[1], fitted)
    est = stats.log_ratio_estimate(d1 - d2)
    e = e1 - e2
    mean, _, lo, hi, p, _ = stats._t_summary(e[np.isfinite(e)], est.confidence)
    result = _kind_test(claim.val, est, False)
    chosen = {**first["chosen"], **{f"level2_{k}": c for k, c in second["chosen"].items()}}
    index = lambda arm, config: next(i for i, q in enumerate(arm["points"]) if q["config"] == config)  # noqa: E731
    extra = {
        "interaction": {"knob": row.knob, "levels": list(row.levels), "factor": row.factor},
        "simple_effects": [first, second],
        "test_error": {
            "tuned_on": "validation accuracy; the same difference of differences, in points",
            "estimate_points": _finite_or_none(mean),
            "interval": [_finite_or_none(lo), _finite_or_none(hi)],
            "p_value": _finite_or_none(p),
        },
        "chosen": chosen,
        "grid_edge": {k: _grid_edge(a, index(a, chosen[k])) for k, a in zip(INTERACTION_ARMS, arms)},
        "calibration_only": bool(claim.val == "better" and result.result == "holds" and not lo > 0),
    }
    metric = (
        f"test cross-entropy: the ratio with/without {row.knob} under {row.levels[0]} over that under {row.levels[1]}"
    )
    tuned_on = (
        "each level's baseline at its training-best η (where it fits), the variant's strength on validation at that η"
        if fitted
        else "validation cross-entropy (each of the four arms)"
    )
    return _half(result, metric, tuned_on, extra)


#: The metric of a "not for generalization" half judged at matched training loss.
MATCHED_METRIC = "test cross-entropy at matched training loss"


def _first_at_or_below(curve, level: float) -> int | None:
    """The first epoch (0-based) whose value is finite and ``<= level``; ``None`` if none is."""
    a = _arr(curve)
    with np.errstate(invalid="ignore"):
        hit = np.flatnonzero(np.isfinite(a) & (a <= level))
    return int(hit[0]) if hit.size else None


def matched_training_loss(pb: dict, pv: dict) -> list[dict]:
    """Per seed, the two grid points ``pb`` (without) and ``pv`` (with) at the same training loss:
    the level ``L*`` = the larger of the two runs' lowest training losses over the run (both
    reach it), each run's first epoch with training loss <= ``L*``, and its test loss at that
    epoch (from ``curves["test"]``). A seed where either run has no finite training loss gets
    ``None`` for each of them."""
    out: list[dict[str, Any]] = []
    for tb, tv, xb, xv in zip(pb["curves"]["train"], pv["curves"]["train"], pb["curves"]["test"], pv["curves"]["test"]):
        lows = [_arr(t)[np.isfinite(_arr(t))] for t in (tb, tv)]
        if not all(low.size for low in lows):
            out.append(
                {"level": None, "epoch": {"without": None, "with": None}, "test": {"without": None, "with": None}}
            )
            continue
        level = float(max(low.min() for low in lows))
        eb, ev = _first_at_or_below(tb, level), _first_at_or_below(tv, level)
        test = {
            k: (None if e is None else _finite_or_none(_arr(x)[e]))
            for k, e, x in (("without", eb, xb), ("with", ev, xv))
        }
        out.append({"level": level, "epoch": {"without": eb, "with": ev}, "test": test})
    return out


def _has_test_curves(p: dict) -> bool:
    curves = p["curves"].get("test")
    return bool(curves) and any(x is not None for c in curves for x in c)


def matched_loss_half(
    pb: dict, pv: dict, literal: stats.Estimate, literal_result: stats.HalfResult, tuned_on: str, extra: dict
) -> dict:
    """A "not for generalization" half (non-superiority, teaching-truth v3 D3): a technique that
    trains faster also ends lower on test loss simply because it is further along, so the claim is
    judged where it means something, at matched training loss (:func:`matched_training_loss`):
    the paired ratio of the test loss at the epoch each arm first reaches L* (per seed), against
    the same margin. The literal reading (test loss of the picked runs at their end) stays under
    ``literal``. Arms without per-epoch test curves (cached before they were recorded) fall back
    to the literal reading and say so under ``matched``."""
    literal_out = {
        "metric": "test cross-entropy (end of the picked runs)",
        "estimate": _finite_or_none(literal.estimate),
        "interval": [_finite_or_none(literal.interval[0]), _finite_or_none(literal.interval[1])],
        "p_value": _finite_or_none(literal.p_value),
        "result": literal_result.result,
    }
    if not (_has_test_curves(pb) and _has_test_curves(pv)):
        note = "not measured: the arms have no per-epoch test curves; judged on the literal reading"
        return _half(
            literal_result,
            "test cross-entropy",
            tuned_on,
            {**extra, "literal": literal_out, "matched": {"used": False, "note": note}},
        )
    seeds = matched_training_loss(pb, pv)
    est = stats.paired_ratio(_arr([s["test"]["without"] for s in seeds]), _arr([s["test"]["with"] for s in seeds]))
    result = stats.non_superiority(est, stats.RATIO_MARGIN, "lower")
    matched = {
        "used": True,
        "rule": (
            "per seed, L* = the larger of the two runs' lowest training losses; each run's test loss at "
            "the first epoch its training loss is <= L*"
        ),
        "per_seed": seeds,
    }
    return _half(result, MATCHED_METRIC, tuned_on, {**extra, "literal": literal_out, "matched": matched})


def measure_half(row: Row, base: dict, var: dict) -> dict:
    """Rows whose claim is about a measure of the validation-picked runs (sparsity, sharpness)."""
    est = stats.paired_ratio(_arr(base["measure"]), _arr(var["measure"]))
    want = MEASURE_CLAIMS[row.name]
    if want == "higher":
        result = stats.superiority(est, stats.RATIO_MARGIN, "higher")
    else:  # "differs": either direction beyond the margin
        up = stats.superiority(est, stats.RATIO_MARGIN, "higher")
        down = stats.superiority(est, stats.RATIO_MARGIN, "lower")
        if down.result == "holds" or (up.result == "fails" and down.result == "inconclusive"):
            result = down
        else:  # up holds; or both fail (no difference beyond the margin either way); or up inconclusive
            result = up
    return _half(result, row.measure, "validation cross-entropy (each arm)")


def check_regime(row: Row, base: dict, var: dict, halves: dict) -> dict:
    """Is the condition of the lecture's claim met *by the compared runs*? ``reached`` None = no
    condition. Overfitting: the generalization-compared baseline has training accuracy >= 99 %
    and its validation loss has risen from its minimum; plateau: the optimization-compared
    constant-η baseline's training loss fell less than 10 % over its last quarter; instability:
    at some η the baseline fails (diverges or stays at chance) within the warm-up window
    (the first tenth of the budget) while the variant is stable at the same η; equal training
    loss: the two compared arms' training losses within a ratio of 1.25; ill-conditioned: the
    condition number of the training inputs' covariance is at least 1e4."""
    claim = quotes.CLAIMS[row.name]
    out: dict[str, Any] = {"condition": claim.condition, "check": row.regime, "reached": None, "detail": ""}
    if row.regime is None:
        return out
    gen = halves.get("generalization", {}).get("chosen", {})
    index = lambda arm, config: next(i for i, p in enumerate(arm["points"]) if p["config"] == config)  # noqa: E731
    if row.regime == "overfits":
        p = base["points"][index(base, gen["without"])] if gen else base["points"][_val_best(base)]
        acc = float(np.nanmean([_last_finite(c) for c in p["curves"]["train_acc"]]))
        val = np.nanmean(np.array([_arr(c) for c in p["curves"]["val"]]), axis=0)
        rise = float(_last_finite(val) / np.nanmin(val)) if np.isfinite(val).any() else float("nan")
        out["reached"] = bool(acc >= OVERFIT_TRAIN_ACC and rise >= OVERFIT_VAL_RISE)
        out["detail"] = (
            f"baseline training accuracy {acc:.3f} (needs >= {OVERFIT_TRAIN_ACC}), final validation loss "
            f"x{rise:.2f} its minimum (needs >= x{OVERFIT_VAL_RISE})"
        )
    elif row.regime == "plateau":
        opt = halves.get("optimization", {}).get("time_to_target", {}).get("without")
        c = opt["chosen_index"] if opt else _train_best(base)
        curve = np.nanmean(np.array([_arr(x) for x in base["points"][c]["curves"]["train"]]), axis=0)
        q = max(len(curve) * 3 // 4 - 1, 0)
        drop = float((curve[q] - curve[-1]) / max(abs(curve[q]), 1e-12))
        out["reached"] = bool(drop < PLATEAU_DROP)
        out["detail"] = f"the compared constant-η run's training loss fell {drop:.0%} over the last quarter"
    elif row.regime == "instability":
        window = max(int(math.ceil(0.1 * base["epochs"])), 1)
        key = LR_KEY
        vv = {p["config"].get(key): p for p in var["points"]}
        found = []
        for p in base["points"]:
            eta = p["config"].get(key)
            early = [0 <= d < window for d in p["diverged_epoch"]]
            same_eta = vv.get(eta)
            if same_eta is not None and any(early) and all(d < 0 for d in same_eta["diverged_epoch"]):
                found.append(eta)
        out["reached"] = bool(found)
        out["detail"] = (
            f"η where the baseline diverges within the first {window} epoch(s) and the variant is stable: "
            f"{found or 'none'}"
        )
    elif row.regime == "equal_train_loss":
        cb = index(base, gen["without"]) if gen else _val_best(base)
        cv = index(var, gen["with"]) if gen else _val_best(var)
        est = stats.paired_ratio(_arr(base["points"][cb]["train"]), _arr(var["points"][cv]["train"]))
        ratio = est.estimate
        out["reached"] = bool(1 / EQUAL_LOSS_RATIO <= ratio <= EQUAL_LOSS_RATIO)
        out["detail"] = f"training loss ratio with/without x{ratio:.2f} (needs within x{EQUAL_LOSS_RATIO})"
    elif row.regime == "ill_conditioned":
        cond = base.get("input_condition")
        out["reached"] = bool(cond is not None and cond >= ILL_CONDITIONED)
        shown = "not measured" if cond is None else f"{cond:.3g}"
        out["detail"] = f"condition number of the training inputs' covariance {shown} (needs >= {ILL_CONDITIONED:g})"
    else:
        raise ValueError(f"unknown regime check {row.regime!r}")
    return out


def judge(row: Row, base: dict, var: dict, seeds: Sequence[int], level2: tuple[dict, dict] | None = None) -> dict:
    """The verdict of ``row`` from its two arms (pure; tested on synthetic arms); an interaction
    row (design "interaction") also takes its arms at the second factor's other level, ``level2``
    (baseline, variant), and judges the generalization half on the four (:func:`interaction_half`)."""
    claim = quotes.CLAIMS[row.name]
    halves: dict[str, dict] = {}
    if (row.design == "interaction") != (level2 is not None):
        raise ValueError(
            f"level2: row {row.name!r} of design {row.design!r} takes the second level's arms iff interaction"
        )
    if level2 is not None:
        if claim.train is not None:
            raise ValueError(
                f"row {row.name!r}: an interaction design judges generalization only, claim.train must be None"
            )
        halves["generalization"] = interaction_half(row, claim, (base, var, *level2))
    elif row.name in MEASURE_CLAIMS:
        halves["measure"] = measure_half(row, base, var)
    else:
        if claim.train is not None:
            halves["optimization"] = optimization_half(row, claim, base, var)
        if claim.val is not None:
            halves["generalization"] = generalization_half(row, claim, base, var)
    regime = check_regime(row, base, var, halves)
    never = all(all(d >= 0 for d in p["diverged_epoch"]) for p in base["points"])
    results = [h["result"] for h in halves.values()]
    if never:
        label = "baseline never trains"
    elif row.design == "demonstration":
        label = "demonstration"
    elif regime["reached"] is False:
        label = "regime not reached"
    elif not halves:
        label = "not testable"
    else:
        label = stats.row_label(results)
    flags = []
    if halves.get("optimization", {}).get("saturated"):
        flags.append("baseline saturated: 100% training accuracy within half the budget")
    if halves.get("generalization", {}).get("calibration_only"):
        flags.append("calibration only: test cross-entropy falls, test error does not")
    edges = [f"{arm} {k}" for h in halves.values() for arm, ks in h.get("grid_edge", {}).items() for k in ks]
    if edges:
        flags.append("grid edge: " + ", ".join(sorted(set(edges))))
    out: dict[str, Any] = {
        "name": row.name,
        "technique": claim.technique,
        "step": claim.step,
        "claim": claim.statement,
        "source": claim.source,
        "design": row.design,
        "knob": row.knob,
        "budget": row.budget,
        "label": label,
        "halves": halves,
        "regime": regime,
        "flags": flags,
        "seeds": [int(s) for s in seeds],
        "epochs": {"without": base["epochs"], "with": var["epochs"]},
        "updates_per_epoch": {"without": base["updates_per_epoch"], "with": var["updates_per_epoch"]},
        "arms": {
            # what each arm trained (data spec with its seeded feature scales, model sizes, budget)
            "without": {
                "fingerprint": base["fingerprint"],
                "program": base.get("program"),
                "setting": row.baseline,
                "eta_curve": eta_curve(base),
            },
            "with": {
                "fingerprint": var["fingerprint"],
                "program": var.get("program"),
                "setting": row.variant,
                "eta_curve": eta_curve(var),
            },
        },
        "quote": [{"seed": q.seed, "lines": list(q.lines), "text": q.text, "gloss": q.gloss} for q in claim.quotes],
        "curves": {"without": base["curves"], "with": var["curves"]},
        "note": row.note,
    }
    if level2 is not None:
        out["levels"] = list(row.levels)
        out["factor"] = row.factor
        second = row.at_second_level()
        for k, a, setting in zip(INTERACTION_ARMS[2:], level2, (second.baseline, second.variant)):
            out["arms"][k] = {
                "fingerprint": a["fingerprint"],
                "program": a.get("program"),
                "setting": setting,
                "eta_curve": eta_curve(a),
            }
            out["curves"][k] = a["curves"]
            out["epochs"][k] = a["epochs"]
            out["updates_per_epoch"][k] = a["updates_per_epoch"]
    return out


def _half_result(h: dict) -> stats.HalfResult:
    nan = float("nan")
    num = lambda x: nan if x is None else float(x)  # noqa: E731
    est = stats.Estimate(
        h["scale"],
        num(h["estimate"]),
        (num(h["interval"][0]), num(h["interval"][1])),
        num(h["p_value"]),
        int(h["seeds"]),
        num(h.get("sd")),
        float(h.get("confidence") or 0.95),
        num(h.get("mean")),
    )
    return stats.HalfResult(
        h["kind"], h["result"], est, h["margin"], num(h["p_holds"]), num(h["p_fails"]), h.get("better")
    )


def decide_table(rows: Sequence[dict]) -> list[dict]:
    """The table's rows with every judged half decided again after the multiplicity correction
    (:data:`MULTIPLICITY`, :func:`.stats.decide_table`) and each label recomputed from the
    corrected results; a half's uncorrected result stays under ``result_unadjusted``."""
    rows = [dict(r, halves={k: dict(h) for k, h in r["halves"].items()}) for r in rows]
    judged = [(r, k) for r in rows if r["label"] != "demonstration" for k, h in r["halves"].items()]
    if not judged:
        return rows
    decided = stats.decide_table([_half_result(r["halves"][k]) for r, k in judged], method=MULTIPLICITY_METHOD)
    for (r, k), d in zip(judged, decided):
        h = r["halves"][k]
        h.setdefault("result_unadjusted", h["result"])
        h["result"] = d.result
    for r in rows:
        if r["label"] not in FIXED_LABELS and r["halves"]:
            r["label"] = stats.row_label([h["result"] for h in r["halves"].values()])
    return rows


def null_table_counts(rows: Sequence[dict], reps: int = 500) -> dict[str, float]:
    """The labels a table of these rows would read if no technique had any effect, by simulation
    (:func:`.stats.expected_null_counts`): the same claim kinds per row, each row at its own
    measured seed spread (the sd of its halves' per-seed log-ratios), the same seed schedule and
    multiplicity correction. A superiority row reading "no" there is a right answer."""
    judged = [r for r in rows if r["label"] not in FIXED_LABELS and r["halves"]]
    if not judged:
        return {}
    kinds = [tuple(h["kind"] for h in r["halves"].values()) for r in judged]
    spreads = []
    for r in judged:
        sds = [h["sd"] for h in r["halves"].values() if h.get("sd") is not None and h["scale"] == "ratio"]
        spreads.append(float(np.mean(sds)) if sds else 0.3)
    out = stats.expected_null_counts(len(judged), kinds, spreads, method=MULTIPLICITY_METHOD, reps=reps)
    return {k: round(float(out[k]), 2) for k in stats.LABELS if k in out}
