"""``jaxopt-lectures paths | landscape | gradients | batch-size | schedules | optimizers-conditioning``: the
lectures' pictures.

Registered from :func:`jaxopt_lectures.cli.build_parser`. Kept outside ``lab`` so that building the
parser never imports Flax; Flax and matplotlib load only
inside the commands. Every command takes ``--out`` and ``--seed`` and prints what it wrote.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=Path("figures"), metavar="DIR", help="where the PNGs go (default: figures/)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the initialization (default 0)")


def _positive(name: str, value: int, low: int = 1) -> None:
    from jaxopt_lectures._cli_common import UsageError

    if value < low:
        raise UsageError(f"--{name} {value} is out of range; allowed: integers >= {low}")


def _report(paths) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def _out(args) -> Path:
    from jaxopt_lectures._cli_common import writable_dir as _writable_dir

    return _writable_dir(args.out)


def _run_paths(args) -> int:
    _positive("steps", args.steps)
    out = _out(args)
    from jaxopt_lectures.lab import figures

    r = figures.optimizer_paths(args.steps, seed=args.seed)
    print(f"closed-form minimum: w* = {r.minimum[0]:.4f}, b* = {r.minimum[1]:.4f} (loss {r.min_loss:.4f})")
    for name in r.paths:
        print(f"  {r.labels[name]:32s} {figures.path_summary(r, name)}")
    return _report(figures.plot_paths(r, out))


def _run_landscape(args) -> int:
    _positive("epochs", args.epochs)
    _positive("resolution", args.resolution, 3)
    _positive("width", args.width)
    if not (math.isfinite(args.span) and args.span > 0):
        from jaxopt_lectures._cli_common import UsageError

        raise UsageError(f"--span {args.span} is out of range; allowed: finite numbers > 0")
    if args.depth < 8 or (args.depth - 2) % 6:
        from jaxopt_lectures._cli_common import UsageError

        raise UsageError(f"--depth {args.depth} is out of range; allowed: 6n + 2 (8, 14, 20, 26, 32, ...)")
    resolution = args.resolution + (args.resolution % 2 == 0)
    out = _out(args)
    from jaxopt_lectures.lab import enable_compilation_cache, figures

    enable_compilation_cache()
    result = figures.landscape_study(
        depth=args.depth,
        width=args.width,
        epochs=args.epochs,
        seed=args.seed,
        resolution=resolution,
        span=args.span,
        progress=True,
    )
    for ls in result.values():
        print(
            f"  {ls.label}: loss at the trained weights {ls.center_loss:.4f}, "
            f"highest on the 2-D grid {ls.surface.max():.4g}"
        )
    return _report(figures.plot_landscapes(result, out))


def _run_gradients(args) -> int:
    _positive("epochs", args.epochs, 0)
    try:
        depths = tuple(int(d) for d in args.depths.split(","))
    except ValueError:
        from jaxopt_lectures._cli_common import UsageError

        raise UsageError(f"--depths {args.depths!r} must be comma-separated integers, e.g. 5,10,20") from None
    for d in depths:
        _positive("depths", d)
    out = _out(args)
    from jaxopt_lectures.lab import enable_compilation_cache, figures

    enable_compilation_cache()
    study = figures.gradient_depth_study(depths, epochs=args.epochs, seed=args.seed, progress=True)
    for (act, depth), (init, _) in study.norms.items():
        print(f"  {act:7s} depth {depth:2d}: first-layer gradient {init[0]:.3g}, last layer {init[-1]:.3g} at init")
    return _report(figures.plot_gradients(study, out))


def _run_batch_size(args) -> int:
    _positive("updates", args.updates)
    _positive("seeds", args.seeds)
    _positive("small", args.small)
    _positive("large", args.large)
    from jaxopt_lectures.lab import data

    ds = data.load_digits(seed=args.seed)  # the study's data: the batch sizes are checked against it first
    n = len(ds.x_train)
    for name in ("small", "large"):
        if getattr(args, name) > n:
            from jaxopt_lectures._cli_common import UsageError

            raise UsageError(
                f"--{name} {getattr(args, name)} is out of range; allowed: integers in [1, {n}] "
                "(the size of the digits training split)"
            )
    out = _out(args)
    from jaxopt_lectures.lab import enable_compilation_cache, figures

    enable_compilation_cache()
    study = figures.batch_size_study(
        (args.small, args.large),
        updates=args.updates,
        seeds=tuple(range(args.seed, args.seed + args.seeds)),
        data=ds,
        progress=True,
    )
    for row in study.table():
        print(
            f"  batch {row['batch_size']:4d} (η {row['learning_rate']:g}, {row['epochs']} epochs): "
            f"train loss {row['train_loss']:.3f}  train acc {row['train_acc']:.3f}  test acc {row['test_acc']:.3f}  "
            f"sharpness {row['sharpness']:.3g}"
        )
    print(f"  {study.verdict()}")
    return _report(figures.plot_batch_size(study, out))


def _run_conditioning(args) -> int:
    _positive("seeds", args.seeds)
    _positive("epochs", args.epochs)
    _positive("seed", args.seed, 0)
    _positive("scale-seed", args.scale_seed, 0)
    out = _out(args)
    import time

    from jaxopt_lectures.lab import enable_compilation_cache, figures

    enable_compilation_cache()
    start = time.perf_counter()
    study = figures.optimizer_conditioning(
        seeds=tuple(range(args.seed, args.seed + args.seeds)),
        epochs=args.epochs,
        scale_seed=args.scale_seed,
        progress=True,
    )
    for setting in study.settings:
        print(f"  {setting} digits (input covariance condition number {study.condition_number[setting]:.3g}):")
        for row in (r for r in study.table() if r["setting"] == setting):
            per_seed = ", ".join("never" if u is None else str(u) for u in row["updates"])
            ratio = row["ratio_to_sgd"]
            print(
                f"    {row['optimizer']:8s} η {row['learning_rate']:<7.3g}{' (grid edge)' if row['edge'] else ''} "
                f"updates to {study.target:.0%}: median {row['median_updates']:g} [{per_seed}]"
                + ("" if ratio is None else f", {ratio:.2f}x tuned SGD's")
            )
    paths = figures.plot_conditioning(study, out)
    print(f"  {study.budget} updates per run, {time.perf_counter() - start:.1f} s")
    return _report(paths)


def _run_schedules(args) -> int:
    _positive("steps", args.steps, 10)
    out = _out(args)
    from jaxopt_lectures.lab import figures

    return _report(figures.plot_schedules(figures.schedule_curves(args.steps), out))


def register(sub) -> None:
    """Add the figure subcommands to ``jaxopt-lectures``' subparsers."""
    p = sub.add_parser(
        "paths",
        help="optimizer paths on the y = w*x + b toy (learning rate, Adagrad, RMSProp, momentum, Adam)",
        description="Gradient descent at η = 1e-3 and 1e-4, Adagrad, RMSProp, momentum and Adam on the "
        "lecture's linear-regression toy, drawn on the loss surface over (w, b).",
    )
    _common(p)
    p.add_argument("--steps", type=int, default=1000, help="updates per optimizer (default 1000)")
    p.set_defaults(run=_run_paths)

    p = sub.add_parser(
        "landscape",
        help="loss landscape of a ResNet with and without skip connections (Li et al. 2018)",
        description="Train a ResNet with and without skip connections on the digits and plot the loss "
        "along filter-normalized random directions around the trained weights. The default "
        "is ResNet-20 on the 8x8 digits (the figure says so); the lecture's picture (seed "
        "003) is ResNet-56: --depth 56, better on a GPU and trained to convergence.",
    )
    _common(p)
    p.add_argument("--depth", type=int, default=20, help="ResNet depth 6n+2 (default 20)")
    p.add_argument("--width", type=int, default=8, help="channels of the first stage (default 8)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    p.add_argument("--resolution", type=int, default=13, help="grid points per axis, odd (default 13)")
    p.add_argument("--span", type=float, default=1.0, help="the grid covers [-span, span] (default 1)")
    p.set_defaults(run=_run_landscape)

    p = sub.add_parser(
        "gradients",
        help="per-layer gradient norms, sigmoid vs ReLU, at depths 5/10/20",
        description="Vanishing gradients: the size of each layer's gradient at initialization and after "
        "training, for deep sigmoid and ReLU networks, with their training curves; each "
        "activation starts from its own initialization (He for ReLU, LeCun for sigmoid).",
    )
    _common(p)
    p.add_argument("--depths", default="5,10,20", help="comma-separated numbers of hidden layers (default 5,10,20)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs, 0 = initialization only (default 5)")
    p.set_defaults(run=_run_gradients)

    p = sub.add_parser(
        "batch-size",
        help="small vs large batch at equal training loss (Keskar et al.)",
        description="Train the same network with a small and a large batch for the same number of "
        "updates, each at its own learning rate (picked on validation), check that both reach "
        "the same training loss, and report test accuracy and the sharpness of each minimum: "
        "Keskar et al.'s comparison (seed 003), with a sentence saying whether their gap "
        "shows at this scale.",
    )
    _common(p)
    p.add_argument("--small", type=int, default=16, help="small batch size (default 16)")
    p.add_argument("--large", type=int, default=512, help="large batch size (default 512)")
    p.add_argument(
        "--updates",
        type=int,
        default=1560,
        help="optimizer steps for each batch size (default 1560: 20 epochs of batch 16, 780 of batch 512)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds, starting at --seed (default 3)")
    p.set_defaults(run=_run_batch_size)

    p = sub.add_parser(
        "optimizers-conditioning",
        help="SGD, momentum, Adagrad, RMSProp, Adam on standardised vs badly scaled digits",
        description="Seed 000's 'different parameters should have different learning rates': the same MLP "
        "(hidden 64-64, ReLU, He init, batch 128) trained with SGD, momentum, Adagrad, RMSProp and Adam on "
        "the digits with each input feature standardised, and with feature j then multiplied by 10^u_j, "
        "u_j ~ U(-2, 1) (one fixed draw): an ill-conditioned loss. Each optimizer runs at its own η, the one "
        "of a x3 grid that reaches 99% training accuracy in the fewest updates. Draws the training curves "
        "against updates side by side and the per-feature scales, and prints each optimizer's updates to "
        "99% and their ratio to tuned SGD's. About 40 s on 2 CPU cores with the defaults.",
    )
    _common(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds (split and initialization), from --seed (default 3)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per run, 9 updates each (default 30: 270 updates)")
    p.add_argument(
        "--scale-seed",
        type=int,
        default=0,
        help="seed of the fixed draw of feature scales u_j, kept across --seed values (default 0)",
    )
    p.set_defaults(run=_run_conditioning)

    p = sub.add_parser(
        "schedules",
        help="plot every learning-rate schedule in jol.schedules",
        description="Plot each learning-rate schedule of jol.schedules over one run.",
    )
    _common(p)
    p.add_argument("--steps", type=int, default=1000, help="length of the run in updates (default 1000)")
    p.set_defaults(run=_run_schedules)
