"""Execute one row of the lecture table: tune each arm on validation, judge on test.

For each arm (:func:`run_arm`): train every grid point on every seed (one program, see
:mod:`.plan`), pick the grid point with the lowest mean *validation* loss among those where
no seed diverged, and keep that point's per-seed numbers: final training loss, validation
loss and accuracy, and the *test* split's loss and accuracy (nothing was selected on it).

For the row (:func:`run_row`): budgets are made equal in updates (or epochs), the regime the
claim needs is checked on the runs, each metric is compared with :func:`.stats.compare`
(paired t-test across seeds plus a 2% margin), and both halves of the lecture's claim are
checked: the training loss for "optimization", the test loss for "generalization".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxopt_lectures as jol
from jaxopt_lectures import losses
from jaxopt_lectures.lab import plan, stats, trainer
from jaxopt_lectures.lab.claims import quotes
from jaxopt_lectures.lab.claims.rows import REGISTRY, Row

#: Environment variable naming a folder where finished arms are cached as JSON (the CLI sets
#: it to ``<out>/arms``): rows that share an arm (a baseline) train it once, across workers.
ARM_CACHE_ENV = "JAXOPT_LECTURES_ARM_CACHE"
#: A weight counts as zero for the sparsity measure below this absolute value.
SPARSITY_THRESHOLD = 1e-3
#: Relative weight noise of the sharpness measure, and how many noise draws are averaged.
SHARPNESS_EPS, SHARPNESS_DRAWS = 0.05, 4
#: Rows whose claim is about a measure rather than the losses: expected direction of the measure.
MEASURE_CLAIMS = {"l1_vs_l2_sparsity": "higher", "init_minimum": "differs"}
#: The rule, in words: part of every row's fingerprint, so rows judged by another rule are redone.
RULE = (f"paired t-test across seeds on the per-seed relative change, two-sided alpha = {stats.ALPHA}, "
        f"and a mean change beyond {stats.MARGIN:.0%}; diverged runs are counted, not averaged; "
        "each arm tuned on validation, generalization read on the test split")
CHANCE_LOSS = math.log(10.0)


def arm_fingerprint(setting: dict, grid: dict, epochs: int, seeds: Sequence[int], measure: str) -> str:
    blob = json.dumps([setting, {k: list(v) for k, v in grid.items()}, epochs, list(seeds), measure,
                       jol.__version__, RULE], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def row_fingerprint(row: Row, seeds: Sequence[int], quick: bool) -> str:
    claim = quotes.CLAIMS[row.name]
    blob = json.dumps([row.baseline, row.variant, row.grids(quick), row.epochs(quick), row.budget, row.regime,
                       row.measure, list(seeds), claim.train, claim.val, jol.__version__, RULE],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# One arm.


def _final_index(h: trainer.History, c: int, s: int) -> int:
    if int(h.stopped_epoch[c, s]) >= 0:
        return int(h.best_epoch[c, s])
    finite = np.flatnonzero(np.isfinite(h.train_loss[c, s]))
    return int(finite[-1]) if finite.size else 0


def _pick(val: np.ndarray, diverged: np.ndarray) -> int:
    """The grid point with the lowest mean validation loss among those where no seed diverged
    (else the fewest diverged seeds, then the lowest median over the finite ones)."""
    clean = ~diverged.any(axis=1)
    if clean.any():
        scores = np.where(clean, np.nanmean(np.where(np.isfinite(val), val, np.nan), axis=1), np.inf)
        return int(np.nanargmin(scores))
    counts = diverged.sum(axis=1)
    cand = np.flatnonzero(counts == counts.min())
    med = [np.nanmedian(np.where(np.isfinite(val[c]), val[c], np.nan)) if np.isfinite(val[c]).any() else np.inf
           for c in cand]
    return int(cand[int(np.argmin(med))])


def _sparsity(h: trainer.History, c: int, s: int) -> float:
    run = c * len(h.seeds) + s
    mats = [np.asarray(a[run]) for a in jax.tree.leaves(h.state.params) if a.ndim >= 3]
    flat = np.concatenate([m.ravel() for m in mats])
    return float(np.mean(np.abs(flat) < SPARSITY_THRESHOLD))


def _sharpness(h: trainer.History, c: int, s: int, ds) -> float:
    """Mean rise of the training loss when every weight array gets Gaussian noise of
    ``SHARPNESS_EPS`` times its norm (a random-direction version of Keskar's ε-sharpness)."""
    model = h.model(c, s)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)

    def loss_at(p):
        out = nnx.merge(graphdef, p, rest)(x, train=False)
        return jnp.mean(losses.softmax_cross_entropy(out, jax.nn.one_hot(y, ds.num_classes)))

    base = float(loss_at(params))
    rises = []
    for k in range(SHARPNESS_DRAWS):
        keys = iter(jax.random.split(jax.random.PRNGKey(1000 + k), len(jax.tree.leaves(params))))

        def noisy(a):
            u = jax.random.normal(next(keys), a.shape, a.dtype)
            return a + SHARPNESS_EPS * jnp.linalg.norm(a) / jnp.maximum(jnp.linalg.norm(u), 1e-12) * u

        rises.append(float(loss_at(jax.tree.map(noisy, params))) - base)
    return float(np.mean(rises))


