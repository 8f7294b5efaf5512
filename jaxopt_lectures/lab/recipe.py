"""The lecture's concluding table, measured: one registry entry per technique.

Seed 000 ends with a table: for each technique, *which step of finding a function it
changes* and *what it buys*:

- steps: "what we want" (the loss and the data, 我要找什麼), "the function set" (the
  network, 改變函式搜尋範圍), "picking the best" (optimization, 找最好的函式);
- benefits: better optimization (a lower training loss) and better generalization (a
  lower validation loss).

Each :class:`Entry` is data: a baseline and a variant :class:`Setting` that differ in one
knob, the lecture's claim, and a budget. :func:`run_entry` trains both on the same seeds
and :func:`judge` turns the losses into a verdict. Nothing here is tuned towards the
lecture's answer: each optimizer runs at its customary default learning rate, each
regularizer at a textbook strength, and a row whose effect does not show says so.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import losses, sharding
from jaxopt_lectures.lab import augment as aug
from jaxopt_lectures.lab import data as data_lib
from jaxopt_lectures.lab import models
from jaxopt_lectures.lab import trainer

STEPS = {
    "loss": "what we want (loss/data)",
    "function_set": "the function set",
    "optimization": "picking the best (optimization)",
}
CLAIMS = {
    "optimization": "better optimization",
    "generalization": "better generalization",
    "both": "better optimization and generalization",
    "worse": "worse generalization (a warning)",
}

# ---------------------------------------------------------------------------------------
# Settings and entries.


def setting(**overrides) -> dict:
    """A full training setting: the defaults below, with ``overrides`` merged in (nested)."""
    base = {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [64, 64], "activation": "relu", "init": "lecun", "norm": None},
        "optimizer": {"name": "sgd", "learning_rate": 0.01},
        "hparams": {},
        "loss": "cross_entropy",
        "augment": None,
        "batch_size": 32,
        "early_stopping": None,
        "pretrain": None,
    }
    return _merge(base, overrides)


def _merge(base: dict, overrides: dict) -> dict:
    """Nested dict merge; an override dict with ``"_replace": True`` replaces instead of merging
    (e.g. swapping the MLP's settings for a CNN's)."""
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not v.get("_replace"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy({kk: vv for kk, vv in v.items() if kk != "_replace"} if isinstance(v, dict) else v)
    return out


def flatten_setting(s: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept as values)."""
    out = {}
    for k, v in s.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_setting(v, key + "."))
        else:
            out[key] = v
    return out


