"""Execute one row of the lecture table: tune each arm on validation, judge on test.

For each arm (:func:`run_arm`): train every grid point on every seed (one program, see
:mod:`.plan`), pick the grid point with the lowest mean *validation* loss among those where
no seed diverged, and keep that point's per-seed numbers: final training loss, validation
loss and accuracy, and the *test* split's loss and accuracy (nothing was selected on it).

Arms are trained by *program group* (:func:`run_arms`): the arms of the whole registry whose
settings differ only in traced knobs (:func:`.plan.program_key`) run side by side in one
compiled program, each with its own configs and seeds, each selected on its own. The groups
are formed over the registry, not over the rows asked for, so a row's numbers are the same in
``--only`` and in the whole table; the worker that first needs a group trains all of it and
leaves every member in the arm cache (:func:`dispatch_order` orders rows so that workers
seldom wait on one group).

For the row (:func:`run_row`): budgets are made equal in updates (or epochs), the regime the
claim needs is checked on the runs, each metric is compared with :func:`.stats.compare`
(paired t-test across seeds plus a 2% margin), and both halves of the lecture's claim are
checked: the training loss for "optimization", the test loss for "generalization".
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import losses
from jaxopt_lectures.lab import _files, data as data_lib, plan, probes, stats, trainer, verdict
from jaxopt_lectures.lab.claims import quotes
from jaxopt_lectures.lab.claims.rows import REGISTRY, Row

try:
    import fcntl
except ImportError:  # not POSIX: no lock, so two workers may train one program group twice (same numbers)
    fcntl = None  # type: ignore[assignment]

#: Environment variable naming a folder where finished arms are cached as JSON (the CLI sets
#: it to ``<out>/arms``): rows that share an arm (a baseline) train it once, across workers.
ARM_CACHE_ENV = "JAXOPT_LECTURES_ARM_CACHE"
#: A weight counts as zero for the sparsity measure below this absolute value.
SPARSITY_THRESHOLD = 1e-3
#: Relative weight noise of the sharpness measure, and how many noise draws are averaged.
SHARPNESS_EPS, SHARPNESS_DRAWS = 0.05, 4
#: The rule, in words: part of every row's fingerprint, so rows judged by another rule are redone.
RULE = (
    "v2: optimization = updates to a declared training target (each arm at its fastest point), "
    "generalization = test cross-entropy (each arm picked on validation; a regularizer against the "
    "baseline where it fits; a not-better half at matched training loss); paired log-ratios, "
    "superiority / non-superiority / equivalence against stated margins, Benjamini-Hochberg over "
    "the table, more seeds while inconclusive after it"
)
CHANCE_LOSS = math.log(10.0)


#: The layout of a cached arm's results (bumped when :func:`_arm_result` changes, or what a
#: setting trains does): part of every
#: arm's fingerprint, so an arm cached by another layout is trained again. The verdict rule is
#: not: an arm is what was trained, and a new rule judges the same arms again.
#: 3: each grid point's curves carry the per-epoch test loss (``curves["test"]``).
#: 4: the same setting trains another program: a numeric momentum β (and Adam's ε) is injected
#: state, no longer a constant (issue 22 item 5), which may round differently.
ARM_FORMAT = 4


def numeric_mode() -> list[dict]:
    """This process's numeric settings that change a run's numbers, where they are not JAX's
    defaults: ``[{"x64": True, ...}]`` under ``JAX_ENABLE_X64=1`` or a default matmul precision,
    ``[]`` otherwise (so float32 fingerprints stay as they were). Part of every arm's and row's
    fingerprint (audit v2 L34: a plain rerun reused the x64 rows as "finished earlier")."""
    mode: dict[str, object] = {}
    if jax.config.jax_enable_x64:
        mode["x64"] = True
    precision = jax.config.jax_default_matmul_precision
    if precision is not None:
        mode["matmul_precision"] = str(precision)
    return [mode] if mode else []


def arm_fingerprint(setting: dict, grid: dict, epochs: int, seeds: Sequence[int], measure: str) -> str:
    blob = json.dumps(
        [setting, {k: list(v) for k, v in grid.items()}, epochs, list(seeds), measure, jol.__version__, ARM_FORMAT]
        + numeric_mode(),
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def row_fingerprint(row: Row, seeds: Sequence[int], quick: bool, peers: Sequence | None = None) -> str:
    """Settings, grids, budget, claim, seeds, version, rule, and the program groups its arms
    are trained in (``peers``: :func:`table_arms`, computed here if not given)."""
    claim = quotes.CLAIMS[row.name]
    peers = table_arms(seeds, quick) if peers is None else peers
    programs = [group_id(program_group(spec, peers)) for spec in judged_arms(row, seeds, quick)]
    blob = json.dumps(
        [
            row.baseline,
            row.variant,
            row.grids(quick),
            row.epochs(quick),
            row.budget,
            row.regime,
            row.measure,
            row.design,
            row.settings,
            list(seeds),
            claim.train,
            claim.val,
            jol.__version__,
            RULE,
            programs,
            *numeric_mode(),
            *([row.factor, list(row.levels)] if row.factor else []),  # only interaction rows: others keep theirs
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# One arm.


def _final_index(h: trainer.History, c: int, s: int) -> int:
    if int(h.stopped_epoch[c, s]) >= 0:
        return int(h.best_epoch[c, s])
    finite = np.flatnonzero(np.isfinite(h.train_loss[c, s]))
    return int(finite[-1]) if finite.size else 0


def _sparsity(h: trainer.History, c: int, s: int) -> float:
    run = c * len(h.seeds) + s
    mats = [np.asarray(a[run]) for a in jax.tree.leaves(h.state.params) if a.ndim >= 3]
    flat = np.concatenate([m.ravel() for m in mats])
    return float(np.mean(np.abs(flat) < SPARSITY_THRESHOLD))


def _sharpness(h: trainer.History, c: int, s: int, ds) -> float:
    """The sharpness of run ``(c, s)``'s minimum (:func:`.probes.sharpness`, ε = ``SHARPNESS_EPS``)."""
    return probes.sharpness(
        h.model(c, s), ds.x_train, ds.y_train, ds.num_classes, eps=SHARPNESS_EPS, draws=SHARPNESS_DRAWS
    )