def _train(setting: dict, grid: dict, epochs: int, seeds, progress: bool, desc: str, init_from=None):
    datasets = [plan.load_data(setting["data"], seed) for seed in seeds]
    ds = datasets[0]
    total = epochs * plan.steps_per_epoch(len(ds.x_train), setting["batch_size"])
    points = plan.grid_points(grid)
    return trainer.train(
        plan.make_model_fn(setting["model"], ds), datasets, plan.make_optimizer(setting["optimizer"], total),
        epochs=epochs, batch_size=setting["batch_size"], seeds=seeds,
        hparams=dict(setting["hparams"]) or None, configs=plan.trainer_configs(points),
        augment=plan.make_augment(setting["augment"]), loss_fn=plan.per_example_loss(setting["loss"]),
        eval_loss_fn=losses.softmax_cross_entropy, early_stopping_patience=setting["early_stopping"],
        init_from=init_from, progress=progress, progress_desc=desc,
        mesh=plan.runs_mesh(setting, len(points) * len(seeds)),
    ), datasets, points


def _pretrain(setting: dict, seeds, progress: bool):
    spec = setting["pretrain"]
    if spec["task"] != "rotation":
        raise ValueError(f"unknown pretext task {spec['task']!r}")
    pre = [plan.rotation_pretext(plan.load_data(setting["data"], seed)) for seed in seeds]
    return trainer.train(plan.make_model_fn(setting["model"], pre[0]), pre,
                         plan.make_optimizer({"name": "adam", "learning_rate": 1e-3}, 0),
                         epochs=spec["epochs"], batch_size=64, seeds=seeds, progress=progress, progress_desc="pretext")


def run_arm(setting: dict, grid: dict, epochs: int, seeds: Sequence[int], measure: str = "loss",
            progress: bool = False, desc: str = "") -> dict:
    """Train one arm over its grid and seeds; return the selected grid point's per-seed numbers."""
    seeds = tuple(int(s) for s in seeds)
    setting = plan.canonical_setting(setting, grid)  # a term switched off is no term: shared arms
    cache = os.environ.get(ARM_CACHE_ENV)
    fp = arm_fingerprint(setting, grid, epochs, seeds, measure)
    path = Path(cache) / f"{fp}.json" if cache else None
    if path is not None:
        try:
            cached = json.loads(path.read_text())
            if isinstance(cached, dict) and cached.get("fingerprint") == fp:
                return cached
        except (OSError, ValueError):
            pass
    init_from = _pretrain(setting, seeds, progress) if setting.get("pretrain") else None
    h, datasets, points = _train(setting, grid, epochs, seeds, progress, desc, init_from)
    n_seed = len(seeds)
    idx = np.array([[_final_index(h, c, s) for s in range(n_seed)] for c in range(len(points))])
    pick = lambda a: np.take_along_axis(a, idx[..., None], axis=-1)[..., 0]  # noqa: E731
    div = h.diverged
    train, val, val_acc = pick(h.train_loss), pick(h.val_loss), pick(h.val_acc)
    c = _pick(val, div)
    per_point_fail = [int((div[i] | ~(train[i] < CHANCE_LOSS)).sum()) for i in range(len(points))]
    out = {
        "fingerprint": fp,
        "chosen": points[c],
        "grid": {k: list(v) for k, v in grid.items()},
        "grid_val": [_finite_or_none(float(np.mean(val[i]))) for i in range(len(points))],
        "grid_failures": per_point_fail,  # per grid point: seeds diverged or left at chance
        "grid_diverged": [int(div[i].sum()) for i in range(len(points))],
        "epochs": epochs,
        "train": [_finite_or_none(x) for x in train[c]],
        "val": [_finite_or_none(x) for x in val[c]],
        "val_acc": [_finite_or_none(x) for x in val_acc[c]],
        "test": [_finite_or_none(x) for x in h.test_loss[c]],
        "test_acc": [_finite_or_none(x) for x in h.test_acc[c]],
        "diverged": [bool(x) for x in div[c]],
        "curves": {"train": _curve(h.train_loss[c]), "val": _curve(h.val_loss[c])},
    }
    if measure == "sparsity":
        out["measure"] = [_sparsity(h, c, s) for s in range(n_seed)]
    elif measure == "sharpness":
        out["measure"] = [_sharpness(h, c, s, datasets[s]) if not div[c, s] else None for s in range(n_seed)]
    if path is not None:
        from jaxopt_lectures.lab.report import atomic_write

        try:
            atomic_write(path, json.dumps(out))
        except OSError:
            pass
    return out


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _curve(a: np.ndarray) -> dict:
    """Mean and standard deviation over seeds, epoch by epoch (NaN after a run stopped: ignored)."""
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(a), a, np.nan)
        counts = np.isfinite(finite).sum(axis=0)
        mean = np.where(counts > 0, np.nansum(finite, axis=0) / np.maximum(counts, 1), np.nan)
        sq = np.nansum((finite - mean) ** 2, axis=0) / np.maximum(counts, 1)
    return {"mean": [_finite_or_none(x) for x in mean], "std": [_finite_or_none(x) for x in np.sqrt(sq)]}


