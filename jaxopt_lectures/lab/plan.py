"""From a row's setting and grid to the trainer's arguments: one program per arm, or per group.

An *arm* is one training setting plus a grid of tuned knobs. Every grid point and every
seed of an arm run in **one** compiled program: the tuned knobs are traced inputs, not
constants. Arms whose settings differ only in traced knobs (:func:`program_key`: the
optimizer knobs of :data:`TUNABLE_OPTIMIZER`, and the trainer terms' weights, 0 for a term an
arm does not use) are one *program group*: :mod:`.run` trains the whole group in one program.
Optimizer knobs (``optimizer.learning_rate``, ``optimizer.eps`` ...) are injected into the
optimizer state (``jol.inject_hyperparams``), the trainer's own knobs
(``hparams.dropout``, ``hparams.l1`` ...) enter the step as arrays; dense nets run all
(grid point, seed) pairs vmapped, conv nets run by run over one jitted step (the
trainer's choice). Each seed trains on its own data split (``seed`` of the split).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import sharding
from jaxopt_lectures.lab import augment as aug, data as data_lib, models
from jaxopt_lectures.lab.trainer import TRAINER_HPARAMS, check_batch_size

#: Optimizer settings that may be tuned (they become injected hyper-parameters): the learning
#: rate, the weight decay, Adam's ε and the momentum coefficient (``momentum`` of ``sgd``,
#: ``beta`` of ``momentum``). Each but the learning rate is injected wherever a setting gives
#: it a number, so arms that differ only in its value share one program.
TUNABLE_OPTIMIZER = ("learning_rate", "weight_decay", "eps", "momentum", "beta")
#: The tunable knobs a setting may leave out (the learning rate it always has).
_INJECTED_IF_SET = TUNABLE_OPTIMIZER[1:]


def grid_points(grid: dict[str, tuple]) -> list[dict[str, Any]]:
    """The Cartesian product of a grid, as ``[{path: value}, ...]`` (one point for ``{}``)."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def trainer_configs(points: list[dict[str, Any]]) -> list[dict[str, float]] | None:
    """Grid points as the trainer's ``configs``: ``optimizer.X`` -> ``X`` (injected into the
    optimizer state), ``hparams.X`` -> ``X`` (a trainer hyper-parameter)."""
    out = []
    for p in points:
        c = {}
        for path, value in p.items():
            head, _, name = path.partition(".")
            if head == "optimizer" and name in TUNABLE_OPTIMIZER:
                c[name] = float(value)
            elif head == "hparams" and name in TRAINER_HPARAMS:
                c[name] = float(value)
            else:
                raise ValueError(f"cannot tune {path!r}: only optimizer.{TUNABLE_OPTIMIZER} and hparams.* are traced")
        out.append(c)
    return out if any(out) else None


def arm_configs(setting: dict, grid: dict) -> list[dict[str, float]]:
    """Every grid point of an arm as a complete trainer config: the learning rate (and the
    weight decay where the optimizer has one) and each trainer term, fixed by the setting or
    tuned by the grid. Arms of one program group concatenate these (a term an arm lacks is 0)."""
    opt = setting["optimizer"]
    fixed = {"learning_rate": float(opt["learning_rate"])}
    fixed.update({k: float(opt[k]) for k in _injected(opt)})
    fixed.update({k: float(v) for k, v in setting.get("hparams", {}).items()})
    return [{**fixed, **c} for c in (trainer_configs(grid_points(grid)) or [{}])]


#: Trainer terms whose mere presence costs every run of a program compute (dropout's random
#: masks, mixup's Beta draw and shuffled batch, the unlabeled forward pass of the
#: semi-supervised terms): on the 2-core CPU a 15-run MLP epoch takes 0.09 s plain, 0.15 s with
#: mixup at α = 0 and 0.18 s with dropout at rate 0, against 1-2 s to compile a program. Their
#: presence stays in the program key (their values are traced); L1 and L2 (a sum over the
#: weights) are cheap and become 0-weighted terms of the arms that lack them.
COSTLY_TERMS = {
    "dropout": "dropout",
    "mixup_alpha": "mixup",
    "entropy_weight": "unlabeled pass",
    "graph_weight": "unlabeled pass",
}


#: The most runs (configs x seeds) the planner puts in one program of merged arms, per backend.
#: On the 2-core CPU a wider vmapped program costs more per run (a 128-128 MLP epoch: 6.4 ms
#: per run at 15 runs, 8.0 at 45, 9.8 at 150, 10.2 at 225: the run states leave the caches),
#: which eats the 1-2 s of compiling a merge saves beyond about 48 runs. An accelerator has
#: no cap (None): that is what it is good at. An arm wider than the cap still runs whole.
MAX_PROGRAM_RUNS = {"cpu": 48}


def max_program_runs(backend: str | None = None) -> int | None:
    return MAX_PROGRAM_RUNS.get(jax.default_backend() if backend is None else backend)