def _train(setting: dict, configs: list[dict], epochs: int, seeds, progress: bool, desc: str, init_from=None):
    datasets = [plan.load_data(setting["data"], seed) for seed in seeds]
    ds = datasets[0]
    total = epochs * plan.steps_per_epoch(len(ds.x_train), setting["batch_size"])
    return trainer.train(
        plan.make_model_fn(setting["model"], ds),
        datasets,
        plan.make_optimizer(setting["optimizer"], total),
        epochs=epochs,
        batch_size=setting["batch_size"],
        seeds=seeds,
        configs=configs,
        augment=plan.make_augment(setting["augment"]),
        loss_fn=plan.per_example_loss(setting["loss"]),
        eval_loss_fn=losses.softmax_cross_entropy,
        early_stopping_patience=setting["early_stopping"],
        init_from=init_from,
        progress=progress,
        progress_desc=desc,
        mesh=plan.runs_mesh(setting, len(configs) * len(seeds)),
        test_curve=bool(setting.get("test_curve")),  # a matched-training-loss reading (needs_test_curve)
    ), datasets


def _pretrain(setting: dict, seeds, progress: bool):
    spec = setting["pretrain"]
    if spec["task"] != "rotation":
        raise ValueError(f"unknown pretext task {spec['task']!r}")
    pre = [plan.rotation_pretext(plan.load_data(setting["data"], seed)) for seed in seeds]
    return trainer.train(
        plan.make_model_fn(setting["model"], pre[0]),
        pre,
        plan.make_optimizer({"name": "adam", "learning_rate": 1e-3}, 0),
        epochs=spec["epochs"],
        batch_size=64,
        seeds=seeds,
        progress=progress,
        progress_desc="pretext",
    )


class ArmSpec(NamedTuple):
    """One arm as the planner sees it: its canonical setting, grid, budget and measure, its
    fingerprint (what its numbers belong to) and its program key (:func:`.plan.program_key`)."""

    setting: dict
    grid: dict
    epochs: int
    measure: str
    fingerprint: str
    program: str
    seeds: int  # how many: an arm runs len(configs) x seeds