# ---------------------------------------------------------------------------------------
# One row.


def arm_epochs(row: Row, quick: bool) -> tuple[int, int]:
    """``(baseline, variant)`` epochs: equal updates unless the row's budget is in epochs."""
    e = row.epochs(quick)
    if row.budget == "epochs":
        return e, e
    steps = []
    for s in (row.baseline, row.variant):
        spec = dict(s["data"])
        n = spec.get("train_size")
        if n is None:
            n = len(plan.load_data(spec, 0).x_train)
        steps.append(plan.steps_per_epoch(n, s["batch_size"]))
    return e, max(int(round(e * steps[0] / steps[1])), 1)


def _vals(xs) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], float)


def _compare(base: dict, var: dict, key: str, higher_is_better: bool = False) -> dict:
    b, v = _vals(base[key]), _vals(var[key])
    cmp = stats.compare(np.where(np.isfinite(b), b, 0.0), np.where(np.isfinite(v), v, 0.0),
                        base_diverged=~np.isfinite(b), var_diverged=~np.isfinite(v),
                        higher_is_better=higher_is_better)
    lo, hi = cmp.test.interval
    return {"direction": cmp.direction, "status": cmp.status, "rel_change": _finite_or_none(cmp.test.rel_change),
            "interval": [_finite_or_none(lo), _finite_or_none(hi)], "p": _finite_or_none(cmp.test.p_value),
            "n": int(cmp.test.n)}


def _summary(values) -> dict:
    a = _vals(values)
    finite = a[np.isfinite(a)]
    return {"mean": float(np.mean(finite)) if finite.size else None,
            "spread": float(np.std(finite)) if finite.size else None,
            "per_seed": [None if not np.isfinite(x) else float(x) for x in a]}


