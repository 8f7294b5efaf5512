"""The lecture table's rows as data: what each arm trains, what is tuned, the budget, the regime.

A :class:`Row` pairs a *baseline* and a *variant* training setting that differ in one knob
(``knob``), plus what is tuned for each arm on the validation split: ``tune`` applies to
both arms alike (the same grid, e.g. the learning rate), ``tune_variant`` to the variant
only (the technique's own strength: λ, the dropout rate, α). The lecture's words and the
claim being tested live in :mod:`.quotes`, keyed by the same name.

Budgets are equal in *updates* (``budget="updates"``: an arm with more steps per epoch
runs fewer epochs) unless the claim is about epochs (``budget="epochs"``). ``regime``
names the condition under which the lecture's claim applies, checked on the runs
(:mod:`jaxopt_lectures.lab.run`): ``"overfits"`` (the baseline's validation loss is well
above its training loss), ``"plateau"`` (the constant-η baseline has stopped improving),
``"instability"`` (the baseline fails at some grid point), ``"equal_train_loss"``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any


def setting(**overrides) -> dict:
    """A full training setting: the defaults below, with ``overrides`` merged in (nested)."""
    base = {
        "data": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [64, 64], "activation": "relu", "init": "he", "norm": None},
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
        "hparams": {},
        "loss": "cross_entropy",
        "augment": None,
        "batch_size": 32,
        "early_stopping": None,
        "pretrain": None,
    }
    return merge(base, overrides)


def merge(base: dict, overrides: dict) -> dict:
    """Nested dict merge; an override dict with ``"_replace": True`` replaces instead of merging
    (e.g. swapping the MLP's settings for a CNN's)."""
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not v.get("_replace"):
            out[k] = merge(out[k], v)
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
class Row:
    """One row of the table: a technique switched off (baseline) and on (variant)."""

    name: str
    knob: str  # the setting path the two arms differ in, e.g. "optimizer" or "hparams.dropout"
    baseline: dict
    variant: dict
    full_epochs: int  # the baseline's epochs; the variant's follow from ``budget``
    quick_epochs: int
    tune: dict = dataclasses.field(default_factory=dict)  # path -> grid, both arms
    tune_variant: dict = dataclasses.field(default_factory=dict)  # path -> grid, the variant only
    tune_baseline: dict = dataclasses.field(default_factory=dict)  # path -> grid, the baseline only
    budget: str = "updates"  # or "epochs"
    regime: str | None = None
    measure: str = "loss"  # "loss", "sparsity" (fraction of near-zero weights), "sharpness"
    note: str = ""
    # how the claim is tested (:mod:`jaxopt_lectures.lab.verdict`): "tuned" (each half at each
    # arm's own best point, superiority / non-superiority by the claim), "tie" (equivalence on
    # both halves), "equal_eta" (a step-scale claim: compared at every shared η, since tuning η
    # absorbs a constant step factor), "demonstration" (true by construction: shown, not counted),
    # "interaction" (a 2 x 2 design: the knob's effect at the arms' level of a second factor against
    # its effect at the other level, ``factor``)
    design: str = "tuned"
    # other settings of the same comparison, reported beside the judged one: name -> overrides
    # merged into both arms (e.g. the well-conditioned control of an ill-conditioned row)
    settings: dict = dataclasses.field(default_factory=dict)
    setting_name: str = ""  # what the judged setting is, in words (for the report)
    # design "interaction": the second factor's other level, as overrides merged into both arms
    # (like ``settings``): four arms, baseline and variant at each level; ``levels`` names
    # (the arms' level, the other level) in words
    factor: dict = dataclasses.field(default_factory=dict)
    levels: tuple[str, str] = ("", "")

    def __post_init__(self):
        if (self.design == "interaction") != bool(self.factor):
            raise ValueError(
                f"row {self.name!r}: design {self.design!r} with factor {self.factor!r}: an interaction row "
                "needs a factor (the second level's overrides) and only an interaction row takes one"
            )

    def in_setting(self, name: str) -> Row:
        """This row with both arms moved to the extra setting ``name`` (no further settings)."""
        overrides = self.settings[name]
        return dataclasses.replace(
            self,
            baseline=merge(self.baseline, overrides),
            variant=merge(self.variant, overrides),
            settings={},
            setting_name=name,
        )

    def at_second_level(self) -> Row:
        """The interaction row's baseline and variant moved to the second factor's other level
        (``factor`` merged into both arms, like :meth:`in_setting`); that row has no factor."""
        if not self.factor:
            raise ValueError(f"row {self.name!r} has no second factor (design {self.design!r})")
        return dataclasses.replace(
            self,
            baseline=merge(self.baseline, self.factor),
            variant=merge(self.variant, self.factor),
            settings={},
            design="tuned",
            factor={},
            setting_name=self.levels[1],
        )

    def epochs(self, quick: bool) -> int:
        return self.quick_epochs if quick else self.full_epochs

    def grids(self, quick: bool) -> tuple[dict, dict]:
        """``(baseline grid, variant grid)``: setting path -> candidate values. ``--quick`` keeps
        the full table's grids (it has fewer epochs and seeds: it may only be less decided)."""
        del quick
        both = dict(self.tune)
        return {**both, **self.tune_baseline}, {**both, **self.tune_variant}

    @property
    def technique(self) -> str:
        from jaxopt_lectures.lab.claims.quotes import CLAIMS

        return CLAIMS[self.name].technique