def arm_spec(setting: dict, grid: dict, epochs: int, seeds: Sequence[int], measure: str = "loss") -> ArmSpec:
    setting = plan.canonical_setting(setting, grid)  # a term switched off is no term: shared arms
    return ArmSpec(
        setting,
        grid,
        int(epochs),
        measure,
        arm_fingerprint(setting, grid, epochs, seeds, measure),
        plan.program_key(setting, epochs, seeds),
        len(seeds),
    )


def needs_test_curve(row: Row) -> bool:
    """Does ``row``'s verdict read the test loss after every epoch? Yes for a "not better"
    generalization claim that is not a tie: it is judged at matched training loss
    (:func:`.verdict.matched_loss_half`). Only those arms measure it: an evaluation per epoch
    (and its program) costs every other row about a quarter of its time on the 2-core CPU."""
    return quotes.CLAIMS[row.name].val == "not better" and row.design != "tie"


def row_arms(row: Row, seeds: Sequence[int], quick: bool) -> tuple[ArmSpec, ArmSpec]:
    """``(baseline, variant)`` of ``row`` as the runner trains them; their settings say
    ``"test_curve": True`` where :func:`needs_test_curve` (part of the fingerprint and of the
    program key: an arm trained without the curve is never read as one with it)."""
    seeds = tuple(int(s) for s in seeds)
    gb, gv = row.grids(quick)
    eb, ev = arm_epochs(row, quick)
    flag = {"test_curve": True} if needs_test_curve(row) else {}
    return (
        arm_spec({**row.baseline, **flag}, gb, eb, seeds, row.measure),
        arm_spec({**row.variant, **flag}, gv, ev, seeds, row.measure),
    )


def judged_arms(row: Row, seeds: Sequence[int], quick: bool) -> tuple[ArmSpec, ...]:
    """The arms ``row``'s verdict reads: :func:`row_arms`, and for an interaction row (design
    "interaction") the same two at the second factor's other level after them
    (:meth:`.claims.rows.Row.at_second_level`; :data:`.verdict.INTERACTION_ARMS`)."""
    arms = row_arms(row, seeds, quick)
    return arms + row_arms(row.at_second_level(), seeds, quick) if row.factor else arms


def _judge_arms(row: Row, arms: Sequence[dict], seeds: Sequence[int]) -> dict:
    """:func:`.verdict.judge` of the results of :func:`judged_arms` (in that order)."""
    level2 = (arms[2], arms[3]) if len(arms) == 4 else None
    return verdict.judge(row, arms[0], arms[1], seeds, level2=level2)


def table_arms(seeds: Sequence[int], quick: bool) -> list[ArmSpec]:
    """Every distinct arm of the registry's table on ``seeds``: the planner's universe.

    Program groups are formed over the whole registry, not over the rows selected, so a
    row's numbers do not depend on which other rows a command asked for (the width of a
    vmapped program moves the last bits of its float arithmetic)."""
    out: dict[str, ArmSpec] = {}
    for row in REGISTRY.values():
        for r in (row, *(row.in_setting(name) for name in row.settings)):
            for spec in judged_arms(r, seeds, quick):
                out.setdefault(spec.fingerprint, spec)
    return list(out.values())


def program_group(spec: ArmSpec, peers: Sequence[ArmSpec], max_runs: int | None | str = "backend") -> list[ArmSpec]:
    """The arms trained in one program with ``spec``: those of ``peers`` with its program key,
    ``spec`` included, each once, in fingerprint order (so the group is the same wherever it
    runs), packed in that order into programs of at most ``max_runs`` runs (default: the
    backend's :func:`.plan.max_program_runs`); the program holding ``spec`` is returned."""
    if isinstance(max_runs, str) and max_runs != "backend":
        raise ValueError(f"max_runs={max_runs!r} is not an int, None or 'backend'")
    cap = plan.max_program_runs() if isinstance(max_runs, str) else max_runs
    members = {p.fingerprint: p for p in (*peers, spec) if p.program == spec.program}
    ordered = [members[fp] for fp in sorted(members)]
    if cap is None:
        return ordered
    bins: list[list[ArmSpec]] = [[]]
    held: set[str] = set()  # the configs of the program being filled (one shared by two arms runs once)
    for m in ordered:
        mine = {json.dumps(c, sort_keys=True) for c in plan.arm_configs(m.setting, m.grid)}
        if bins[-1] and len(held | mine) * m.seeds > cap:
            bins.append([])
            held = set()
        bins[-1].append(m)
        held |= mine
    return next(b for b in bins if any(m.fingerprint == spec.fingerprint for m in b))