def program_key(setting: dict, epochs: int, seeds) -> str:
    """What decides an arm's compiled program: its canonical setting (:func:`canonical_setting`)
    without the traced knobs.

    Two arms with the same key train in one program, each with its own configs: the learning
    rate and the other knobs of :data:`TUNABLE_OPTIMIZER` are injected optimizer state and every trainer term
    (:data:`~jaxopt_lectures.lab.trainer.TRAINER_HPARAMS`) a traced weight, exactly 0 where
    an arm does not use it (a rate-0 dropout keeps every unit, ``α = 0`` mixup is ``λ = 1``,
    a 0-weighted penalty adds 0). Which of the :data:`COSTLY_TERMS` an arm uses stays in the
    key, by what they cost (the two semi-supervised terms share one unlabeled pass): merging an
    arm without them into a program with them would make its runs pay for them. (This also
    keeps the unlabeled pass, which moves batch-norm statistics, apart.)
    """
    s = json.loads(json.dumps(setting))
    opt = s["optimizer"]
    opt.pop("learning_rate", None)
    opt.update(dict.fromkeys(_injected(opt), "traced"))
    s["hparams"] = sorted({COSTLY_TERMS[k] for k in s.get("hparams", {}) if k in COSTLY_TERMS})
    return json.dumps([s, int(epochs), [int(x) for x in seeds]], sort_keys=True)


def canonical_setting(setting: dict, grid: dict) -> dict:
    """``setting`` without the trainer terms that are switched off: weight 0 and not tuned.

    A rate-0 dropout keeps every unit, ``α = 0`` mixup is ``λ = 1``, a 0-weighted penalty or
    unlabeled term adds exactly nothing, so ``hparams={"dropout": 0.0}`` trains what
    ``hparams={}`` trains. Arms are keyed by this form: the baselines of the dropout, L1,
    L2, mixup, entropy and graph rows are one arm with the plain baseline of their setting,
    trained once (and reported as shared, not as independent confirmations).
    """
    tuned = {path.partition(".")[2] for path in grid if path.startswith("hparams.")}
    hp = {k: v for k, v in setting.get("hparams", {}).items() if k in tuned or float(v) != 0.0}
    return {**setting, "hparams": hp}


def runs_per_device_split(n_runs: int, n_devices: int) -> int:
    """How many devices share an arm's vmapped runs: the largest divisor of ``n_runs`` that is
    at most ``n_devices`` (each then trains ``n_runs / d`` runs; 1 means no spreading)."""
    return max(d for d in range(1, min(n_runs, n_devices) + 1) if n_runs % d == 0)


def runs_mesh(setting: dict, n_runs: int):
    """A mesh over the available devices when the arm's runs are vmapped (dense models; every
    model on an accelerator, see ``trainer.default_vmap``), else None."""
    d = runs_per_device_split(n_runs, jax.device_count())
    if d == 1 or (setting["model"]["name"] != "mlp" and jax.default_backend() == "cpu"):
        return None
    return sharding.data_mesh(d, axis="runs")


def steps_per_epoch(n_train: int, batch_size: int | None) -> int:
    """Updates per epoch; a batch larger than the split is refused, as :func:`.trainer.train` does."""
    return 1 if batch_size is None else n_train // check_batch_size(batch_size, n_train)


def load_data(spec: dict, seed: int) -> data_lib.Dataset:
    """The data set of ``spec`` with the split of ``seed`` (split variance enters the seeds).

    Loaded once per process and (spec, seed): a table loads the same splits for dozens of
    arms (~40 ms each). The cached arrays are read-only, so no arm can change another's data."""
    return _load_data(json.dumps(spec, sort_keys=True), int(seed))


@functools.lru_cache(maxsize=64)
def _load_data(spec_json: str, seed: int) -> data_lib.Dataset:
    spec = json.loads(spec_json)
    name = spec.pop("name")
    # {"feature_scale": {"low": -2, "high": 1, "seed": 0}}: badly scaled inputs, the same
    # fixed draw for every split seed (data_lib.ill_conditioned).
    scale = spec.pop("feature_scale", None)
    ds = data_lib.load(name, seed=seed, **spec)
    if scale is not None:
        if not isinstance(scale, dict) or set(scale) - {"low", "high", "seed"}:
            raise data_lib.DataError(
                f"feature_scale must be a dict with keys among 'low', 'high', 'seed', got {scale!r}."
            )
        ds = data_lib.ill_conditioned(ds, **scale)
    for value in vars(ds).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return ds


def _shape(spec: dict | None, total_steps: int):
    """The schedule's shape, peak 1 (the learning rate multiplies it, so it can be traced)."""
    if not spec:
        return None
    kind = spec["kind"]
    if kind == "linear_warmup":
        warm = max(int(round(spec["warmup_fraction"] * total_steps)), 1)
        return lambda count: jnp.minimum(jnp.asarray(count, jnp.float32) / warm, 1.0)
    if kind == "cosine_decay":
        return jol.schedules.cosine_decay(1.0, max(total_steps, 1))
    raise ValueError(f"unknown schedule kind {kind!r}")


