"""The lectures' pictures, as functions that return the data and save a PNG.

Each picture has a *data* function (returns arrays; tested) and a ``plot_*`` function that
draws that data with matplotlib's Agg backend (no display needed) and returns the files
it wrote. Reading order follows the lectures:

1. :func:`optimizer_paths` — the linear-regression toy ``ŷ = w·x + b`` (seeds 001/003): gradient
   descent at η = 1e-3 "flies off", at η = 1e-4 "never reaches the minimum"; Adagrad,
   RMSProp, momentum and Adam from the same start for the same number of updates.
2. :func:`loss_landscape` — filter-normalized random directions around trained parameters
   (Li et al. 2018; seed 003 l.338 shows ResNet-56, the default here is ResNet-20 on the digits
   and the figure says so), for a ResNet with and without skip connections.
3. :func:`gradient_depth_study` — per-layer gradient norms, sigmoid vs ReLU (seed 004), each
   activation with its own initialization (He for ReLU).
4. :func:`batch_size_study` — small vs large batch at equal updates, each at its own tuned η,
   compared at the training loss both reach, with the sharpness of the minima (Keskar et al.'s
   table in seed 003 l.297-309); says plainly whether their gap shows at this scale.
5. :func:`schedule_curves` — every schedule in ``jol.schedules`` over one run.
6. :func:`optimizer_conditioning` — SGD, momentum, Adagrad, RMSProp and Adam, each at its own
   tuned η, on the standardised and on badly scaled digits (seed 000's "different parameters
   should have different learning rates", issue 24): the adaptive methods win only where the
   inputs are ill-conditioned.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import losses

__all__ = [
    "PathsResult",
    "optimizer_paths",
    "plot_paths",
    "path_summary",
    "filter_normalized_direction",
    "Landscape",
    "loss_landscape",
    "landscape_study",
    "plot_landscapes",
    "GradientStudy",
    "gradient_depth_study",
    "plot_gradients",
    "BatchSizeStudy",
    "batch_size_study",
    "plot_batch_size",
    "schedule_curves",
    "plot_schedules",
    "CONDITIONING_OPTIMIZERS",
    "ConditioningStudy",
    "updates_to_target",
    "optimizer_conditioning",
    "plot_conditioning",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from jaxopt_lectures.lab._files import atomic_write

    path = Path(path)
    try:  # atomically, never through a link or into a FIFO planted at the name (issue 21 item 3)
        atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:] or "png", dpi=110, bbox_inches="tight"))
    finally:
        _pyplot().close(fig)
    return path


# =======================================================================================
# 1. Optimizer paths on the linear-regression toy.

#: The toy's data (seed 001's ``y = b + w x``): 20 points, x spread over [0, 100]. The scale
#: of x is what makes the loss surface a long narrow valley (∂L/∂w is ~100x ∂L/∂b, like
#: the lecture's g = [500, 0.4]) and so what makes one η wrong for both parameters.
TOY = dict(num_samples=20, w=2.0, b=10.0, noise=5.0, x_range=(0.0, 100.0))
#: Where every optimizer starts, (w, b).
TOY_START = (-2.0, -20.0)
#: name -> (label, optimizer factory, learning rate). One η for the three adaptive methods.
TOY_OPTIMIZERS: dict[str, tuple[str, Callable, float]] = {
    "gd_1e-3": ("gradient descent, η = 1e-3", jol.sgd, 1e-3),
    "gd_1e-4": ("gradient descent, η = 1e-4", jol.sgd, 1e-4),
    "adagrad": ("Adagrad, η = 1", jol.adagrad, 1.0),
    "rmsprop": ("RMSProp, η = 1", jol.rmsprop, 1.0),
    "momentum": ("momentum (β = 0.9), η = 1e-4", functools.partial(jol.sgd, momentum=0.9), 1e-4),
    "adam": ("Adam, η = 1", jol.adam, 1.0),
}


@dataclasses.dataclass
class PathsResult:
    """Optimizer paths on the toy. ``paths[name]`` is ``(steps + 1, 2)`` of (w, b), start first;
    a run that overflowed holds ``inf``/``nan`` from then on. ``loss`` is over ``w_grid x b_grid``
    (rows: b, columns: w), for contour plots."""

    x: np.ndarray
    y: np.ndarray
    minimum: np.ndarray  # closed-form least squares (w*, b*)
    min_loss: float
    start: np.ndarray
    paths: dict[str, np.ndarray]
    labels: dict[str, str]
    w_grid: np.ndarray
    b_grid: np.ndarray
    loss: np.ndarray

    def loss_at(self, w: float, b: float) -> float:
        """``L(w, b) = mean((w·x + b − y)²)``."""
        return float(np.mean((w * self.x + b - self.y) ** 2))


def toy_data(seed: int = 0, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """The toy's ``(x, y)`` as 1-D float32 arrays (:data:`TOY`, overridable)."""
    from jaxopt_lectures.lab.data import linear_regression

    ds = linear_regression(**{**TOY, **overrides}, seed=seed)
    return ds.x_train[:, 0], ds.y_train[:, 0]


def run_path(tx: jol.GradientTransformation, x, y, start, steps: int) -> np.ndarray:
    """Full-batch updates of ``tx`` on ``L(w, b) = mean((w·x + b − y)²)``; returns ``(steps + 1, 2)``."""
    x, y = jnp.asarray(x), jnp.asarray(y)

    def loss(p):
        return jnp.mean(jnp.square(p[0] * x + p[1] - y))

    def body(carry, _):
        p, s = carry
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        p = jol.apply_updates(p, updates)
        return (p, s), p

    p0 = jnp.asarray(start, jnp.float32)
    _, ps = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=steps))(p0)
    return np.concatenate([np.asarray(p0)[None], np.asarray(ps)])


def _classes(ds) -> int:
    """A classification data set's number of classes (these figures train classifiers)."""
    if ds.num_classes is None:
        raise ValueError(f"{ds.name} is a regression data set; this figure needs a classification one")
    return ds.num_classes