def make_row(name, knob, baseline, variant_overrides, full, quick, **kw) -> Row:
    """A :class:`Row` whose baseline is ``setting(**baseline)`` and whose variant is that with
    ``variant_overrides`` merged in; the other keywords are :class:`Row`'s fields."""
    base = setting(**baseline)
    return Row(name, knob, base, merge(base, variant_overrides), full, quick, **kw)


# Grids: one fixed grid per kind of knob, the same for every arm it applies to.
ETA = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)  # learning rate, SGD and adaptive alike
ETA_ADAM = (3e-4, 1e-3, 3e-3)  # the regularizer rows' Adam (a narrower, cheaper grid)
ETA_SGD = (0.01, 0.03, 0.1)
L2_GRID = (1e-5, 1e-4, 1e-3)
LR = "optimizer.learning_rate"

DIGITS = {"name": "digits"}
MNIST1D = {"name": "mnist1d", "num_samples": 4000}
DEEP = {"hidden": [64] * 8}
# The optimizer rows' regime (issue 24; shared/reviews/optimizer-regime-feasibility.md): the
# lecture motivates adaptive step sizes with a loss surface steep in one direction and flat in
# another (000 around line 146, g⁰ = (500, 0.4)). Digits with each standardised feature j
# multiplied by 10^u_j, u_j ~ U(-2, 1) (a fixed draw), make such a surface (condition number of
# the input covariance ~7e6); the per-feature standardised digits (~150) are the control, and a deep narrow ReLU net (12 x 16, LeCun init) is where plain SGD
# stalls. The η grid reaches 1.0: tuned SGD's best lies near the old grid's top.
ILLCOND = {"name": "digits", "feature_scale": {"low": -2.0, "high": 1.0, "seed": 0}}
# the control: each feature standardised (the loader's single global scale leaves the digits'
# input covariance with a condition number of ~2e6: near-constant border pixels)
WELLCOND = {"name": "digits", "feature_scale": {"low": 0.0, "high": 0.0, "seed": 0}}
DEEP_NARROW_HIDDEN = [16] * 12
DEEP_NARROW = {"hidden": DEEP_NARROW_HIDDEN, "init": "lecun"}
ETA_OPT = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
# Choi et al. (2019, "On empirical comparisons of optimizers for deep learning") show that an
# optimizer comparison can turn on the knobs left at their defaults: Adam's ε (a large one makes
# Adam a momentum method) and the momentum coefficient β. The optimizer rows tune them with η,
# within the ranges Choi et al. search: ε the default and three larger, up to 1 (a smaller one
# changes nothing in float32; with ε = 1e-2 as the largest, Adam's pick sat on that edge), β
# the default and one step either side.
EPS_GRID = (1e-8, 1e-5, 1e-2, 1.0)
BETA_GRID = (0.5, 0.9, 0.99)
OPT_SETTINGS = {
    "tune": {"optimizer.learning_rate": ETA_OPT},
    "regime": "ill_conditioned",
    "setting_name": "badly scaled inputs",
    "settings": {
        "standardised inputs (control)": {"data": {**WELLCOND, "_replace": True}},
        "deep narrow net": {"data": {**WELLCOND, "_replace": True}, "model": DEEP_NARROW},
    },
}
# The initialization and normalization rows' claims are about training a deep network: judged on
# the deep 8 x 64 MLP (where their baselines train), and reported beside on the deep narrow net
# (12 x 16), where plain SGD stalls (issue 24). Only the hidden sizes change: each arm keeps its
# own initialization and normalization.
DEEP_NORM_NOTE = (
    "a deep ReLU MLP with He initialization, each arm at its own η; beside it, a deep narrow one (12 x 16) "
    "where plain SGD stalls"
)
DEEP_NET_SETTINGS = {
    "setting_name": "deep net (8 x 64)",
    "settings": {"deep narrow net": {"model": {"hidden": DEEP_NARROW_HIDDEN}}},
}
WIDE = {"hidden": [128, 128]}
# The overfitting regime of the regularizers: a wide MLP with Adam on the noisy MNIST-1D.
OVERFIT = {"data": MNIST1D, "model": WIDE, "optimizer": {"name": "adam", "learning_rate": 1e-3}, "batch_size": 64}
SEMI = {
    "data": {"name": "digits", "train_size": 100, "unlabeled_size": 800},
    "optimizer": {"name": "adam", "learning_rate": 1e-3},
}