def check_regime(row: Row, base: dict, var: dict) -> dict:
    """Is the condition of the lecture's claim met by these runs? ``reached`` None = no condition."""
    claim = quotes.CLAIMS[row.name]
    out = {"condition": claim.condition, "check": row.regime, "reached": None, "detail": ""}
    if row.regime is None:
        return out
    tb, vb = _vals(base["train"]), _vals(base["val"])
    if row.regime == "overfits":
        gap = float(np.nanmean(vb - tb))
        out["reached"] = bool(gap >= 0.1 and np.nanmean(vb) >= 1.5 * np.nanmean(tb))
        out["detail"] = f"baseline train {np.nanmean(tb):.3f}, validation {np.nanmean(vb):.3f} (gap {gap:.3f})"
    elif row.regime == "plateau":
        curve = np.array([np.nan if x is None else x for x in base["curves"]["train"]["mean"]])
        q = max(len(curve) * 3 // 4 - 1, 0)
        drop = float((curve[q] - curve[-1]) / max(abs(curve[q]), 1e-12))
        out["reached"] = bool(drop < 0.1)
        out["detail"] = f"constant-η training loss fell {drop:.0%} over the last quarter of the run"
    elif row.regime == "instability":
        fb, fv = base["grid_failures"], var["grid_failures"]
        n = len(base["train"])
        out["reached"] = bool(any(f > 0 for f in fb))
        lrs = base["grid"].get("optimizer.learning_rate", [])
        stable = lambda fails: max([lr for lr, f in zip(lrs, fails) if f == 0], default=None)  # noqa: E731
        out["detail"] = (f"failed runs per η {lrs}: without {fb}, with {fv} (of {n}); "
                         f"largest stable η without {stable(fb)}, with {stable(fv)}")
    elif row.regime == "equal_train_loss":
        tv = _vals(var["train"])
        mb, mv = float(np.nanmean(tb)), float(np.nanmean(tv))
        out["reached"] = bool(abs(mb - mv) <= 0.25 * max(mb, mv) + 0.01)
        out["detail"] = f"training loss without {mb:.3f}, with {mv:.3f}"
    else:
        raise ValueError(f"unknown regime check {row.regime!r}")
    return out


def judge(row: Row, base: dict, var: dict, seeds: Sequence[int]) -> dict:
    """The verdict of a row from its two arms (pure: no training; tested on synthetic arms)."""
    claim = quotes.CLAIMS[row.name]
    train = _compare(base, var, "train")
    test = _compare(base, var, "test")
    test_acc = _compare(base, var, "test_acc", higher_is_better=True)
    val = _compare(base, var, "val")
    regime = check_regime(row, base, var)
    halves = {}
    if row.name in MEASURE_CLAIMS:
        m = _compare(base, var, "measure", higher_is_better=True)
        want = MEASURE_CLAIMS[row.name]
        halves["measure"] = (m["direction"] == 1) if want == "higher" else (m["direction"] != 0)
    else:
        m = _compare(base, var, "measure", higher_is_better=False) if "measure" in base else None
        for half, expected, observed in (("optimization", claim.train, train), ("generalization", claim.val, test)):
            ok = stats.claim_check(expected, observed["direction"]) if observed["status"] == "ok" else None
            if ok is not None:
                halves[half] = ok
    statuses = {train["status"], test["status"]} - {"ok"}  # "baseline never trains": diverged at every grid point
    if "baseline never trains" in statuses or all(f == len(seeds) for f in base["grid_diverged"]):
        agrees = "baseline never trains"
    elif regime["reached"] is False:
        agrees = "regime not reached"
    elif not halves:
        agrees = "not testable"
    elif all(halves.values()):
        agrees = "yes"
    elif any(halves.values()):
        agrees = "partly"
    else:
        agrees = "no"
    arrow = {1: "better", 0: "no change", -1: "worse"}
    verdict = f"train {arrow[train['direction']]}, test {arrow[test['direction']]}"
    flags = []
    if test["direction"] != test_acc["direction"]:
        flags.append("test loss and accuracy disagree")
    n = len(seeds)
    return {
        "name": row.name,
        "technique": claim.technique,
        "step": claim.step,
        "claim": claim.statement,
        "source": claim.source,
        "knob": row.knob,
        "note": row.note,
        "budget": row.budget,
        "train": {"without": _summary(base["train"]), "with": _summary(var["train"])},
        "val": {"without": _summary(base["val"]), "with": _summary(var["val"])},
        "val_acc": {"without": _summary(base["val_acc"]), "with": _summary(var["val_acc"])},
        "test": {"without": {"loss": _summary(base["test"]), "acc": _summary(base["test_acc"])},
                 "with": {"loss": _summary(var["test"]), "acc": _summary(var["test_acc"])}},
        "measure": None if "measure" not in base else {
            "name": row.measure, "without": _summary(base["measure"]), "with": _summary(var["measure"]),
            "comparison": m},
        "comparisons": {"train": train, "val": val, "test": test, "test_acc": test_acc},
        "interval": {"train": train["interval"], "test": test["interval"]},
        "diverged": {"without": f"{sum(base['diverged'])}/{n}", "with": f"{sum(var['diverged'])}/{n}"},
        "halves": halves,
        "verdict": verdict,
        "agrees": agrees,
        "flags": flags,
        "quote": [{"seed": q.seed, "lines": list(q.lines), "text": q.text, "gloss": q.gloss} for q in claim.quotes],
        "tuned": {"without": {"chosen": base["chosen"], "grid": base["grid"]},
                  "with": {"chosen": var["chosen"], "grid": var["grid"]}},
        "regime": regime,
        "epochs": {"without": base["epochs"], "with": var["epochs"]},
        "seeds": list(seeds),
        "arms": {"without": base["fingerprint"], "with": var["fingerprint"]},
        "curves": {"without": base["curves"], "with": var["curves"]},
    }


def run_row(row: Row, seeds: Sequence[int], quick: bool, progress: bool = False) -> dict:
    """Train both arms of ``row`` on ``seeds`` and judge them."""
    seeds = tuple(int(s) for s in seeds)
    gb, gv = row.grids(quick)
    eb, ev = arm_epochs(row, quick)
    base = run_arm(row.baseline, gb, eb, seeds, row.measure, progress, f"{row.name} (without)")
    var = run_arm(row.variant, gv, ev, seeds, row.measure, progress, f"{row.name} (with)")
    return judge(row, base, var, seeds)


def explain(row: Row, seeds: Sequence[int], quick: bool) -> str:
    """What ``recipe --explain NAME`` prints: the quote, the design, the regime, grids, budget."""
    claim = quotes.CLAIMS[row.name]
    gb, gv = row.grids(quick)
    eb, ev = arm_epochs(row, quick)
    from jaxopt_lectures.lab.claims.rows import differing_paths

    lines = [f"{row.name}: {claim.technique}  [{claim.step}; source: {claim.source}]", ""]
    for q in claim.quotes:
        lines += [f"  seed {q.seed}, lines {q.lines[0]}-{q.lines[1]}:",
                  "    " + " / ".join(part.strip() for part in q.text.splitlines() if part.strip()),
                  f"    ({q.gloss})"]
    lines += ["", f"claim:      {claim.statement}",
              f"checked:    optimization = {claim.train or 'not checked'} (training loss); "
              f"generalization = {claim.val or 'not checked'} (test loss)"
              + (f"; measure: {row.measure} ({MEASURE_CLAIMS[row.name]})" if row.name in MEASURE_CLAIMS else ""),
              f"regime:     {claim.condition}" + (f"  (checked: {row.regime})" if row.regime else "  (not checked)"),
              f"knob:       {row.knob}; the arms differ in {sorted(differing_paths(row.baseline, row.variant))}",
              f"baseline:   {json.dumps(row.baseline, sort_keys=True)}",
              f"variant:    {json.dumps(row.variant, sort_keys=True)}",
              f"tuned:      baseline {gb or 'nothing'}; variant {gv or 'nothing'} (picked by validation loss)",
              f"budget:     {eb} epochs without, {ev} with (equal {row.budget})",
              f"seeds:      {list(seeds)} (each with its own data split)"]
    for arm, others in shared_arms(row, seeds, quick).items():
        lines.append(f"shared:     the {arm} arm is trained once with {', '.join(others)} (not independent)")
    if row.note:
        lines.append(f"note:       {row.note}")
    return "\n".join(lines) + "\n"


def _arm_keys(row: Row, seeds: Sequence[int], quick: bool) -> dict[str, str]:
    """``{"baseline": fingerprint, "variant": fingerprint}`` of the arms as ``run_arm`` trains them."""
    gb, gv = row.grids(quick)
    eb, ev = arm_epochs(row, quick)
    return {arm: arm_fingerprint(plan.canonical_setting(setting, grid), grid, epochs, seeds, row.measure)
            for arm, setting, grid, epochs in (("baseline", row.baseline, gb, eb), ("variant", row.variant, gv, ev))}


def shared_arms(row: Row, seeds: Sequence[int], quick: bool) -> dict[str, list[str]]:
    """The other rows that train the same arm as ``row``'s baseline or variant (one run, reused)."""
    seeds = tuple(int(s) for s in seeds)
    mine = _arm_keys(row, seeds, quick)
    out: dict[str, list[str]] = {}
    for other in REGISTRY.values():
        if other.name == row.name:
            continue
        theirs = set(_arm_keys(other, seeds, quick).values())
        for arm, key in mine.items():
            if key in theirs:
                out.setdefault(arm, []).append(other.name)
    return out


__all__ = ["REGISTRY", "run_row", "run_arm", "judge", "explain", "row_fingerprint", "RULE"]