def optimizer_paths(
    steps: int = 1000,
    *,
    seed: int = 0,
    start: Sequence[float] = TOY_START,
    optimizers: dict[str, tuple[str, Callable, float]] | None = None,
    grid: int = 200,
    data: tuple[np.ndarray, np.ndarray] | None = None,
) -> PathsResult:
    """Every optimizer of :data:`TOY_OPTIMIZERS` from ``start`` for ``steps`` full-batch updates.

    The closed-form minimum solves the normal equations ``[x 1]ᵀ[x 1] (w, b) = [x 1]ᵀ y``.
    """
    x, y = data if data is not None else toy_data(seed)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    design = np.stack([x, np.ones_like(x)], axis=1).astype(np.float64)
    minimum = np.linalg.solve(design.T @ design, design.T @ y.astype(np.float64))
    optimizers = TOY_OPTIMIZERS if optimizers is None else optimizers
    paths, labels = {}, {}
    with np.errstate(over="ignore", invalid="ignore"):
        for name, (label, make, lr) in optimizers.items():
            paths[name] = run_path(make(lr), x, y, start, steps)
            labels[name] = label
    start_at = np.asarray(start, np.float64)
    # A window holding the start and the minimum, with margins (the flown-off path leaves it).
    lo, hi = np.minimum(start_at, minimum), np.maximum(start_at, minimum)
    pad = np.array([0.5, 0.3]) * (hi - lo) + 1e-3
    w_grid = np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid)
    b_grid = np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid)
    W, B = np.meshgrid(w_grid, b_grid)
    loss = np.mean((W[..., None] * x + B[..., None] - y) ** 2, axis=-1)
    min_loss = float(np.mean((minimum[0] * x + minimum[1] - y) ** 2))
    return PathsResult(x, y, minimum, min_loss, start_at, paths, labels, w_grid, b_grid, loss)


_PATH_COLORS = {
    "gd_1e-3": "tab:red",
    "gd_1e-4": "tab:gray",
    "adagrad": "tab:green",
    "rmsprop": "tab:purple",
    "momentum": "tab:orange",
    "adam": "tab:blue",
}


def _draw_surface(ax, r: PathsResult):
    levels = r.min_loss * np.logspace(0, np.log10(r.loss.max() / r.min_loss), 25)
    ax.contourf(r.w_grid, r.b_grid, r.loss, levels=levels, cmap="Blues_r", norm=_lognorm(levels), alpha=0.8)
    ax.contour(r.w_grid, r.b_grid, r.loss, levels=levels, colors="white", linewidths=0.4)
    ax.plot(*r.minimum, marker="*", color="gold", markeredgecolor="black", markersize=16, zorder=5)
    ax.annotate(
        f"minimum\nw* = {r.minimum[0]:.3f}\nb* = {r.minimum[1]:.2f}",
        r.minimum,
        textcoords="offset points",
        xytext=(10, -40),
        fontsize=8,
        bbox=dict(boxstyle="round", fc="white", alpha=0.8),
    )
    ax.plot(*r.start, marker="o", color="black", markersize=6, zorder=5)
    ax.annotate("start", r.start, textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlim(r.w_grid[0], r.w_grid[-1])
    ax.set_ylim(r.b_grid[0], r.b_grid[-1])
    ax.set_xlabel("w (slope)")
    ax.set_ylabel("b (intercept)")


def _lognorm(levels):
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=levels[0], vmax=levels[-1])


def path_summary(r: PathsResult, name: str) -> str:
    """In words: did the path fly off (leave the map for good or overflow), or where did it end?"""
    p = r.paths[name]
    steps = len(p) - 1
    inside = (p[:, 0] >= r.w_grid[0]) & (p[:, 0] <= r.w_grid[-1]) & (p[:, 1] >= r.b_grid[0]) & (p[:, 1] <= r.b_grid[-1])
    if not inside[-1]:
        gone = int(len(p) - np.argmax(inside[::-1])) if inside.any() else 0
        return f"flies off the map after {gone} update{'s' if gone != 1 else ''}"
    d = float(np.hypot(*(p[-1] - r.minimum)))
    return f"ends {d:.2g} from the minimum after {steps} updates"


def _draw_path(ax, r: PathsResult, name: str, alpha: float = 1.0):
    p = r.paths[name]
    finite = np.all(np.isfinite(p), axis=1) & (np.abs(p) < 1e6).all(axis=1)
    last = int(np.argmin(finite)) if not finite.all() else len(p)
    color = _PATH_COLORS.get(name)
    summary = path_summary(r, name)
    q = p[:last]
    ax.plot(
        q[:, 0],
        q[:, 1],
        "-",
        color=color,
        lw=1.6,
        alpha=alpha,
        label=f"{r.labels[name]}: {summary}",
        marker=".",
        markersize=3 if len(p) <= 201 else 0,
    )
    if summary.startswith("flies off"):
        k = min(3, len(p) - 1)
        where = ", ".join(f"{i}: ({p[i, 0]:.3g}, {p[i, 1]:.3g})" for i in range(1, k + 1))
        ax.annotate(
            f"(w, b) after update {where}",
            (0.02, 0.03),
            xycoords="axes fraction",
            fontsize=7.5,
            color=color,
            bbox=dict(boxstyle="round", fc="white", alpha=0.85),
        )
    else:
        ax.plot(*q[-1], marker="x", color=color, markersize=9, mew=2, alpha=alpha, zorder=6)


def plot_paths(r: PathsResult, out: str | Path) -> list[Path]:
    """One PNG per comparison (each optimizer against gradient descent) plus a combined one."""
    plt = _pyplot()
    out = Path(out)
    steps = len(next(iter(r.paths.values()))) - 1
    comparisons = [
        (
            "paths_learning_rate.png",
            ["gd_1e-3", "gd_1e-4"],
            "Learning rate is hard to tune: too big flies off, too small crawls",
        )
    ]
    for name, title in [
        ("adagrad", "Adagrad: a learning rate per parameter"),
        ("rmsprop", "RMSProp: per-parameter rate from recent gradients"),
        ("momentum", "Momentum: past gradients keep it moving"),
        ("adam", "Adam: momentum + RMSProp"),
    ]:
        if name in r.paths:
            comparisons.append((f"paths_{name}.png", ["gd_1e-4", name], title))
    comparisons.append(("paths_all.png", list(r.paths), "All optimizers from the same start"))
    written = []
    for fname, names, title in comparisons:
        names = [n for n in names if n in r.paths]
        fig, ax = plt.subplots(figsize=(7.5, 6))
        _draw_surface(ax, r)
        for n in names:
            _draw_path(
                ax, r, n, alpha=0.55 if (n == "gd_1e-4" and len(names) == 2 and fname != comparisons[0][0]) else 1
            )
        ax.set_title(f"{title}\nloss = mean squared error of y = w·x + b; {steps} updates each", fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), fontsize=8, framealpha=0.9)
        written.append(_save(fig, out / fname))
    return written


# =======================================================================================
# 2. Loss landscapes (Li et al. 2018).