def group_id(members: Sequence[ArmSpec]) -> str:
    return hashlib.sha256(" ".join(m.fingerprint for m in members).encode()).hexdigest()[:16]


#: Keys every cached arm must have to be reused (anything less is retrained: audit v2 L12).
ARM_KEYS = ("chosen", "grid", "epochs", "train", "val", "val_acc", "test", "test_acc", "diverged", "curves", "points")
#: How long a worker waits for another process's program lock (env
#: ``JAXOPT_LECTURES_LOCK_TIMEOUT``, seconds) before training the group itself.
LOCK_TIMEOUT_ENV, LOCK_TIMEOUT_S = "JAXOPT_LECTURES_LOCK_TIMEOUT", 3600.0


_warned: set[str] = set()  # arm files already said to be unreadable in this process


def _cache_read(path: Path | None, spec: ArmSpec, gid: str) -> dict | None:
    """The cached arm, or ``None`` (train it): missing, unreadable, another run's or
    incomplete. A FIFO or device there is refused without blocking (audit v2 L09)."""
    if path is None:
        return None
    try:
        cached = json.loads(_files.read_bytes(path, follow=False))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        if str(path) not in _warned:  # read again under the program lock: said once
            _warned.add(str(path))
            why = str(e) if isinstance(e, _files.NotARegularFile) else f"{path}: unreadable arm ({type(e).__name__})"
            print(f"warning: {why}; training it again", file=sys.stderr)
        return None
    ok = isinstance(cached, dict) and cached.get("fingerprint") == spec.fingerprint and cached.get("program") == gid
    return cached if ok and all(k in cached for k in ARM_KEYS) else None


@contextlib.contextmanager
def _program_lock(cache: Path | None, gid: str):
    """One process at a time trains a program group (the others wait, then read its arms).
    Never silently (audit v2 L13): a wait names the holder's pid; a holder stopped (Ctrl-Z)
    or still there after ``JAXOPT_LECTURES_LOCK_TIMEOUT`` seconds, or a lock that cannot be
    made (read-only arms folder, a planted link: L07, L10), means one line and training the
    group here without it (arm files are written atomically: the same numbers either way)."""
    if cache is None or fcntl is None:
        yield
        return
    try:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV) or LOCK_TIMEOUT_S)
    except ValueError:
        timeout = LOCK_TIMEOUT_S
    with contextlib.ExitStack() as stack:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_files.locked(cache / f"program-{gid}.lock", timeout=timeout, what="program lock"))
        except OSError as e:
            print(f"warning: {e}; training the program here without it", file=sys.stderr, flush=True)
        yield


def run_arms(
    specs: Sequence[ArmSpec],
    seeds: Sequence[int],
    peers: Sequence[ArmSpec] = (),
    progress: bool = False,
    desc: str = "",
) -> list[dict]:
    """The results of ``specs``: each trained with its program group (``peers`` sharing its
    program key), or read from the arm cache (``JAXOPT_LECTURES_ARM_CACHE``) if done before."""
    seeds = tuple(int(s) for s in seeds)
    cache = Path(os.environ[ARM_CACHE_ENV]) if os.environ.get(ARM_CACHE_ENV) else None
    done: dict[str, dict] = {}
    for spec in specs:
        if spec.fingerprint in done:
            continue
        members = program_group(spec, [*peers, *specs])
        gid = group_id(members)
        path = lambda m: None if cache is None else cache / f"{m.fingerprint}.json"  # noqa: E731
        hit = _cache_read(path(spec), spec, gid)
        if hit is None:
            with _program_lock(cache, gid):
                hit = _cache_read(path(spec), spec, gid)  # another worker may have trained it meanwhile
                if hit is None:
                    label = desc if len(members) == 1 else f"{desc} (+{len(members) - 1} arms in its program)"
                    for m, result in zip(members, _train_group(members, seeds, progress, label)):
                        result["program"] = gid
                        done[m.fingerprint] = result
                        target = path(m)
                        if target is not None:
                            try:
                                payload = json.dumps(result).encode()
                                _files.atomic_write(target, lambda f: f.write(payload))  # noqa: B023 (called at once)
                            except OSError:  # the arm cache is optional: the result is kept in memory
                                pass
        if hit is not None:
            done[spec.fingerprint] = hit
    return [done[s.fingerprint] for s in specs]