def _injected(opt: dict) -> list[str]:
    """The optimizer settings besides the learning rate that are injected: those of
    :data:`TUNABLE_OPTIMIZER` given a number (``momentum=None`` is plain SGD, a structure)."""
    return [k for k in _INJECTED_IF_SET if isinstance(opt.get(k), (int, float)) and not isinstance(opt.get(k), bool)]


def make_optimizer(spec: dict, total_steps: int) -> jol.GradientTransformation:
    """The optimizer of ``spec`` with ``learning_rate`` injected, and each of ``weight_decay``,
    ``eps``, ``momentum`` and ``beta`` that ``spec`` sets to a number (:func:`_injected`).

    Names are ``jol`` aliases plus two chains: ``adam_l2`` (coupled L2 inside Adam: the
    penalty gets divided by √v̂ too) and ``sgd_wd`` (``λθ`` added to the gradient before the
    momentum: PyTorch's SGD ``weight_decay``, a per-step shrink of about ``ηλ/(1 − β)``).
    """
    spec = dict(spec)
    name = spec.pop("name")
    shape = _shape(spec.pop("schedule", None), total_steps)
    lr0 = float(spec.pop("learning_rate"))
    values = {k: float(spec.pop(k)) for k in _injected(spec)}

    def factory(learning_rate, weight_decay=0.0, eps=None, momentum=None, beta=None):
        # ``None``: not injected (the optimizer's own default, or the setting's non-number)
        kw = {**spec, **{k: v for k, v in (("eps", eps), ("momentum", momentum), ("beta", beta)) if v is not None}}
        lr = learning_rate if shape is None else (lambda count: learning_rate * shape(count))
        if name == "adam_l2":
            return jol.chain(jol.add_l2_regularization(weight_decay), jol.adam(lr, **kw))
        if name == "sgd_wd":
            return jol.chain(jol.add_l2_regularization(weight_decay), jol.sgd(lr, **kw))
        if name == "adamw":
            return jol.adamw(lr, weight_decay=weight_decay, **kw)
        return getattr(jol, name)(lr, **kw)

    return jol.inject_hyperparams(factory)(learning_rate=lr0, **values)


def make_model_fn(spec: dict, ds: data_lib.Dataset):
    spec = dict(spec)
    name = spec.pop("name")
    classes = ds.num_classes
    act = spec.pop("activation", "relu")
    if isinstance(act, str) and act.startswith("maxout"):
        act = models.maxout(int(act[len("maxout") :]))
    if name == "mlp":
        widths = (math.prod(ds.input_shape), *spec.pop("hidden"), classes)
        return functools.partial(models.MLP, widths, activation=act, **spec)
    if name in ("cnn", "resnet"):
        if classes is None:
            raise ValueError(f"{name} needs a classification data set; {ds.name} is a regression one")
        if name == "cnn":
            return functools.partial(models.CNN, ds.input_shape, classes, activation=act, **spec)
        return functools.partial(models.ResNet, in_shape=ds.input_shape, num_classes=classes, activation=act, **spec)
    raise ValueError(f"unknown model {name!r}")


def per_example_loss(name: str):
    """The training loss: cross-entropy, MSE on softmax outputs, multi-class hinge, or (minus)
    accuracy. Every arm is *measured* in cross-entropy and accuracy alike."""
    if name == "cross_entropy":
        return None  # the trainer's default
    if name == "mse":
        return lambda out, target: jnp.sum((jax.nn.softmax(out) - target) ** 2, axis=-1)
    if name == "hinge":
        from jaxopt_lectures import losses

        return lambda out, target: losses.multiclass_hinge(out, jnp.argmax(target, -1))
    if name == "accuracy":
        # 1 − [argmax = label]: piecewise constant in the weights, so its gradient is 0.
        return lambda out, target: 1.0 - (jnp.argmax(out, -1) == jnp.argmax(target, -1)).astype(out.dtype)
    raise ValueError(f"unknown loss {name!r}")


def make_augment(name: str | None):
    if name is None:
        return None
    if name == "flip":  # deliberately unsafe: this row measures the lecture's warning
        return aug.make_augment(flip=True, flip_safe=True)
    raise ValueError(f"unknown augment {name!r}")


def rotation_pretext(ds: data_lib.Dataset) -> data_lib.Dataset:
    """Pretext task: by how many quarter turns was an unlabeled image rotated?"""
    x = ds.x_unlabeled
    if x is None:
        raise ValueError(f"rotation_pretext needs unlabeled examples; {ds.name} has none")
    xs = np.concatenate([np.rot90(x, k, axes=(1, 2)) for k in range(4)])
    ys = np.repeat(np.arange(4, dtype=np.int32), len(x))
    return data_lib.from_arrays(
        xs, ys, name="digits-rotation", num_classes=4, normalize=False, val_fraction=0.1, test_fraction=0.0
    )