def filter_normalized_direction(params: Any, key: jax.Array) -> Any:
    """A random direction ``d`` with the shape of ``params``, filter-normalized (Li et al. 2018):

    ``d`` ~ N(0, I); then for every filter (a slice along a kernel's last, output axis)
    ``d_f ← d_f / ‖d_f‖ · ‖θ_f‖``, so a step of 1 moves each filter by its own size and the
    picture does not depend on the network's scale. Vectors (biases, batch-norm scales)
    get ``d = 0``, as in the paper.
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for leaf, k in zip(leaves, keys):
        if leaf.ndim <= 1:
            out.append(jnp.zeros_like(leaf))
            continue
        d = jax.random.normal(k, leaf.shape, leaf.dtype)
        axes = tuple(range(leaf.ndim - 1))
        d_norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=axes, keepdims=True))
        t_norm = jnp.sqrt(jnp.sum(jnp.square(leaf), axis=axes, keepdims=True))
        out.append(d / (d_norm + 1e-10) * t_norm)
    return jax.tree.unflatten(treedef, out)


@dataclasses.dataclass
class Landscape:
    """Loss around trained parameters θ*: ``curve[i] = L(θ* + alphas[i]·δ)`` and
    ``surface[j, i] = L(θ* + alphas[i]·δ + alphas[j]·η)``; ``center_loss = L(θ*)``."""

    alphas: np.ndarray
    curve: np.ndarray
    surface: np.ndarray
    center_loss: float
    train_curve: np.ndarray | None = None  # the run's training loss per epoch
    label: str = ""
    depth: int | None = None  # the ResNet's depth, when it is one


def loss_landscape(
    model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    span: float = 1.0,
    resolution: int = 21,
    loss_fn: Callable = losses.softmax_cross_entropy,
) -> Landscape:
    """1-D and 2-D slices of the mean loss of ``model`` (an nnx module, evaluation mode) on ``(x, y)``.

    ``resolution`` points per axis over ``[-span, span]`` (odd, so that 0 — the trained
    parameters themselves — is on the grid).
    """
    from flax import nnx

    if resolution % 2 == 0:
        raise ValueError(f"resolution must be odd so the trained point is on the grid, got {resolution}.")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]  # flax types split's result as variadic
    kd, ke = jax.random.split(jax.random.key(seed))
    delta = filter_normalized_direction(params, kd)
    eta = filter_normalized_direction(params, ke)
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def loss_at(a, b):
        p = jax.tree.map(lambda t, d, e: t + a * d + b * e, params, delta, eta)
        m = nnx.merge(graphdef, p, rest, copy=True)
        return jnp.mean(loss_fn(m(xs, train=False), ys))

    alphas = np.linspace(-span, span, resolution).astype(np.float32)
    curve = np.array([float(loss_at(a, 0.0)) for a in alphas])
    surface = np.array([[float(loss_at(a, b)) for a in alphas] for b in alphas])
    center = float(loss_at(0.0, 0.0))
    return Landscape(alphas, curve, surface, center)


def landscape_study(
    *,
    depth: int = 20,
    width: int = 8,
    epochs: int = 4,
    seed: int = 0,
    resolution: int = 13,
    span: float = 1.0,
    batch_size: int = 64,
    learning_rate: float = 0.05,
    eval_examples: int = 256,
    data=None,
    progress: bool = False,
) -> dict[str, Landscape]:
    """Train a ResNet with and without skip connections on the digits (SGD + momentum, the
    recipe's "skip" setting) and take the landscape of each around its trained parameters.

    The landscape is measured on the first ``eval_examples`` training examples (evaluation
    mode); ``center_loss`` is the trained network's loss there.
    """
    from jaxopt_lectures.lab import data as data_lib, models, trainer

    ds = data if data is not None else data_lib.load_digits(seed=seed)
    x, y = ds.x_train[:eval_examples], ds.y_train[:eval_examples]
    out = {}
    for skip in (True, False):
        model_fn = functools.partial(
            models.ResNet, depth, width, in_shape=ds.input_shape, num_classes=_classes(ds), skip=skip, norm="batch"
        )
        h = trainer.train(
            model_fn, ds, jol.sgd(learning_rate, momentum=0.9), epochs, batch_size, seeds=(seed,), progress=progress
        )
        ls = loss_landscape(h.model(0, 0), x, y, seed=seed, span=span, resolution=resolution)
        ls.train_curve = h.train_loss[0, 0]
        ls.label = f"ResNet-{depth} {'with' if skip else 'without'} skip connections"
        ls.depth = depth
        out["skip" if skip else "no_skip"] = ls
    return out


def plot_landscapes(result: dict[str, Landscape], out: str | Path) -> list[Path]:
    """Side by side: the 1-D curves on one axis, and one 2-D contour per network with the same
    color scale (log of the loss)."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    items = list(result.items())
    fig, axes = plt.subplots(1, 1 + len(items), figsize=(5.6 * (1 + len(items)), 4.6), gridspec_kw={"wspace": 0.35})
    colors = ["tab:blue", "tab:red", "tab:green"]
    for (_name, ls), c in zip(items, colors):
        axes[0].plot(ls.alphas, ls.curve, color=c, lw=2, label=ls.label)
        axes[0].plot(0, ls.center_loss, "o", color=c)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step along one random direction (0 = trained weights)")
    axes[0].set_ylabel("training loss (cross-entropy, log scale)")
    axes[0].set_title("1-D slice of the loss")
    axes[0].legend(fontsize=8)
    # The color scale spans the finite losses; an overflowed point (inf, or NaN from inf - inf
    # far out on a wide grid) is drawn at its top instead of failing the plot (audit v2 L29).
    finite = np.concatenate([ls.surface[np.isfinite(ls.surface)] for _, ls in items])
    lo = max(float(finite.min()), 1e-6) if finite.size else 1e-6
    hi = min(float(finite.max()), 1e4) if finite.size else 1e4
    levels = np.logspace(np.log10(lo), np.log10(max(hi, 10 * lo)), 30)
    cs = None
    for ax, (_name, ls) in zip(axes[1:], items):
        s = np.clip(np.where(np.isfinite(ls.surface), ls.surface, levels[-1]), levels[0], levels[-1])
        cs = ax.contourf(ls.alphas, ls.alphas, s, levels=levels, norm=LogNorm(levels[0], levels[-1]), cmap="viridis")
        ax.contour(ls.alphas, ls.alphas, s, levels=levels[::3], colors="white", linewidths=0.4)
        ax.plot(0, 0, "r*", markersize=12)
        ax.set_title(f"{ls.label}\n(loss at the trained weights: {ls.center_loss:.3g})", fontsize=10)
        ax.set_xlabel("random direction 1")
        ax.set_ylabel("random direction 2")
        ax.set_aspect("equal")
    ticks = [t for t in 10.0 ** np.arange(-4, 5) if levels[0] <= t <= levels[-1]]
    cb = fig.colorbar(cs, ax=list(axes[1:]), label="training loss (same color scale in both)", ticks=ticks)
    cb.ax.set_yticklabels([f"{t:g}" for t in ticks])
    cb.ax.minorticks_off()
    depths = sorted({ls.depth for ls in result.values() if ls.depth is not None})
    what = (f"ResNet-{depths[0]} on the 8x8 digits" if len(depths) == 1 else "the networks above") + (
        "; the lecture's picture (seed 003 l.338, Li et al. 2018) is ResNet-56, where the surface without skips"
        " turns chaotic"
        if depths != [56]
        else ""
    )
    fig.suptitle(
        f"Loss landscape around the trained weights (filter-normalized directions, Li et al. 2018)\n({what})",
        fontsize=10,
        y=1.04,
    )
    return [_save(fig, Path(out) / "landscape.png")]


# =======================================================================================
# 3. Vanishing gradients: sigmoid vs ReLU.


@dataclasses.dataclass
class GradientStudy:
    """``norms[(activation, depth)]`` -> ``(init, trained)`` per-layer gradient norms, input
    layer first (the output layer last); ``curves[(activation, depth)]`` -> training loss per epoch."""

    norms: dict[tuple[str, int], tuple[np.ndarray, np.ndarray | None]]
    curves: dict[tuple[str, int], np.ndarray]
    depths: tuple[int, ...]
    activations: tuple[str, ...]
    inits: dict[str, str] = dataclasses.field(default_factory=dict)  # activation -> initialization


#: The initialization each activation of the gradients figure starts from.
GRADIENT_INITS = {"relu": "he", "leaky_relu": "he", "prelu": "he", "sigmoid": "lecun", "tanh": "lecun"}


def _layer_norms(model, x, y) -> np.ndarray:
    from jaxopt_lectures.lab import probes

    norms = probes.gradient_norms(model, jnp.asarray(x), jnp.asarray(y))
    hidden = sorted((k for k in norms if k.startswith("blocks/")), key=lambda k: int(k.split("/")[1]))
    return np.array([norms[k] for k in hidden] + [norms[k] for k in norms if not k.startswith("blocks/")])


def gradient_depth_study(
    depths: Sequence[int] = (5, 10, 20),
    activations: Sequence[str] = ("sigmoid", "relu"),
    *,
    width: int = 32,
    epochs: int = 5,
    seed: int = 0,
    learning_rate: float = 0.05,
    batch_size: int = 32,
    probe_examples: int = 256,
    inits: dict[str, str] | None = None,
    data=None,
    progress: bool = False,
) -> GradientStudy:
    """MLPs with ``depth`` hidden layers of ``width`` units, trained with plain SGD; per-layer
    gradient norms on ``probe_examples`` training examples at initialization and after
    ``epochs`` epochs (``epochs=0``: initialization only).

    Each activation starts from the initialization made for it (``inits``, default
    :data:`GRADIENT_INITS`: He for ReLU, LeCun for sigmoid): with LeCun's scale a deep ReLU
    net's gradients shrink with depth too and ReLU-20 does not train in 5 epochs, which would
    blame the activation for what the initialization does."""
    from flax import nnx

    from jaxopt_lectures.lab import data as data_lib, models, trainer

    ds = data if data is not None else data_lib.load_digits(seed=seed)
    x, y = ds.x_train[:probe_examples], ds.y_train[:probe_examples]
    n_in = int(np.prod(ds.input_shape))
    init_of = {**GRADIENT_INITS, **(inits or {})}
    norms, curves = {}, {}
    for act in activations:
        for depth in depths:
            model_fn = functools.partial(
                models.MLP, (n_in,) + (width,) * depth + (_classes(ds),), activation=act, init=init_of[act]
            )
            init = _layer_norms(model_fn(rngs=nnx.Rngs(jax.random.fold_in(jax.random.PRNGKey(seed), 0))), x, y)
            trained = None
            if epochs > 0:
                h = trainer.train(
                    model_fn, ds, jol.sgd(learning_rate), epochs, batch_size, seeds=(seed,), progress=progress
                )
                trained = _layer_norms(h.model(0, 0), x, y)
                curves[(act, depth)] = h.train_loss[0, 0]
            norms[(act, depth)] = (init, trained)
    return GradientStudy(norms, curves, tuple(depths), tuple(activations), {a: init_of[a] for a in activations})


def plot_gradients(study: GradientStudy, out: str | Path) -> list[Path]:
    """Per-layer gradient norms (log scale) at initialization and after training, and the
    training curves beside them."""
    plt = _pyplot()
    has_trained = bool(study.curves)
    ncol = 3 if has_trained else 1
    fig, axes = plt.subplots(1, ncol, figsize=(5.5 * ncol, 4.6), squeeze=False)
    axes = axes[0]
    styles = {"sigmoid": "--", "relu": "-"}
    cmaps = {"sigmoid": plt.get_cmap("Reds"), "relu": plt.get_cmap("Blues")}
    shade = {d: 0.45 + 0.5 * i / max(1, len(study.depths) - 1) for i, d in enumerate(study.depths)}
    for (act, depth), (init, trained) in study.norms.items():
        layers = np.arange(1, len(init) + 1)
        kw = dict(
            ls=styles.get(act, ":"),
            color=cmaps.get(act, plt.get_cmap("Greys"))(shade[depth]),
            marker="o",
            markersize=3,
            label=f"{act} ({study.inits.get(act, '?')} init), {depth} hidden layers",
        )
        axes[0].plot(layers, init, **kw)
        if has_trained and trained is not None:
            axes[1].plot(layers, trained, **kw)
            axes[2].plot(np.arange(1, len(study.curves[(act, depth)]) + 1), study.curves[(act, depth)], **kw)
    for ax, title in zip(axes, ["at initialization", "after training", ""]):
        if title:
            ax.set_yscale("log")
            ax.set_xlabel("layer (1 = next to the input)")
            ax.set_ylabel("size of the gradient ‖∂L/∂θ_layer‖ (log scale)")
            ax.set_title(f"Gradient per layer, {title}")
    if has_trained:
        axes[2].set_xlabel("epoch")
        axes[2].set_ylabel("training loss (cross-entropy)")
        axes[2].set_title("Training curves (plain SGD; colors as on the left)")
    axes[0].legend(fontsize=7)
    inits = ", ".join(f"{a}: {i}" for a, i in study.inits.items())
    fig.suptitle(
        "Vanishing gradients: with sigmoid the layers near the input get almost no gradient\n"
        f"(each activation with its own initialization: {inits})",
        fontsize=11,
        y=1.05,
    )
    return [_save(fig, Path(out) / "gradients.png")]


# =======================================================================================
# 4. Batch size: Keskar et al.'s comparison at the training loss both reach.


@dataclasses.dataclass
class BatchSizeStudy:
    """Per batch size, at its chosen η: metric arrays ``(seeds, epochs)``, and per seed the test
    loss and accuracy and the sharpness of the final minimum (:func:`.probes.sharpness`)."""

    batch_sizes: tuple[int, ...]
    train_loss: dict[int, np.ndarray]
    val_loss: dict[int, np.ndarray]
    train_acc: dict[int, np.ndarray]
    val_acc: dict[int, np.ndarray]
    updates_per_epoch: dict[int, int]
    learning_rate: dict[int, float] = dataclasses.field(default_factory=dict)  # picked on validation
    grid: tuple[float, ...] = ()
    updates: int = 0
    test_loss: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    test_acc: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    sharpness: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

    def table(self) -> list[dict]:
        """Per batch size (means over seeds): its η, epochs, final training and validation
        loss and accuracy, test accuracy and sharpness. Keskar et al.'s table (seed 003
        l.297-309) compares small and large batches at the same training accuracy."""
        mean = lambda a: float(np.nanmean(a))  # noqa: E731
        return [
            {
                "batch_size": bs,
                "updates_per_epoch": self.updates_per_epoch[bs],
                "epochs": int(self.train_loss[bs].shape[1]),
                "learning_rate": self.learning_rate.get(bs),
                "train_acc": mean(self.train_acc[bs][:, -1]),
                "val_acc": mean(self.val_acc[bs][:, -1]),
                "train_loss": mean(self.train_loss[bs][:, -1]),
                "val_loss": mean(self.val_loss[bs][:, -1]),
                "test_acc": mean(self.test_acc[bs]) if bs in self.test_acc else None,
                "sharpness": mean(self.sharpness[bs]) if bs in self.sharpness else None,
            }
            for bs in self.batch_sizes
        ]

    def verdict(self) -> str:
        """In one sentence: did the small batch generalize better at equal training loss (the
        paired difference of test accuracy in points across seeds, superiority beyond
        :data:`.stats.POINTS_MARGIN`), with a flatter minimum?"""
        small, large = min(self.batch_sizes), max(self.batch_sizes)
        rows = {r["batch_size"]: r for r in self.table()}
        from jaxopt_lectures.lab import stats

        ts, tl = rows[small]["train_loss"], rows[large]["train_loss"]
        if not stats.same_training_loss(ts, tl):
            return (
                f"regime not reached: the batch sizes end at different training losses ({small}: {ts:.3f}, "
                f"{large}: {tl:.3f}), so this is not Keskar et al.'s comparison; give more updates"
            )
        acc = stats.superiority(
            stats.paired_points(self.test_acc[large], self.test_acc[small]), stats.POINTS_MARGIN, "higher"
        )
        flatter = rows[small]["sharpness"] < rows[large]["sharpness"]
        sharp = (
            f"the small batch's minimum is {'flatter' if flatter else 'not flatter'} "
            f"(sharpness {rows[small]['sharpness']:.3g} against {rows[large]['sharpness']:.3g})"
        )
        lo, hi = acc.estimate.interval
        gain = f"{acc.estimate.estimate:+.1f} points [{lo:+.1f}, {hi:+.1f}]"
        if acc.result == "holds":
            return (
                f"reproduced at this scale: at equal training loss the small batch reaches a higher test accuracy "
                f"({rows[small]['test_acc']:.3f} against {rows[large]['test_acc']:.3f}, {gain}); {sharp}"
            )
        if acc.result == "fails":
            return (
                f"not reproduced at this scale: at equal training loss the small batch gains less than "
                f"{stats.POINTS_MARGIN:g} point of test accuracy ({rows[small]['test_acc']:.3f} against "
                f"{rows[large]['test_acc']:.3f}, {gain}); {sharp}"
            )
        return (
            f"inconclusive at this scale: the test accuracy gain of the small batch at equal training loss is "
            f"{gain}, which neither clears nor excludes a {stats.POINTS_MARGIN:g}-point margin; {sharp}"
        )


def batch_size_study(
    batch_sizes: Sequence[int] = (16, 512),
    *,
    updates: int = 1560,
    seeds: Sequence[int] = (0, 1, 2),
    hidden: Sequence[int] = (64, 64),
    learning_rates: Sequence[float] = (0.01, 0.03, 0.1, 0.3),
    data=None,
    progress: bool = False,
) -> BatchSizeStudy:
    """Keskar et al.'s comparison as far as it goes on the digits: the same MLP with plain SGD,
    every batch size given the same number of ``updates`` (the large batch then runs many more
    epochs) and its own learning rate from ``learning_rates``, picked by the mean final
    validation loss over the seeds. Both should then reach about the same training loss (the
    regime of the claim, checked by :meth:`BatchSizeStudy.verdict`); the test split and the
    sharpness of each minimum say whether the small batch generalizes better and why.

    At equal *epochs* (the previous design) the large batch makes 39x fewer updates and ends
    undertrained: a gap that is the number of updates (Hoffer et al. 2017), not the batch size."""
    from jaxopt_lectures.lab import data as data_lib, models, probes, stats, trainer

    if updates < 1:
        raise ValueError(f"updates must be at least 1, got {updates}")
    ds = data if data is not None else data_lib.load_digits(seed=seeds[0])
    n_in = int(np.prod(ds.input_shape))
    model_fn = functools.partial(models.MLP, (n_in, *hidden, _classes(ds)), init="he")
    grid = tuple(float(lr) for lr in learning_rates)
    out = BatchSizeStudy(tuple(batch_sizes), {}, {}, {}, {}, {}, grid=grid, updates=int(updates))
    for i, bs in enumerate(batch_sizes):  # all checked before any training
        trainer.check_batch_size(bs, len(ds.x_train), name=f"batch_sizes[{i}]")
    for bs in batch_sizes:
        per_epoch = len(ds.x_train) // bs
        epochs = -(-int(updates) // per_epoch)
        h = trainer.train(
            model_fn,
            ds,
            jol.inject_hyperparams(jol.sgd)(learning_rate=grid[0]),
            epochs,
            bs,
            seeds=seeds,
            configs=[{"learning_rate": lr} for lr in grid],
            progress=progress,
            progress_desc=f"batch {bs}",
        )
        c = stats.pick_grid_point(h.final("val_loss"), h.diverged)  # the table's rule
        out.updates_per_epoch[bs], out.learning_rate[bs] = per_epoch, grid[c]
        out.train_loss[bs], out.val_loss[bs] = h.train_loss[c], h.val_loss[c]
        out.train_acc[bs], out.val_acc[bs] = h.train_acc[c], h.val_acc[c]
        assert h.test_loss is not None and h.test_acc is not None  # digits has a test split
        out.test_loss[bs], out.test_acc[bs] = h.test_loss[c], h.test_acc[c]
        out.sharpness[bs] = np.array(
            [probes.sharpness(h.model(c, s), ds.x_train, ds.y_train, _classes(ds)) for s in range(len(seeds))]
        )
    return out


def plot_batch_size(study: BatchSizeStudy, out: str | Path) -> list[Path]:
    """Training and validation loss and accuracy against the number of updates, one color per
    batch size (solid: training, dashed: validation; band: min-max over seeds); the title
    gives each batch size's η, test accuracy and sharpness, and the verdict in words."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    colors = ["tab:blue", "tab:red", "tab:green", "tab:purple"]
    for bs, c in zip(study.batch_sizes, colors):
        eta = study.learning_rate.get(bs)
        for split, ls in (("train", "-"), ("val", "--")):
            for ax, metric in zip(axes, ("loss", "acc")):
                a = getattr(study, f"{split}_{metric}")[bs]
                steps = np.arange(1, a.shape[1] + 1) * study.updates_per_epoch[bs]
                name = "training" if split == "train" else "validation"
                ax.plot(
                    steps,
                    np.nanmean(a, 0),
                    ls,
                    color=c,
                    lw=2,
                    label=f"batch {bs}" + (f", η = {eta:g}" if eta is not None else "") + f", {name}",
                )
                if a.shape[0] > 1:
                    ax.fill_between(steps, np.nanmin(a, 0), np.nanmax(a, 0), color=c, alpha=0.15)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss (cross-entropy, log scale)")
    axes[1].set_ylabel("accuracy")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("updates (optimizer steps, log scale)")
    axes[0].set_title("Loss")
    axes[1].set_title("Accuracy")
    axes[1].legend(fontsize=7.5, loc="lower right")
    rows = study.table()
    summary = "; ".join(
        f"batch {r['batch_size']}: train loss {r['train_loss']:.3f}, test acc "
        f"{r['test_acc']:.3f}, sharpness {r['sharpness']:.3g}"
        for r in rows
        if r["test_acc"] is not None
    )
    verdict = textwrap.fill(study.verdict(), 130) if study.test_acc else ""
    fig.suptitle(
        f"Small vs large batch, {study.updates} updates each, each at its own η (mean over seeds)\n"
        f"{summary}\n{verdict}",
        fontsize=9,
        y=1.06,
    )
    return [_save(fig, Path(out) / "batch_size.png")]


# =======================================================================================
# 5. Learning-rate schedules.


def schedule_curves(total_steps: int = 1000, peak: float = 0.1) -> dict[str, tuple[str, np.ndarray]]:
    """Every schedule in ``jol.schedules`` at lecture-typical settings over ``total_steps``:
    ``name -> (description, η_t for t = 0 … total_steps − 1)``."""
    s = jol.schedules
    T = int(total_steps)
    w = max(1, T // 10)
    specs = {
        "constant": ("constant(η)", s.constant(peak)),
        "linear": ("linear: η → 0 over the run", s.linear(peak, 0.0, T)),
        "linear_warmup": (f"linear_warmup: 0 → η over {w} steps", s.linear_warmup(0.0, peak, w)),
        "exponential_decay": (
            "exponential_decay: ×0.5 every T/5 steps",
            s.exponential_decay(peak, max(1, T // 5), 0.5),
        ),
        "piecewise_constant": (
            "piecewise_constant: ×0.1 at T/2 and 3T/4",
            s.piecewise_constant(peak, {T // 2: 0.1, (3 * T) // 4: 0.1}),
        ),
        "step_decay": ("step_decay: ×0.5 every T/4 steps", s.step_decay(peak, max(1, T // 4), 0.5)),
        "cosine_decay": ("cosine_decay: η → 0 along a cosine", s.cosine_decay(peak, T)),
        "warmup_cosine_decay": (
            f"warmup_cosine_decay: warm-up {w} steps, then cosine",
            s.warmup_cosine_decay(0.0, peak, w, T),
        ),
        "join": (
            f"join: warm-up {w} steps, then exponential decay",
            s.join([s.linear_warmup(0.0, peak, w), s.exponential_decay(peak, max(1, T // 4), 0.3)], [w]),
        ),
    }
    drawn = [getattr(s, name) for name in specs]
    # optax's names (``cosine_decay_schedule`` ...) are the same functions: drawn once
    missing = sorted(name for name in s.__all__ if getattr(s, name) not in drawn)
    if missing:  # a schedule added to jol.schedules must get a line here
        raise NotImplementedError(f"schedule_curves does not draw {missing} yet.")
    t = jnp.arange(T)
    return {name: (desc, np.asarray(jax.vmap(fn)(t))) for name, (desc, fn) in specs.items()}


def plot_schedules(curves: dict[str, tuple[str, np.ndarray]], out: str | Path) -> list[Path]:
    """One small panel per schedule, same axes."""
    plt = _pyplot()
    n = len(curves)
    ncol = 3
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.8 * nrow), sharex=True, sharey=True, squeeze=False)
    peak = max(float(np.max(v)) for _, v in curves.values())
    for ax, (desc, values) in zip(axes.flat, curves.values()):
        ax.plot(np.arange(len(values)), values, color="tab:blue", lw=2)
        ax.set_title(desc, fontsize=9)
        ax.set_ylim(0, peak * 1.1)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("update (step) number")
    for ax in axes[:, 0]:
        ax.set_ylabel("learning rate η")
    fig.suptitle("Learning-rate schedules in jol.schedules over one run")
    fig.tight_layout()
    return [_save(fig, Path(out) / "schedules.png")]


# =======================================================================================
# 6. Optimizers on well- and ill-conditioned inputs (issue 24).

#: name -> (label, the optimizer's spec for :func:`.plan.make_optimizer` without η, η grid).
#: Factor-3 grids placed so that each optimizer's best η is inside the grid on both settings
#: (measured: SGD 0.27 / 0.81, momentum 0.027 / 0.081, Adagrad 0.081, RMSProp and Adam ~0.008-0.027).
CONDITIONING_OPTIMIZERS: dict[str, tuple[str, dict, tuple[float, ...]]] = {
    "sgd": ("SGD", {"name": "sgd"}, tuple(0.03 * 3**k for k in range(6))),
    "momentum": ("momentum (β = 0.9)", {"name": "sgd", "momentum": 0.9}, tuple(0.003 * 3**k for k in range(6))),
    "adagrad": ("Adagrad", {"name": "adagrad"}, tuple(0.003 * 3**k for k in range(6))),
    "rmsprop": ("RMSProp", {"name": "rmsprop"}, tuple(3e-4 * 3**k for k in range(6))),
    "adam": ("Adam", {"name": "adam"}, tuple(1e-3 * 3**k for k in range(6))),
}

_OPT_COLORS = {
    "sgd": "black",
    "momentum": "tab:green",
    "adagrad": "tab:orange",
    "rmsprop": "tab:purple",
    "adam": "tab:red",
}


def updates_to_target(acc: np.ndarray, updates_per_epoch: int, target: float) -> np.ndarray:
    """``acc`` is ``(..., epochs)`` of training accuracy after each epoch; the number of updates
    after which it first reached ``target`` (``inf`` where it never did, a diverged run's NaN
    included). The resolution is one epoch."""
    hit = np.asarray(acc) >= target
    first = np.argmax(hit, axis=-1) + 1
    return np.where(hit.any(axis=-1), first * int(updates_per_epoch), np.inf)


@dataclasses.dataclass
class ConditioningStudy:
    """Every optimizer on the well-conditioned (standardised) and the ill-conditioned digits.

    Keys are ``(setting, optimizer)`` with settings ``"standardised"`` and ``"ill-conditioned"``.
    ``grid_updates[k]`` is ``(grid, seeds)``: updates to ``target`` training accuracy (``inf``:
    never within ``budget`` updates); ``learning_rate[k]`` the η picked from it (the fewest
    updates: lowest mean log, a failure counted as 2 x budget; ties: the lower final training
    loss); ``updates[k]`` ``(seeds,)`` and ``train_loss``/``train_acc`` ``(seeds, epochs)`` at that η.
    """

    optimizers: tuple[str, ...]
    seeds: tuple[int, ...]
    batch_size: int
    updates_per_epoch: int
    epochs: int
    target: float
    hidden: tuple[int, ...]
    scale: dict
    feature_scale: np.ndarray
    constant_features: np.ndarray
    condition_number: dict[str, float]
    grid: dict[str, tuple[float, ...]]
    grid_updates: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
    learning_rate: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    updates: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
    train_loss: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)
    train_acc: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)

    settings = ("standardised", "ill-conditioned")

    @property
    def budget(self) -> int:
        return self.epochs * self.updates_per_epoch

    def ratio(self, setting: str, name: str) -> float | None:
        """Geometric mean over the paired seeds of updates(name) / updates(SGD), each at its own
        η, a failure counted as 2 x budget (below 1: faster than tuned SGD); None without SGD."""
        if "sgd" not in self.optimizers:
            return None
        cap = 2.0 * self.budget
        a = np.minimum(self.updates[(setting, name)], cap)
        b = np.minimum(self.updates[(setting, "sgd")], cap)
        return float(np.exp(np.mean(np.log(a) - np.log(b))))

    def table(self) -> list[dict]:
        """Per setting and optimizer: the tuned η (and whether it sits at the grid's edge), the
        updates to target per seed and their median, the failures and the ratio to tuned SGD."""
        rows = []
        for setting in self.settings:
            for name in self.optimizers:
                k = (setting, name)
                grid, u = self.grid[name], self.updates[k]
                rows.append(
                    {
                        "setting": setting,
                        "optimizer": name,
                        "learning_rate": self.learning_rate[k],
                        "edge": self.learning_rate[k] in (grid[0], grid[-1]) and len(grid) > 2,
                        "updates": [None if not np.isfinite(x) else int(x) for x in u],
                        "median_updates": float(np.median(u)),
                        "failures": int(np.sum(~np.isfinite(u))),
                        "ratio_to_sgd": self.ratio(setting, name),
                    }
                )
        return rows


def _pick_fastest(grid_updates: np.ndarray, final_loss: np.ndarray, budget: int) -> int:
    """The grid point with the fewest updates to target (mean log over seeds, a failure counted
    as 2 x budget); ties go to the lower mean final training loss."""
    score = np.mean(np.log(np.minimum(grid_updates, 2.0 * budget)), axis=1)
    loss = np.where(np.isfinite(final_loss), final_loss, np.inf).mean(axis=1)
    order = sorted(range(len(score)), key=lambda i: (round(float(score[i]), 9), float(loss[i])))
    return order[0]


def optimizer_conditioning(
    *,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 30,
    batch_size: int = 128,
    target: float = 0.99,
    scale: tuple[float, float] = (-2.0, 1.0),
    scale_seed: int = 0,
    hidden: Sequence[int] = (64, 64),
    optimizers: Sequence[str] = tuple(CONDITIONING_OPTIMIZERS),
    grids: dict[str, Sequence[float]] | None = None,
    progress: bool = False,
) -> ConditioningStudy:
    """SGD, momentum, Adagrad, RMSProp and Adam on the same network (an MLP with ReLU and He
    init, the lab's default setting) and two versions of the digits: standardised per feature
    (well-conditioned), and the same with feature ``j`` multiplied by ``10**u_j``,
    ``u_j ~ U(*scale)`` (:func:`.data.ill_conditioned`, draw ``scale_seed``): the lecture's loss
    surface that is steep in some directions and flat in others (seed 000's ``g⁰ = (500, 0.4)``).

    Each optimizer trains its whole η grid (``grids``, default :data:`CONDITIONING_OPTIMIZERS`),
    both settings and every seed in one program of the lab's trainer (η is an injected, traced
    knob; each seed has its own split, as in the table, and the same initialization and batch
    order on both settings), for ``epochs`` epochs of ``batch_size``, and
    keeps the η that reaches ``target`` training accuracy in the fewest updates. On the
    standardised digits tuned SGD is about as fast as the adaptive methods; on the badly scaled
    inputs their per-parameter step sizes undo the scaling and they need far fewer updates.
    """
    from jaxopt_lectures.lab import data as data_lib, plan, trainer

    unknown = sorted(set(optimizers) - set(CONDITIONING_OPTIMIZERS))
    if unknown or not optimizers:
        raise ValueError(f"unknown optimizers {unknown}; choose from {list(CONDITIONING_OPTIMIZERS)}")
    if epochs < 1 or not seeds:
        raise ValueError(f"need epochs >= 1 and at least one seed, got epochs={epochs}, seeds={tuple(seeds)}")
    seeds = tuple(int(s) for s in seeds)
    grid = {n: tuple(float(x) for x in (grids or {}).get(n, CONDITIONING_OPTIMIZERS[n][2])) for n in optimizers}
    low, high = (float(x) for x in scale)
    specs = {
        "standardised": {"name": "digits", "feature_scale": {"low": 0.0, "high": 0.0}},
        "ill-conditioned": {"name": "digits", "feature_scale": {"low": low, "high": high, "seed": int(scale_seed)}},
    }
    model = {"name": "mlp", "hidden": list(hidden), "activation": "relu", "init": "he", "norm": None}
    data = {k: [plan.load_data(spec, s) for s in seeds] for k, spec in specs.items()}
    ill = data["ill-conditioned"][0]
    per_epoch = plan.steps_per_epoch(len(ill.x_train), batch_size)
    flat = ill.x_train.reshape(len(ill.x_train), -1)
    study = ConditioningStudy(
        optimizers=tuple(optimizers),
        seeds=seeds,
        batch_size=int(batch_size),
        updates_per_epoch=per_epoch,
        epochs=int(epochs),
        target=float(target),
        hidden=tuple(int(h) for h in hidden),
        scale={"low": low, "high": high, "seed": int(scale_seed)},
        feature_scale=np.asarray(ill.feature_scale),
        constant_features=np.all(flat == 0, axis=0),
        condition_number={k: data_lib.input_condition_number(v[0]) for k, v in data.items()},
        grid=grid,
    )
    # One program per optimizer: its η grid x both settings x the seeds (a seed's two runs start
    # from the same initialization and batch order, so the settings are compared paired).
    n = len(seeds)
    both = data["standardised"] + data["ill-conditioned"]
    for name in optimizers:
        h = trainer.train(
            plan.make_model_fn(model, both[0]),
            both,
            plan.make_optimizer({**CONDITIONING_OPTIMIZERS[name][1], "learning_rate": grid[name][0]}, study.budget),
            epochs=epochs,
            batch_size=batch_size,
            seeds=seeds + seeds,
            configs=[{"learning_rate": lr} for lr in grid[name]],
            progress=progress,
            progress_desc=name,
        )
        for i, setting in enumerate(study.settings):
            runs = slice(i * n, (i + 1) * n)
            k = (setting, name)
            reached = updates_to_target(h.train_acc[:, runs], per_epoch, target)
            c = _pick_fastest(reached, h.train_loss[:, runs, -1], study.budget)
            study.grid_updates[k], study.learning_rate[k] = reached, grid[name][c]
            study.updates[k] = reached[c]
            study.train_loss[k], study.train_acc[k] = h.train_loss[c, runs], h.train_acc[c, runs]
    return study


def plot_conditioning(study: ConditioningStudy, out: str | Path) -> list[Path]:
    """Training loss against updates for every optimizer at its tuned η, on the standardised
    (left) and the ill-conditioned digits (middle): mean over seeds (thick), each seed (thin),
    a dot where the median seed first reached the target accuracy; right: the scale of each
    input feature that makes the difference."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    steps = np.arange(1, study.epochs + 1) * study.updates_per_epoch
    for ax, setting in zip(axes[:2], study.settings):
        for name in study.optimizers:
            k = (setting, name)
            color, loss = _OPT_COLORS[name], study.train_loss[k]
            for run in loss:
                ax.plot(steps, run, color=color, lw=0.6, alpha=0.35)
            mean = np.exp(np.nanmean(np.log(loss), axis=0))
            med = float(np.median(study.updates[k]))
            ratio = study.ratio(setting, name)
            reach = (
                f"{study.target:.0%} at {med:.0f} updates" if np.isfinite(med) else f"{study.target:.0%} not reached"
            )
            extra = "" if ratio is None or name == "sgd" else f" ({ratio:.2f}x SGD's)"
            label = f"{CONDITIONING_OPTIMIZERS[name][0]}, η = {study.learning_rate[k]:.2g}: {reach}{extra}"
            ax.plot(steps, mean, color=color, lw=2.2, label=label)
            if np.isfinite(med):
                ax.plot([med], [np.interp(med, steps, mean)], "o", color=color, ms=7, mec="white", zorder=5)
        ax.set_yscale("log")
        ax.set_xlabel(f"updates (optimizer steps of batch {study.batch_size})")
        ax.set_ylabel("training loss (cross-entropy, log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="lower left")
        kappa = study.condition_number[setting]
        what = (
            "each input feature standardised"
            if setting == "standardised"
            else f"feature j standardised, then × $10^{{u_j}}$, $u_j$ ~ U({study.scale['low']:g}, {study.scale['high']:g})"
        )
        ax.set_title(
            f"{setting.capitalize()} digits: {what}\ninput covariance condition number {kappa:.2g}", fontsize=9.5
        )
    lo = min(np.nanmin(a) for a in study.train_loss.values())
    hi = max(np.nanmax(a) for a in study.train_loss.values())
    for ax in axes[:2]:
        ax.set_ylim(max(lo, 1e-4) * 0.7, hi * 1.5)
        ax.set_xlim(0, steps[-1])
    ax = axes[2]
    j = np.arange(len(study.feature_scale))
    live = ~study.constant_features
    ax.scatter(j[live], study.feature_scale[live], s=18, color="tab:blue", label="ill-conditioned: $10^{u_j}$")
    if (~live).any():
        ax.scatter(
            j[~live],
            study.feature_scale[~live],
            s=18,
            facecolors="none",
            edgecolors="gray",
            label="pixel never lit in training (input 0)",
        )
    ax.axhline(1.0, color="black", ls="--", lw=1, label="standardised: every feature 1")
    ax.set_yscale("log")
    ax.set_ylim(min(10 ** study.scale["low"], 1.0) / 8, max(10 ** study.scale["high"], 1.0) * 3)
    ax.set_xlabel("input feature j (pixel of the 8x8 image, row by row)")
    ax.set_ylabel("standard deviation of the input feature (log scale)")
    ax.set_title(f"What differs: the scale of each input\n(one fixed draw, seed {study.scale['seed']})", fontsize=9.5)
    ax.legend(fontsize=7.5, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    n = len(study.seeds)
    ratios = []
    for setting in study.settings:
        parts = [
            f"{CONDITIONING_OPTIMIZERS[name][0].split(' ')[0]} {study.ratio(setting, name):.2f}x"
            for name in study.optimizers
            if name != "sgd"
        ]
        if parts and "sgd" in study.optimizers:
            ratios.append(f"{setting}: " + ", ".join(parts))
    ratio_line = (
        f"\nUpdates to {study.target:.0%} relative to tuned SGD (geometric mean over seeds): " + "; ".join(ratios)
        if ratios
        else ""
    )
    fig.suptitle(
        f"The same MLP (hidden layers {'-'.join(map(str, study.hidden))}, ReLU, He init, batch {study.batch_size}), "
        f"each optimizer at its own η (the fewest updates to {study.target:.0%} training accuracy on a x3 grid); "
        f"geometric mean of {n} seed{'s' if n > 1 else ''}, thin lines: each seed, dots: the median seed reaches "
        f"{study.target:.0%}{ratio_line}\nAdagrad, RMSProp and Adam give each parameter its own step size: "
        "that undoes badly scaled inputs, which plain SGD's one η cannot",
        fontsize=10,
        y=1.06,
    )
    fig.tight_layout()
    return [_save(fig, Path(out) / "optimizers_conditioning.png")]