def differing_paths(a: dict, b: dict) -> set[str]:
    fa, fb = flatten_setting(a), flatten_setting(b)
    return {k for k in set(fa) | set(fb) if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One row of the table: a technique, switched off (baseline) and on (variant)."""

    name: str
    technique: str
    step: str  # a key of STEPS
    claim: str  # a key of CLAIMS
    knob: str  # the setting path the two sides differ in, e.g. "optimizer" or "hparams.dropout"
    baseline: dict
    variant: dict
    full_epochs: int
    quick_epochs: int
    note: str = ""

    def epochs(self, quick: bool) -> int:
        return self.quick_epochs if quick else self.full_epochs

    def fingerprint(self, seeds: Sequence[int], quick: bool) -> str:
        blob = json.dumps([self.baseline, self.variant, list(seeds), self.epochs(quick)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _entry(name, technique, step, claim, knob, baseline, variant_overrides, full, quick, note=""):
    base = setting(**baseline)
    return Entry(name, technique, step, claim, knob, base, _merge(base, variant_overrides), full, quick, note)


# Common regimes: digits for optimizers and depth, mnist1d (harder, noisy) for the
# regularizers and CNN-vs-MLP, where a wide MLP overfits.
DIGITS = {"name": "digits"}
MNIST1D = {"name": "mnist1d", "num_samples": 4000}
DEEP = {"hidden": [64] * 8}
WIDE = {"hidden": [256, 256]}
OVERFIT = {"data": MNIST1D, "model": WIDE, "optimizer": {"name": "adam", "learning_rate": 1e-3}}

REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in [
        # --- picking the best: optimizers (vs plain SGD at its default η = 0.01) ---------------
        _entry("adagrad", "Adagrad", "optimization", "optimization", "optimizer",
               {"data": DIGITS}, {"optimizer": {"name": "adagrad", "learning_rate": 0.01}}, 20, 4),
        _entry("rmsprop", "RMSProp", "optimization", "optimization", "optimizer",
               {"data": DIGITS}, {"optimizer": {"name": "rmsprop", "learning_rate": 0.001}}, 20, 4),
        _entry("momentum", "Momentum", "optimization", "optimization", "optimizer",
               {"data": DIGITS}, {"optimizer": {"name": "sgd", "momentum": 0.9}}, 20, 4),
        _entry("adam", "Adam", "optimization", "optimization", "optimizer",
               {"data": DIGITS}, {"optimizer": {"name": "adam", "learning_rate": 0.001}}, 20, 4),
        _entry("warmup", "Learning-rate warm-up", "optimization", "optimization", "optimizer.schedule",
               {"data": DIGITS, "model": {**DEEP, "norm": "batch"}, "optimizer": {"name": "adam", "learning_rate": 0.01}},
               {"optimizer": {"schedule": {"kind": "linear_warmup", "warmup_steps": 200}}}, 15, 3,
               "Adam at a high η on a deep batch-normed MLP, with and without 200 warm-up steps"),
        _entry("decay", "Learning-rate decay", "optimization", "optimization", "optimizer.schedule",
               {"data": DIGITS, "optimizer": {"name": "sgd", "learning_rate": 0.1}},
               {"optimizer": {"schedule": {"kind": "cosine_decay"}}}, 20, 4),
        _entry("adamw", "AdamW (vs Adam + L2)", "optimization", "generalization", "optimizer",
               {**OVERFIT, "optimizer": {"name": "adam_l2", "learning_rate": 1e-3, "weight_decay": 1e-2}},
               {"optimizer": {"name": "adamw", "weight_decay": 1e-2}}, 30, 6),
        _entry("dropout", "Dropout", "optimization", "generalization", "hparams.dropout",
               {**OVERFIT, "hparams": {"dropout": 0.0}}, {"hparams": {"dropout": 0.3}}, 30, 6),
        _entry("weight_decay", "Weight decay (L2)", "optimization", "generalization", "optimizer.weight_decay",
               {**OVERFIT, "optimizer": {"name": "sgd_wd", "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 0.0}},
               {"optimizer": {"weight_decay": 5e-3}}, 30, 6),
        _entry("l1", "L1 regularization", "loss", "generalization", "hparams.l1",
               {**OVERFIT, "hparams": {"l1": 0.0}}, {"hparams": {"l1": 1e-4}}, 30, 6),
        _entry("early_stopping", "Early stopping", "optimization", "generalization", "early_stopping",
               {**OVERFIT}, {"early_stopping": 3}, 30, 6),
        _entry("init", "Initialization (scale)", "optimization", "both", "model.init",
               {"data": DIGITS, "model": {**DEEP, "init": 1.0}}, {"model": {"init": "he"}}, 15, 3,
               "N(0, 1) weights on a deep ReLU MLP vs He initialization"),
        _entry("pretrain", "Pre-training on a pretext task", "optimization", "both", "pretrain",
               {"data": {"name": "digits", "train_size": 100, "unlabeled_size": 800}},
               {"pretrain": {"task": "rotation", "epochs": 10}}, 30, 6,
               "100 labeled digits; the variant first learns to tell the rotation of 800 unlabeled ones"),
        # --- the function set ---------------------------------------------------------------
        _entry("cnn", "CNN (vs MLP)", "function_set", "generalization", "model",
               {**OVERFIT}, {"model": {"name": "cnn", "channels": [16, 32], "dense": [64], "_replace": True}}, 30, 6),
        _entry("skip", "Skip connections", "function_set", "optimization", "model.skip",
               {"data": DIGITS, "model": {"name": "resnet", "depth": 20, "width": 8, "skip": False, "norm": "batch",
                                          "_replace": True}, "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9}},
               {"model": {"skip": True}}, 8, 2, "ResNet-20 with batch norm, as in Li et al.'s comparison"),
        _entry("batchnorm", "Batch normalization", "function_set", "optimization", "model.norm",
               {"data": DIGITS, "model": DEEP}, {"model": {"norm": "batch"}}, 15, 3),
        _entry("layernorm", "Layer normalization", "function_set", "optimization", "model.norm",
               {"data": DIGITS, "model": DEEP}, {"model": {"norm": "layer"}}, 15, 3),
        _entry("sigmoid", "ReLU (vs sigmoid) on a deep net", "function_set", "optimization", "model.activation",
               {"data": DIGITS, "model": {**DEEP, "activation": "sigmoid"}}, {"model": {"activation": "relu"}}, 15, 3),
        _entry("maxout", "Maxout (vs ReLU)", "function_set", "optimization", "model.activation",
               {"data": DIGITS}, {"model": {"activation": "maxout2"}}, 20, 4),
        # --- what we want: loss and data ---------------------------------------------------
        _entry("accuracy_loss", "Cross-entropy (vs accuracy as loss)", "loss", "optimization", "loss",
               {"data": DIGITS, "loss": "accuracy"}, {"loss": "cross_entropy"}, 20, 4,
               "accuracy has zero gradient almost everywhere: nothing moves"),
        _entry("mse_loss", "Cross-entropy (vs MSE)", "loss", "optimization", "loss",
               {"data": DIGITS, "loss": "mse"}, {"loss": "cross_entropy"}, 20, 4),
        _entry("more_data", "More training data", "loss", "generalization", "data.train_size",
               {**OVERFIT, "data": {**MNIST1D, "train_size": 600}}, {"data": {"train_size": 2400}}, 30, 6),
        _entry("mixup", "Data augmentation (mixup)", "loss", "generalization", "hparams.mixup_alpha",
               {**OVERFIT, "hparams": {"mixup_alpha": 0.0}}, {"hparams": {"mixup_alpha": 0.4}}, 30, 6),
        _entry("flip", "Augmentation that flips digits", "loss", "worse", "augment",
               {"data": DIGITS, "model": WIDE}, {"augment": "flip"}, 20, 4,
               "mirroring changes what some digits mean: the lecture's warning"),
        _entry("entropy", "Semi-supervised: entropy minimization", "loss", "generalization", "hparams.entropy_weight",
               {"data": {"name": "digits", "train_size": 100, "unlabeled_size": 800},
                "optimizer": {"name": "adam", "learning_rate": 1e-3}, "hparams": {"entropy_weight": 0.0}},
               {"hparams": {"entropy_weight": 0.3}}, 30, 6),
        _entry("graph", "Semi-supervised: graph smoothness", "loss", "generalization", "hparams.graph_weight",
               {"data": {"name": "digits", "train_size": 100, "unlabeled_size": 800},
                "optimizer": {"name": "adam", "learning_rate": 1e-3}, "hparams": {"graph_weight": 0.0}},
               {"hparams": {"graph_weight": 1.0}}, 30, 6),
        _entry("batch_size", "Small batch (vs large), same epochs", "optimization", "generalization", "batch_size",
               {"data": DIGITS, "optimizer": {"name": "sgd", "learning_rate": 0.05}, "batch_size": 512},
               {"batch_size": 16}, 20, 4, "Keskar et al.: equal epochs, so the small batch also makes more updates"),
    ]
}


# ---------------------------------------------------------------------------------------
# From a setting to the trainer's arguments.


class SwitchState(NamedTuple):
    """``which``: the index of the transformation whose updates are used (set per config)."""

    which: jax.Array
    inner_states: tuple


def switch(*txs: jol.GradientTransformation) -> jol.GradientTransformation:
    """Runs every transformation and keeps the updates of ``state.which``.

    Lets a baseline optimizer and a variant optimizer share one compiled, vmapped training
    program: the configuration sets ``which`` (0 or 1). Each side's numbers are exactly its
    own optimizer's; the other side's state simply evolves unused.
    """

    def init(params):
        return SwitchState(which=jnp.zeros([], jnp.int32), inner_states=tuple(tx.init(params) for tx in txs))

    def update(grads, state, params=None, **extra):
        outs = [tx.update(grads, s, params, **extra) for tx, s in zip(txs, state.inner_states)]
        updates = outs[0][0]
        for i, (u, _) in enumerate(outs[1:], start=1):
            updates = jax.tree.map(lambda new, old, i=i: jnp.where(state.which == i, new, old), u, updates)
        return updates, SwitchState(which=state.which, inner_states=tuple(s for _, s in outs))

    return jol.GradientTransformation(init, update)


def make_schedule(spec: dict | None, learning_rate: float, total_steps: int):
    if not spec:
        return learning_rate
    kind = spec["kind"]
    if kind == "linear_warmup":
        return jol.schedules.linear_warmup(0.0, learning_rate, spec["warmup_steps"])
    if kind == "cosine_decay":
        return jol.schedules.cosine_decay(learning_rate, max(total_steps, 1))
    raise ValueError(f"unknown schedule kind {kind!r}")


def make_optimizer(spec: dict, total_steps: int) -> jol.GradientTransformation:
    """An optimizer from its description; names are ``jol`` aliases plus two chains."""
    spec = dict(spec)
    name = spec.pop("name")
    lr = make_schedule(spec.pop("schedule", None), spec.pop("learning_rate"), total_steps)
    if name == "adam_l2":  # coupled L2 inside Adam: the penalty gets divided by √v̂ too
        return jol.chain(jol.add_l2_regularization(spec.pop("weight_decay")), jol.adam(lr, **spec))
    if name == "sgd_wd":  # SGD (+ momentum) with decoupled weight decay (1 − ηλ)θ
        wd = spec.pop("weight_decay")
        return jol.chain(jol.decoupled_weight_decay(wd), jol.sgd(lr, **spec))
    return getattr(jol, name)(lr, **spec)


def _steps_per_epoch(n_train: int, batch_size: int | None) -> int:
    return 1 if batch_size is None else max(n_train // batch_size, 1)


def load_data(spec: dict) -> data_lib.Dataset:
    spec = dict(spec)
    name = spec.pop("name")
    return data_lib.load(name, **spec)


def make_model_fn(spec: dict, ds: data_lib.Dataset):
    spec = dict(spec)
    name = spec.pop("name")
    classes = ds.num_classes
    act = spec.pop("activation", "relu")
    if isinstance(act, str) and act.startswith("maxout"):
        act = models.maxout(int(act[len("maxout"):]))
    if name == "mlp":
        widths = (math.prod(ds.input_shape), *spec.pop("hidden"), classes)
        return functools.partial(models.MLP, widths, activation=act, **spec)
    if name == "cnn":
        return functools.partial(models.CNN, ds.input_shape, classes, activation=act, **spec)
    if name == "resnet":
        return functools.partial(models.ResNet, in_shape=ds.input_shape, num_classes=classes, activation=act, **spec)
    raise ValueError(f"unknown model {name!r}")


def per_example_loss(name: str):
    """The training loss: cross-entropy, MSE on softmax outputs, or (minus) accuracy."""
    if name == "cross_entropy":
        return None  # the trainer's default
    if name == "mse":
        return lambda out, target: jnp.sum((jax.nn.softmax(out) - target) ** 2, axis=-1)
    if name == "accuracy":
        # 1 − [argmax = label]: piecewise constant in the weights, so its gradient is 0.
        return lambda out, target: 1.0 - (jnp.argmax(out, -1) == jnp.argmax(target, -1)).astype(out.dtype)
    raise ValueError(f"unknown loss {name!r}")


def make_augment(name: str | None, ds: data_lib.Dataset):
    if name is None:
        return None
    if name == "flip":  # deliberately unsafe: this row measures the lecture's warning
        return aug.make_augment(flip=True, flip_safe=True)
    raise ValueError(f"unknown augment {name!r}")


# ---------------------------------------------------------------------------------------
# Running one entry.


def _can_share_program(entry: Entry) -> bool:
    paths = differing_paths(entry.baseline, entry.variant)
    return all(p.startswith("hparams.") for p in paths) or all(p.startswith("optimizer") for p in paths)


def runs_per_device_split(n_runs: int, n_devices: int) -> int:
    """How many devices share a row's vmapped runs: the largest divisor of ``n_runs`` that is
    at most ``n_devices`` (each then trains ``n_runs / d`` runs; 1 means no spreading)."""
    return max(d for d in range(1, min(n_runs, n_devices) + 1) if n_runs % d == 0)


def _runs_mesh(s: dict, n_runs: int):
    """A mesh over the available devices for dense models (their runs are vmapped), else None."""
    d = runs_per_device_split(n_runs, jax.device_count())
    if d == 1 or s["model"]["name"] != "mlp":
        return None
    return sharding.data_mesh(d, axis="runs")


def _train_side(s: dict, ds, epochs, seeds, progress, desc, configs=None, optimizer=None, init_from=None):
    total = epochs * _steps_per_epoch(len(ds.x_train), s["batch_size"])
    hp = dict(s["hparams"])
    n_runs = len(configs or [None]) * len(seeds)
    return trainer.train(
        make_model_fn(s["model"], ds),
        ds,
        optimizer if optimizer is not None else make_optimizer(s["optimizer"], total),
        epochs=epochs,
        batch_size=s["batch_size"],
        seeds=seeds,
        hparams=hp or None,
        configs=configs,
        augment=make_augment(s["augment"], ds),
        loss_fn=per_example_loss(s["loss"]),
        eval_loss_fn=losses.softmax_cross_entropy,  # both sides measured in cross-entropy
        early_stopping_patience=s["early_stopping"],
        init_from=init_from,
        progress=progress,
        progress_desc=desc,
        mesh=_runs_mesh(s, n_runs),
    )


def _pretrain(spec: dict, s: dict, ds, seeds, progress):
    """Pretext task: predict by how many quarter turns an unlabeled image was rotated."""
    if spec["task"] != "rotation":
        raise ValueError(f"unknown pretext task {spec['task']!r}")
    x = ds.x_unlabeled
    xs = np.concatenate([np.rot90(x, k, axes=(1, 2)) for k in range(4)])
    ys = np.repeat(np.arange(4, dtype=np.int32), len(x))
    pre = data_lib.from_arrays(xs, ys, name="digits-rotation", num_classes=4, normalize=False,
                               val_fraction=0.1, test_fraction=0.0)
    side = dict(s, pretrain=None, model=dict(s["model"]))
    pre_fn = make_model_fn(side["model"], pre)
    return trainer.train(pre_fn, pre, make_optimizer({"name": "adam", "learning_rate": 1e-3}, 0),
                         epochs=spec["epochs"], batch_size=64, seeds=seeds, progress=progress,
                         progress_desc="pretext")


def run_entry(entry: Entry, seeds: Sequence[int], quick: bool, progress: bool = False) -> dict:
    """Train baseline and variant on the same seeds; return the row (losses and verdict)."""
    epochs = entry.epochs(quick)
    seeds = tuple(int(s) for s in seeds)
    b, v = entry.baseline, entry.variant
    ds_b = load_data(b["data"])
    ds_v = ds_b if b["data"] == v["data"] else load_data(v["data"])
    if _can_share_program(entry):
        # one compiled program for both sides: configs select the technique
        paths = differing_paths(b, v)
        if all(p.startswith("hparams.") for p in paths):
            configs = [dict(b["hparams"]), dict(v["hparams"])]
            h = _train_side(b, ds_b, epochs, seeds, progress, entry.name, configs=configs)
        else:
            total = epochs * _steps_per_epoch(len(ds_b.x_train), b["batch_size"])
            tx = switch(make_optimizer(b["optimizer"], total), make_optimizer(v["optimizer"], total))
            h = _train_side(b, ds_b, epochs, seeds, progress, entry.name,
                            configs=[{"which": 0}, {"which": 1}], optimizer=tx)
        sides = [_side_metrics(h, 0), _side_metrics(h, 1)]
    else:
        init_from = None
        if v["pretrain"]:
            init_from = _pretrain(v["pretrain"], v, ds_v, seeds, progress)
        hb = _train_side(b, ds_b, epochs, seeds, progress, f"{entry.name} (without)")
        hv = _train_side(v, ds_v, epochs, seeds, progress, f"{entry.name} (with)", init_from=init_from)
        sides = [_side_metrics(hb, 0), _side_metrics(hv, 0)]
    return judge_row(entry, sides, seeds, quick)


def _side_metrics(h: trainer.History, config: int) -> dict:
    """Per seed: the train/val loss of the parameters the run ends with (the restored best
    ones after early stopping), and where it diverged."""
    n_seeds = len(h.seeds)
    train, val, train_acc, val_acc, diverged = [], [], [], [], []
    for s in range(n_seeds):
        stopped = int(h.stopped_epoch[config, s]) >= 0
        e = int(h.best_epoch[config, s]) if stopped else None
        tl, vl = h.train_loss[config, s], h.val_loss[config, s]
        ta, va = h.train_acc[config, s], h.val_acc[config, s]
        if e is None:
            finite = np.flatnonzero(np.isfinite(tl))
            e = int(finite[-1]) if finite.size else 0
        div = int(h.diverged_step[config, s]) if bool(h.diverged[config, s]) else None
        train.append(float(tl[e]) if div is None else math.inf)
        val.append(float(vl[e]) if div is None else math.inf)
        train_acc.append(float(ta[e]) if div is None else math.nan)
        val_acc.append(float(va[e]) if div is None else math.nan)
        diverged.append(div)
    return {"train": train, "val": val, "train_acc": train_acc, "val_acc": val_acc, "diverged_step": diverged}


# ---------------------------------------------------------------------------------------
# The verdict.

#: An effect "shows" when the mean change exceeds this fraction of the baseline value...
REL_TOL = 0.02
#: ...and this absolute amount (losses near 0 would otherwise make any wiggle count).
ABS_TOL = 1e-3


def _direction(base: Sequence[float], var: Sequence[float]) -> int:
    """−1 when the variant is lower (better), +1 higher (worse), 0 when no effect shows.

    The mean paired change must exceed ``max(REL_TOL·|mean baseline|, ABS_TOL)`` and the
    seed-to-seed spread of the paired changes (its standard deviation).
    """
    b, v = np.asarray(base, float), np.asarray(var, float)
    if np.isinf(v).any() and not np.isinf(b).any():
        return 1
    if np.isinf(b).any() and not np.isinf(v).any():
        return -1
    if np.isinf(b).any() and np.isinf(v).any():
        return 0
    d = v - b
    tol = max(REL_TOL * abs(float(np.mean(b))), ABS_TOL)
    spread = float(np.std(d)) if d.size > 1 else 0.0
    m = float(np.mean(d))
    if abs(m) <= max(tol, spread):
        return 0
    return -1 if m < 0 else 1


def verdict(train_dir: int, val_dir: int) -> str:
    if train_dir < 0 and val_dir < 0:
        return "both"
    if train_dir < 0:
        return "better optimization"
    if val_dir < 0:
        return "better generalization"
    if train_dir > 0 or val_dir > 0:
        return "worse"
    return "neither"


def _claim_holds(claim: str, train_dir: int, val_dir: int) -> bool:
    return {
        "optimization": train_dir < 0,
        "generalization": val_dir < 0,
        "both": train_dir < 0 and val_dir < 0,
        "worse": val_dir > 0,
    }[claim]


def _seed_agrees(claim: str, tb, tv, vb, vv) -> bool:
    better_train, better_val = tv < tb, vv < vb
    return {
        "optimization": better_train,
        "generalization": better_val,
        "both": better_train and better_val,
        "worse": vv > vb,
    }[claim]


def _stats(values: Sequence[float]) -> dict:
    a = np.asarray(values, float)
    finite = a[np.isfinite(a)]
    return {
        "mean": float(np.mean(a)) if finite.size == a.size else math.inf,
        "spread": float(np.std(finite)) if finite.size else math.nan,
        "per_seed": [float(x) for x in a],
    }


def judge_row(entry: Entry, sides: list[dict], seeds: Sequence[int], quick: bool) -> dict:
    base, var = sides
    t_dir = _direction(base["train"], var["train"])
    v_dir = _direction(base["val"], var["val"])
    vd = verdict(t_dir, v_dir)
    holds = _claim_holds(entry.claim, t_dir, v_dir)
    n_agree = sum(
        _seed_agrees(entry.claim, tb, tv, vb, vv)
        for tb, tv, vb, vv in zip(base["train"], var["train"], base["val"], var["val"])
    )
    n = len(seeds)
    agrees = "yes" if holds and n_agree == n else ("no" if not holds and n_agree == 0 else "mixed")
    diverged = []
    for side_name, side in (("without", base), ("with", var)):
        for seed, step in zip(seeds, side["diverged_step"]):
            if step is not None:
                diverged.append(f"{side_name}, seed {seed}: diverged at step {step}")
    return {
        "name": entry.name,
        "technique": entry.technique,
        "step": STEPS[entry.step],
        "claim": CLAIMS[entry.claim],
        "knob": entry.knob,
        "train": {"without": _stats(base["train"]), "with": _stats(var["train"])},
        "val": {"without": _stats(base["val"]), "with": _stats(var["val"])},
        "val_acc": {"without": _stats(base["val_acc"]), "with": _stats(var["val_acc"])},
        "verdict": vd,
        "agrees": agrees,
        "seeds_agreeing": int(n_agree),
        "seeds": list(seeds),
        "epochs": entry.epochs(quick),
        "diverged": diverged,
        "note": entry.note,
    }


# ---------------------------------------------------------------------------------------
# The whole table, resumable.


def select(names: Sequence[str] | None) -> list[Entry]:
    """Registry entries by name (all when ``names`` is empty); unknown names raise."""
    if not names:
        return list(REGISTRY.values())
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"unknown technique(s) {', '.join(map(repr, unknown))}; known: {', '.join(REGISTRY)}")
    return [REGISTRY[n] for n in names]


class CompileTimer:
    """Adds up the time JAX spends tracing, lowering and compiling (its monitoring events)."""

    _total = 0.0
    _installed = False

    @classmethod
    def install(cls):
        if not cls._installed:
            def listener(name, duration, **_):
                if name.startswith("/jax/core/compile/"):
                    cls._total += duration

            jax.monitoring.register_event_duration_secs_listener(listener)
            cls._installed = True

    @classmethod
    def total(cls) -> float:
        return cls._total