def run_arm(
    setting: dict,
    grid: dict,
    epochs: int,
    seeds: Sequence[int],
    measure: str = "loss",
    progress: bool = False,
    desc: str = "",
    peers: Sequence[ArmSpec] = (),
) -> dict:
    """Train one arm over its grid and seeds (with the ``peers`` of its program group); return
    the selected grid point's per-seed numbers."""
    return run_arms([arm_spec(setting, grid, epochs, seeds, measure)], seeds, peers, progress, desc)[0]


def _select_configs(h: trainer.History, index: Sequence[int], with_state: bool) -> trainer.History:
    """The configs ``index`` of a history (one arm of a program group); its final state too
    if ``with_state`` (cut on the host: eager gathers would compile one program per leaf shape)."""
    ix = np.asarray(index, int)
    runs = (ix[:, None] * len(h.seeds) + np.arange(len(h.seeds))).ravel()

    def cut(a: np.ndarray) -> np.ndarray:
        return a[ix]

    def cut_optional(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[ix]

    def host(a):
        return a[runs] if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else np.asarray(a)[runs]

    return dataclasses.replace(
        h,
        configs=tuple(h.configs[i] for i in ix),
        train_loss=cut(h.train_loss),
        train_acc=cut(h.train_acc),
        val_loss=cut(h.val_loss),
        val_acc=cut(h.val_acc),
        diverged_epoch=cut(h.diverged_epoch),
        diverged_step=cut(h.diverged_step),
        stopped_epoch=cut(h.stopped_epoch),
        best_epoch=cut(h.best_epoch),
        test_loss=cut_optional(h.test_loss),
        test_acc=cut_optional(h.test_acc),
        test_curve=cut_optional(h.test_curve),
        state=jax.tree.map(host, h.state) if with_state else None,
    )


def _train_group(members: Sequence[ArmSpec], seeds: tuple[int, ...], progress: bool, desc: str) -> list[dict]:
    """Train the arms of one program group in one program: their configs side by side (a
    trainer term an arm does not use set to 0; a config two arms share trained once), the
    history cut back into arms."""
    setting, epochs = members[0].setting, members[0].epochs
    per_arm = [plan.arm_configs(m.setting, m.grid) for m in members]
    names = sorted({k for cs in per_arm for c in cs for k in c})
    configs: list[dict] = []
    where: dict[str, int] = {}
    index: list[list[int]] = []
    for cs in per_arm:
        index.append([])
        for c in cs:
            full = {k: c.get(k, 0.0) for k in names}
            key = json.dumps(full, sort_keys=True)
            if key not in where:
                where[key] = len(configs)
                configs.append(full)
            index[-1].append(where[key])
    init_from = _pretrain(setting, seeds, progress) if setting.get("pretrain") else None
    h, datasets = _train(setting, configs, epochs, seeds, progress, desc, init_from)
    return [_arm_result(_select_configs(h, ix, m.measure != "loss"), datasets, m) for m, ix in zip(members, index)]


def _arm_result(h: trainer.History, datasets, spec: ArmSpec) -> dict:
    """The selected grid point's per-seed numbers of one arm's history."""
    points = plan.grid_points(spec.grid)
    n_seed = len(h.seeds)
    if h.test_loss is None or h.test_acc is None:
        raise ValueError("an arm is judged on its test split: the data has none (History.test_loss is None)")
    idx = np.array([[_final_index(h, c, s) for s in range(n_seed)] for c in range(len(points))])
    pick = lambda a: np.take_along_axis(a, idx[..., None], axis=-1)[..., 0]  # noqa: E731
    div = h.diverged
    train, val, val_acc = pick(h.train_loss), pick(h.val_loss), pick(h.val_acc)
    c = stats.pick_grid_point(val, div)
    per_point_fail = [int((div[i] | ~(train[i] < CHANCE_LOSS)).sum()) for i in range(len(points))]
    out = {
        "fingerprint": spec.fingerprint,
        "chosen": points[c],
        "grid": {k: list(v) for k, v in spec.grid.items()},
        "grid_val": [_finite_or_none(float(np.mean(val[i]))) for i in range(len(points))],
        "grid_failures": per_point_fail,  # per grid point: seeds diverged or left at chance
        "grid_diverged": [int(div[i].sum()) for i in range(len(points))],
        "epochs": spec.epochs,
        "train": [_finite_or_none(x) for x in train[c]],
        "val": [_finite_or_none(x) for x in val[c]],
        "val_acc": [_finite_or_none(x) for x in val_acc[c]],
        "test": [_finite_or_none(x) for x in h.test_loss[c]],
        "test_acc": [_finite_or_none(x) for x in h.test_acc[c]],
        "diverged": [bool(x) for x in div[c]],
        "curves": {"train": _curve(h.train_loss[c]), "val": _curve(h.val_loss[c])},
    }
    if spec.measure == "sparsity":
        out["measure"] = [_sparsity(h, c, s) for s in range(n_seed)]
    elif spec.measure == "sharpness":
        out["measure"] = [_sharpness(h, c, s, datasets[s]) if not div[c, s] else None for s in range(n_seed)]
    out["updates_per_epoch"] = plan.steps_per_epoch(len(datasets[0].x_train), spec.setting["batch_size"])
    out["input_condition"] = _finite_or_none(data_lib.input_condition_number(datasets[0]))
    out["points"] = [_point(h, i, points[i], train[i], val[i], val_acc[i]) for i in range(len(points))]
    return out


def _point(h: trainer.History, c: int, config: dict, train, val, val_acc) -> dict:
    """Everything the verdict may select on or judge, for one grid point: per seed, the final
    numbers (as :func:`_arm_result` reads them) and the epoch-by-epoch training and validation
    curves (for time-to-target and the regime checks), and the test loss's when measured (for
    the generalization half at matched training loss)."""
    listed = lambda a: [_finite_or_none(x) for x in a]  # noqa: E731
    test_loss = h.test_loss[c] if h.test_loss is not None else np.full(len(h.seeds), np.nan)
    test_acc = h.test_acc[c] if h.test_acc is not None else np.full(len(h.seeds), np.nan)
    curves = {
        "train": [listed(x) for x in h.train_loss[c]],
        "train_acc": [listed(x) for x in h.train_acc[c]],
        "val": [listed(x) for x in h.val_loss[c]],
    }
    if h.test_curve is not None:
        curves["test"] = [listed(x) for x in h.test_curve[c]]
    return {
        "config": config,
        "train": listed(train),
        "val": listed(val),
        "val_acc": listed(val_acc),
        "test": listed(test_loss),
        "test_acc": listed(test_acc),
        "diverged_epoch": [int(x) for x in h.diverged_epoch[c]],
        "curves": curves,
    }


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _curve(a: np.ndarray) -> dict:
    """Mean and standard deviation over seeds, epoch by epoch (:func:`.verdict.curve_summary`)."""
    return verdict.curve_summary(a)


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


def extension_seeds(seeds: Sequence[int], stage: int) -> tuple[int, ...]:
    """The ``stage``-th extra block of seeds of a run on ``seeds`` (stage 1, 2, ...): as many as
    there, offset by 1000 per stage, so disjoint seed sets get disjoint extensions."""
    return tuple(1000 * stage + int(s) for s in seeds)


def merge_arms(first: dict, more: dict) -> dict:
    """One arm's results on two seed blocks as one: every per-seed list of every grid point
    concatenated (the grid, epochs and budget are the same by construction)."""
    out = dict(first)
    points = []
    for p, q in zip(first["points"], more["points"]):
        assert p["config"] == q["config"], (p["config"], q["config"])
        merged = {k: p[k] + q[k] for k in ("train", "val", "val_acc", "test", "test_acc", "diverged_epoch")}
        merged["config"] = p["config"]
        merged["curves"] = {k: p["curves"][k] + q["curves"][k] for k in p["curves"]}
        points.append(merged)
    out["points"] = points
    for k in ("train", "val", "val_acc", "test", "test_acc", "diverged", "measure"):
        if k in first and k in more:
            out[k] = first[k] + more[k]
    out["fingerprint"] = f"{first['fingerprint']}+{more['fingerprint']}"
    return out


def max_seed_blocks(seeds: Sequence[int]) -> int:
    """How many blocks of ``seeds`` a row may use: :data:`.stats.SEED_SCHEDULE`'s cap in
    blocks of ``len(seeds)`` (at least the first block)."""
    return max(1, stats.SEED_SCHEDULE[-1] // max(1, len(seeds)))


def run_row(row: Row, seeds: Sequence[int], quick: bool, progress: bool = False, blocks: int = 1) -> dict:
    """Train both arms of ``row`` on ``seeds``, judge them (:func:`.verdict.judge`), and while a
    half is still inconclusive (its interval touches its margin) add a block of seeds, up to
    :data:`.stats.SEED_SCHEDULE`'s cap (not with ``quick``, which may only be less decided;
    not for demonstrations or measure rows, whose measure is taken at each block's own
    validation pick). The blocks' arms are trained on their own
    (an extension is not merged into other rows' programs).

    ``blocks``: use at least this many blocks of seeds (within the cap). The table asks for one
    more block when a half decided alone is inconclusive after the table's multiplicity
    correction (:func:`.report.run_table`), the rule :func:`.stats.simulate_table` simulates;
    blocks already trained are read back from the arm cache. ``out["extendable"]`` says whether
    the row takes more seeds at all."""
    seeds = tuple(int(s) for s in seeds)
    arms = run_arms(judged_arms(row, seeds, quick), seeds, table_arms(seeds, quick), progress, row.name)
    out = _judge_arms(row, arms, seeds)
    used, stage, extra_s = seeds, 0, 0.0
    extendable = not quick and row.design != "demonstration" and row.name not in verdict.MEASURE_CLAIMS
    while extendable and (stage + 1 < blocks or any(h["result"] == "inconclusive" for h in out["halves"].values())):
        if stage + 1 >= max_seed_blocks(seeds):
            break
        stage += 1
        more = extension_seeds(seeds, stage)
        t0 = time.perf_counter()
        new = run_arms(judged_arms(row, more, quick), more, (), progress, f"{row.name} (+{len(more)} seeds)")
        extra_s += time.perf_counter() - t0
        arms, used = [merge_arms(a, b) for a, b in zip(arms, new)], used + more  # every arm, interaction's four too
        out = _judge_arms(row, arms, used)
    out["seed_blocks"] = 1 + stage
    out["extendable"] = extendable and 1 + stage < max_seed_blocks(seeds)
    out["extra_seeds_s"] = round(extra_s, 2)
    out["setting"] = row.setting_name
    out["settings"] = {}
    t0 = time.perf_counter()
    # the same comparison elsewhere, reported beside (first block of seeds); not with ``quick``:
    # never part of a label, they are the full table's picture of where the lecture places a claim
    for name in {} if quick else row.settings:
        other = row.in_setting(name)
        b, v = run_arms(
            row_arms(other, seeds, quick), seeds, table_arms(seeds, quick), progress, f"{row.name} ({name})"
        )
        judged = verdict.judge(other, b, v, seeds)
        if judged["label"] == "regime not reached":  # a control is *meant* to lack the regime: its halves say it
            judged["label"] = stats.row_label([h["result"] for h in judged["halves"].values()])
        out["settings"][name] = {k: judged[k] for k in ("label", "halves", "regime", "flags", "arms", "curves")}
        out["settings"][name]["stall"] = verdict.stall_check(b, v)  # is there a problem to fix here?
    out["settings_s"] = round(time.perf_counter() - t0, 2)
    return out


def dispatch_order(rows: Sequence[Row], seeds: Sequence[int], quick: bool) -> list[Row]:
    """The order in which worker processes should take ``rows`` (numbers do not depend on it):
    first rows whose program groups no earlier row trains, then rows that still train a new
    group, then rows whose arms will all be in the arm cache. Two workers then seldom wait on
    one group."""
    peers = table_arms(seeds, quick)
    programs = {
        row.name: {group_id(program_group(spec, peers)) for spec in judged_arms(row, seeds, quick)} for row in rows
    }
    claimed: set[str] = set()
    tiers: list[list[Row]] = [[], [], []]
    for row in rows:  # rows whose every group is new
        if not programs[row.name] & claimed:
            tiers[0].append(row)
            claimed |= programs[row.name]
    for row in rows:
        if row in tiers[0]:
            continue
        tiers[1 if programs[row.name] - claimed else 2].append(row)
        claimed |= programs[row.name]
    return tiers[0] + tiers[1] + tiers[2]


def explain(row: Row, seeds: Sequence[int], quick: bool) -> str:
    """What ``recipe --explain NAME`` prints: the quote, the design, the regime, grids, budget."""
    claim = quotes.CLAIMS[row.name]
    gb, gv = row.grids(quick)
    eb, ev = arm_epochs(row, quick)
    from jaxopt_lectures.lab.claims.rows import differing_paths

    lines = [f"{row.name}: {claim.technique}  [{claim.step}; source: {claim.source}]", ""]
    for q in claim.quotes:
        lines += [
            f"  seed {q.seed}, lines {q.lines[0]}-{q.lines[1]}:",
            "    " + " / ".join(part.strip() for part in q.text.splitlines() if part.strip()),
            f"    ({q.gloss})",
        ]
    lines += [
        "",
        f"claim:      {claim.statement}",
        f"checked:    optimization = {claim.train or 'not checked'} (training loss); "
        f"generalization = {claim.val or 'not checked'} (test loss)"
        + (
            f"; measure: {row.measure} ({verdict.MEASURE_CLAIMS[row.name]})"
            if row.name in verdict.MEASURE_CLAIMS
            else ""
        ),
        f"regime:     {claim.condition}" + (f"  (checked: {row.regime})" if row.regime else "  (not checked)"),
        f"knob:       {row.knob}; the arms differ in {sorted(differing_paths(row.baseline, row.variant))}",
        f"baseline:   {json.dumps(row.baseline, sort_keys=True)}",
        f"variant:    {json.dumps(row.variant, sort_keys=True)}",
        f"tuned:      baseline {gb or 'nothing'}; variant {gv or 'nothing'} (picked by validation loss)",
        f"budget:     {eb} epochs without, {ev} with (equal {row.budget})",
        f"seeds:      {list(seeds)} (each with its own data split)",
    ]
    for arm, others in shared_arms(row, seeds, quick).items():
        lines.append(f"shared:     the {arm} arm is trained once with {', '.join(others)} (not independent)")
    for arm, others in program_rows(row, seeds, quick).items():
        lines.append(
            f"program:    the {arm} arm trains in one compiled program with arms of {', '.join(others)} "
            "(they differ only in traced knobs; each arm keeps its own runs and selection)"
        )
    if row.factor:
        lines.append(
            f"factor:     2 x 2: both arms under {row.levels[0]} and again under {row.levels[1]} "
            f"({json.dumps(row.factor, sort_keys=True)} merged into both); judged on the interaction"
        )
    if row.note:
        lines.append(f"note:       {row.note}")
    return "\n".join(lines) + "\n"


def _arm_keys(row: Row, seeds: Sequence[int], quick: bool) -> dict[str, str]:
    """``{"baseline": fingerprint, "variant": fingerprint}`` of the arms as ``run_arm`` trains them
    (an interaction row's other level: ``"baseline (LEVEL)"``, ``"variant (LEVEL)"``)."""
    arms = judged_arms(row, seeds, quick)
    names = ["baseline", "variant"] + [f"{a} ({row.levels[1]})" for a in ("baseline", "variant")]
    return {n: spec.fingerprint for n, spec in zip(names, arms)}


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


def program_rows(row: Row, seeds: Sequence[int], quick: bool) -> dict[str, list[str]]:
    """The other rows with an arm (not the same arm) in the program group of ``row``'s baseline
    or variant."""
    seeds = tuple(int(s) for s in seeds)
    peers = table_arms(seeds, quick)
    out: dict[str, list[str]] = {}
    for arm, fingerprint in _arm_keys(row, seeds, quick).items():
        spec = next(s for s in judged_arms(row, seeds, quick) if s.fingerprint == fingerprint)
        group = {m.fingerprint for m in program_group(spec, peers)} - {spec.fingerprint}
        names = [
            other.name
            for other in REGISTRY.values()
            if other.name != row.name and group & {s.fingerprint for s in judged_arms(other, seeds, quick)}
        ]
        if names:
            out[arm] = names
    return out


__all__ = [
    "REGISTRY",
    "run_row",
    "run_arm",
    "run_arms",
    "judged_arms",
    "table_arms",
    "program_group",
    "dispatch_order",
    "explain",
    "row_fingerprint",
    "RULE",
]