ROWS: list[Row] = [
    # --- picking the best: optimizers, each arm at its own best η -----------------------------
    make_row("adagrad", "optimizer.name", {"data": ILLCOND}, {"optimizer": {"name": "adagrad"}}, 20, 6, **OPT_SETTINGS),
    make_row("rmsprop", "optimizer.name", {"data": ILLCOND}, {"optimizer": {"name": "rmsprop"}}, 20, 6, **OPT_SETTINGS),
    make_row(
        "momentum",
        "optimizer.momentum",
        {"data": ILLCOND},
        {"optimizer": {"momentum": 0.9}},
        20,
        6,
        **OPT_SETTINGS,
        tune_variant={"optimizer.momentum": BETA_GRID},
        note="classic momentum v = βv + g: at equal η it is SGD at 10x the step, so η is tuned per arm, "
        "and β with it (Choi et al.)",
    ),
    make_row(
        "adam",
        "optimizer.name",
        {"data": ILLCOND},
        {"optimizer": {"name": "adam", "eps": 1e-8}},
        20,
        6,
        **OPT_SETTINGS,
        tune_variant={"optimizer.eps": EPS_GRID},
        note="Adam's ε tuned with η (Choi et al.: at a large ε Adam moves towards momentum SGD)",
    ),
    make_row(
        "nesterov",
        "optimizer.nesterov",
        {"data": ILLCOND, "optimizer": {"momentum": 0.9}},
        {"optimizer": {"nesterov": True}},
        20,
        6,
        **{**OPT_SETTINGS, "tune": {LR: ETA_OPT, "optimizer.momentum": BETA_GRID}},
        note="both arms tune β with η (Choi et al.)",
    ),
    make_row(
        "momentum_variants",
        "optimizer.variant",
        {"data": DIGITS, "optimizer": {"name": "momentum", "beta": 0.9, "variant": "classic"}},
        {"optimizer": {"variant": "ema"}},
        20,
        6,
        tune={LR: ETA},
        design="tie",
        note="classic v = βv + g against the slides' EMA v = βv + (1 − β)g; each at its own η",
    ),
    make_row(
        "bias_correction",
        "optimizer.bias_correction",
        {"data": DIGITS, "optimizer": {"name": "adam", "bias_correction": False}},
        {"optimizer": {"bias_correction": True}},
        1,
        1,
        tune={LR: ETA},
        design="equal_eta",
        note="the early-training problem: one epoch (39 updates) only",
    ),
    make_row(
        "rmsprop_first_grad",
        "optimizer.init",
        {"data": DIGITS, "optimizer": {"name": "rmsprop", "init": "zeros"}},
        {"optimizer": {"init": "first_grad"}},
        1,
        1,
        tune={LR: ETA},
        design="equal_eta",
        note="σ⁰ = 0 against the lecture's σ⁰ = |g⁰|; one epoch, where the start matters",
    ),
    make_row(
        "rmsprop_vs_adagrad",
        "optimizer.name",
        {"data": MNIST1D, "optimizer": {"name": "adagrad"}},
        {"optimizer": {"name": "rmsprop"}},
        40,
        10,
        tune={LR: ETA},
        note="a long run, where Adagrad's accumulated σ shrinks its step",
    ),
    make_row(
        "warmup",
        "optimizer.schedule",
        {"data": DIGITS, "model": {**DEEP}, "optimizer": {"name": "adam"}},
        {"optimizer": {"schedule": {"kind": "linear_warmup", "warmup_fraction": 0.1}}},
        15,
        6,
        tune={LR: (3e-3, 1e-2, 3e-2, 1e-1)},
        regime="instability",
        note="a deep MLP without normalization, Adam at high η; warm-up over the first 10% of the updates",
    ),
    make_row(
        "decay",
        "optimizer.schedule",
        {"data": MNIST1D, "optimizer": {"momentum": 0.9}},
        {"optimizer": {"schedule": {"kind": "cosine_decay"}}},
        30,
        10,
        tune={LR: ETA_SGD},
        regime="plateau",
        note="SGD with momentum on MNIST-1D, where constant η sits on a noise floor",
    ),
    make_row(
        "adamw",
        "optimizer.name",
        {**OVERFIT, "optimizer": {"name": "adam_l2", "weight_decay": 1e-4}},
        {"optimizer": {"name": "adamw", "weight_decay": 0.1}},
        20,
        6,
        tune={LR: ETA_ADAM},
        tune_baseline={"optimizer.weight_decay": L2_GRID},
        tune_variant={"optimizer.weight_decay": (1e-2, 1e-1, 1.0)},
        regime="overfits",
        note="Adam + L2 (λ in L2_GRID) against AdamW (λ in its own grid): each at its best λ",
    ),
    make_row(
        "adamw_vs_adam",
        "optimizer.name",
        {**OVERFIT},
        {"optimizer": {"name": "adamw", "weight_decay": 0.1}},
        20,
        6,
        tune={LR: ETA_ADAM},
        tune_variant={"optimizer.weight_decay": (1e-2, 1e-1, 1.0)},
        regime="overfits",
        note="the slide's literal comparison: AdamW against plain Adam",
    ),
    make_row(
        "dropout",
        "hparams.dropout",
        {**OVERFIT, "hparams": {"dropout": 0.0}},
        {"hparams": {"dropout": 0.3}},
        20,
        6,
        tune={LR: ETA_ADAM},
        tune_variant={"hparams.dropout": (0.1, 0.3, 0.5)},
        regime="overfits",
    ),
    make_row(
        "weight_decay",
        "optimizer.weight_decay",
        {**OVERFIT, "optimizer": {"name": "sgd_wd", "momentum": 0.9, "weight_decay": 0.0}},
        {"optimizer": {"weight_decay": 5e-4}},
        20,
        6,
        tune={LR: ETA_SGD},
        tune_variant={"optimizer.weight_decay": (5e-5, 5e-4, 5e-3)},
        regime="overfits",
        note="SGD + momentum with λθ added to the gradient before the momentum (PyTorch's SGD weight_decay)",
    ),
    make_row(
        "l1",
        "hparams.l1",
        {**OVERFIT, "hparams": {"l1": 0.0}},
        {"hparams": {"l1": 1e-4}},
        20,
        6,
        tune={LR: ETA_ADAM},
        tune_variant={"hparams.l1": L2_GRID},
        regime="overfits",
    ),
    make_row(
        "l2_in_loss",
        "hparams.l2",
        {**OVERFIT, "hparams": {"l2": 0.0}},
        {"hparams": {"l2": 1e-4}},
        20,
        6,
        tune={LR: ETA_ADAM},
        tune_variant={"hparams.l2": L2_GRID},
        regime="overfits",
        note="R(θ) = Σθ² added to the loss (the table's own example of parameter regularization)",
    ),
    make_row(
        "l1_vs_l2_sparsity",
        "hparams",
        {**OVERFIT, "hparams": {"l2": 1e-4}},
        {"hparams": {"l1": 1e-4, "_replace": True}},
        20,
        6,
        tune={LR: ETA_ADAM},
        measure="sparsity",
        note="the same λ = 1e-4 for both penalties; measured: the fraction of weights with |w| < 1e-3",
    ),
    make_row(
        "early_stopping",
        "early_stopping",
        {**OVERFIT},
        {"early_stopping": 3},
        20,
        6,
        tune={LR: ETA_ADAM},
        regime="overfits",
        note="the epoch is chosen on the validation split; the verdict is read on the test split",
    ),
    make_row(
        "init",
        "model.init",
        {"data": DIGITS, "model": {**DEEP, "init": "lecun"}},
        {"model": {"init": "he"}},
        15,
        6,
        tune={LR: ETA},
        **DEEP_NET_SETTINGS,
        note="LeCun against He initialization on a deep ReLU MLP (a baseline that trains); beside it, a deep narrow "
        "one (12 x 16) where plain SGD stalls",
    ),
    make_row(
        "init_minimum",
        "model.init",
        {"data": DIGITS, "model": {"init": 0.3}},
        {"model": {"init": "he"}},
        20,
        6,
        tune={LR: ETA},
        measure="sharpness",
        note="two starts; measured: how sharp the reached minimum is (mean loss rise under 5% weight noise)",
    ),
    make_row(
        "pretrain",
        "pretrain",
        {**SEMI},
        {"pretrain": {"task": "rotation", "epochs": 10}},
        150,
        40,
        tune={LR: ETA_ADAM},
        note="100 labeled digits, both arms trained to convergence; the variant first learns the rotation of 800 "
        "unlabeled ones",
    ),
    # --- the function set ------------------------------------------------------------------------
    make_row(
        "cnn",
        "model",
        {**OVERFIT},
        {"model": {"name": "cnn", "channels": [16, 32], "dense": [64], "_replace": True}},
        20,
        6,
        tune={LR: (1e-3, 3e-3)},
        regime="overfits",
    ),
    make_row(
        "skip",
        "model.skip",
        {
            "data": DIGITS,
            "model": {"name": "resnet", "depth": 20, "width": 8, "skip": False, "norm": "batch", "_replace": True},
            "optimizer": {"learning_rate": 0.05, "momentum": 0.9},
        },
        {"model": {"skip": True}},
        6,
        2,
        note="ResNet-20 with batch norm; η = 0.05 with momentum for both arms, not tuned (conv nets are costly on CPU)",
    ),
    make_row(
        "batchnorm",
        "model.norm",
        {"data": DIGITS, "model": DEEP},
        {"model": {"norm": "batch"}},
        15,
        6,
        tune={LR: ETA},
        **DEEP_NET_SETTINGS,
        note=DEEP_NORM_NOTE,
    ),
    make_row(
        "layernorm",
        "model.norm",
        {"data": DIGITS, "model": DEEP},
        {"model": {"norm": "layer"}},
        15,
        6,
        tune={LR: ETA},
        **DEEP_NET_SETTINGS,
        note=DEEP_NORM_NOTE,
    ),
    make_row(
        "sigmoid",
        "model.activation",
        {"data": DIGITS, "model": {**DEEP, "activation": "sigmoid"}},
        {"model": {"activation": "relu"}},
        15,
        6,
        tune={LR: ETA},
    ),
    make_row(
        "leaky_relu",
        "model.activation",
        {"data": DIGITS, "model": {**DEEP, "activation": "relu"}},
        {"model": {"activation": "leaky_relu"}},
        15,
        6,
        tune={LR: ETA},
    ),
    make_row(
        "prelu",
        "model.activation",
        {"data": DIGITS, "model": {**DEEP, "activation": "relu"}},
        {"model": {"activation": "prelu"}},
        15,
        6,
        tune={LR: ETA},
    ),
    make_row(
        "maxout",
        "model",
        {"data": DIGITS},
        {"model": {"activation": "maxout2", "hidden": [40, 40]}},
        20,
        6,
        tune={LR: ETA},
        note="parameter-matched: maxout2 [40, 40] (8.9k parameters) against ReLU [64, 64] (9.0k)",
    ),
    make_row(
        "depth_degradation",
        "model.hidden",
        {"data": DIGITS, "model": {"hidden": [32] * 20}},
        {"model": {"hidden": [32] * 56}},
        15,
        6,
        tune={LR: ETA},
        note="plain MLPs (no skip, no norm) of 20 and 56 hidden layers: is the deeper one worse on training data?",
    ),
    make_row(
        "dropout_relu_vs_sigmoid",
        "hparams.dropout",
        {**OVERFIT, "hparams": {"dropout": 0.0}},
        {"hparams": {"dropout": 0.3}},
        20,
        6,
        tune={LR: ETA_ADAM},
        tune_variant={"hparams.dropout": (0.1, 0.3, 0.5)},
        design="interaction",
        regime="overfits",  # the dropout row's regime: dropout is for a net that overfits
        factor={"model": {"activation": "sigmoid", "init": "glorot"}},
        levels=("ReLU + He", "sigmoid + Glorot"),
        note="2 x 2: without and with dropout (rate tuned), under ReLU (He init) and under sigmoid (Glorot init); "
        "each of the four arms at its own η",
    ),
    make_row(
        "dropout_test_scaling",
        "model.dropout_mode",
        {**OVERFIT, "model": {**WIDE, "dropout": 0.5, "dropout_mode": "unscaled"}},
        {"model": {"dropout_mode": "classic"}},
        20,
        6,
        tune={LR: ETA_ADAM},
        design="demonstration",
        note="classic dropout (p = 0.5, set in the model: the test-time 1 − p reads the model's own rate) with and "
        "without multiplying by 1 − p at test time",
    ),
    # --- what we want: the loss and the data ------------------------------------------------------
    make_row(
        "accuracy_loss",
        "loss",
        {"data": DIGITS, "loss": "accuracy"},
        {"loss": "cross_entropy"},
        20,
        6,
        tune={LR: ETA},
        design="demonstration",
        note="1 − [argmax = y] has zero gradient almost everywhere",
    ),
    make_row(
        "mse_loss",
        "loss",
        {"data": DIGITS, "loss": "mse"},
        {"loss": "cross_entropy"},
        20,
        6,
        tune={LR: ETA + (1.0,)},
        note="each loss at its own η",
    ),
    make_row(
        "hinge",
        "loss",
        {"data": DIGITS, "loss": "hinge"},
        {"loss": "cross_entropy"},
        20,
        6,
        tune={LR: ETA},
        design="tie",
        note="multi-class hinge against cross-entropy, each at its own η",
    ),
    make_row(
        "more_data",
        "data.train_size",
        {**OVERFIT, "data": {**MNIST1D, "train_size": 600}},
        {"data": {"train_size": 2400}},
        60,
        16,
        tune={LR: ETA_ADAM},
        regime="overfits",
        note="equal updates: 600 examples for 60 epochs against 2400 for 15",
    ),
    make_row(
        "mixup",
        "hparams.mixup_alpha",
        {**OVERFIT, "hparams": {"mixup_alpha": 0.0}},
        {"hparams": {"mixup_alpha": 0.4}},
        20,
        6,
        tune={LR: ETA_ADAM},
        tune_variant={"hparams.mixup_alpha": (0.1, 0.4, 1.0)},
        regime="overfits",
    ),
    make_row(
        "flip",
        "augment",
        {"data": DIGITS, "model": WIDE},
        {"augment": "flip"},
        20,
        6,
        tune={LR: ETA_SGD},
        note="mirroring changes what some digits mean: the lecture's warning",
    ),
    make_row(
        "entropy",
        "hparams.entropy_weight",
        {**SEMI, "hparams": {"entropy_weight": 0.0}},
        {"hparams": {"entropy_weight": 0.3}},
        150,
        40,
        tune={LR: ETA_ADAM},
        tune_variant={"hparams.entropy_weight": (0.03, 0.1, 0.3)},
    ),
    make_row(
        "graph",
        "hparams.graph_weight",
        {**SEMI, "hparams": {"graph_weight": 0.0}},
        {"hparams": {"graph_weight": 1.0}},
        150,
        40,
        tune={LR: ETA_ADAM},
        tune_variant={"hparams.graph_weight": (0.3, 1.0, 3.0)},
    ),
    make_row(
        "batch_size",
        "batch_size",
        {"data": DIGITS, "batch_size": 512},
        {"batch_size": 16},
        300,
        80,
        tune={LR: ETA},
        regime="equal_train_loss",
        measure="sharpness",
        note="equal updates (each arm at its own η); Keskar et al. compare at equal training accuracy, checked "
        "as the regime; the sharpness of the reached minimum is reported",
    ),
    make_row(
        "full_batch",
        "batch_size",
        {"data": DIGITS, "batch_size": None},
        {"batch_size": 32},
        20,
        6,
        tune={LR: ETA},
        budget="epochs",
        design="demonstration",
        note="equal epochs: full-batch GD updates once per epoch, mini-batch 39 times (the lecture's argument)",
    ),
]

REGISTRY: dict[str, Row] = {r.name: r for r in ROWS}
