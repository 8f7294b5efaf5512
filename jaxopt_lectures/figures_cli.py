"""``jaxopt-lectures paths | landscape | gradients | batch-size | schedules | optimizers-conditioning``: the
lectures' pictures.

Registered from :func:`jaxopt_lectures.cli.build_parser`. Kept outside ``lab`` so that building the
parser never imports Flax; Flax and matplotlib load only
inside the commands. Every command takes ``--out`` and ``--seed`` and prints what it wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxopt_lectures._cli_common import MAX_SEED, MAX_SEEDS, Bounds, UsageError, add_number, check

# The allowed values of the figure commands' numbers (audit v2 L29, L30: past these a run ran out
# of memory or failed after training). Shown in --help, checked before any work (_cli_common).
STEPS = Bounds(1, 1_000_000)  # paths: each optimizer keeps its whole path
SCHEDULE_STEPS = Bounds(10, 1_000_000)
SEED = Bounds(0, MAX_SEED)
SEEDS = Bounds(1, MAX_SEEDS)
EPOCHS = Bounds(1, 10_000)
DEPTH = Bounds(8, 110)  # ResNet depths 6n + 2 up to He et al.'s ResNet-110
WIDTH = Bounds(1, 256)
RESOLUTION = Bounds(3, 101)  # resolution² loss evaluations
SPAN = Bounds(0, 1000, integer=False, low_open=True)  # in units of filter-normalized directions
LAYERS = Bounds(1, 100)  # gradients --depths: hidden layers
BATCH = Bounds(1, 1_000_000)  # and at most the training split, checked once the data is loaded (L28)
UPDATES = Bounds(1, 1_000_000)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=Path("figures"), metavar="DIR", help="where the PNGs go (default: figures/)"
    )
    add_number(p, "--seed", SEED, 0, "seed of the data and the initialization")


def _seed_range(args) -> tuple[int, ...]:
    """``--seeds`` seeds from ``--seed``: the last one must still be a seed."""
    last = args.seed + args.seeds - 1
    check(
        "seed",
        args.seed,
        Bounds(0, MAX_SEED - args.seeds + 1),
        why=f"with --seeds {args.seeds} the last seed is {last}",
    )
    return tuple(range(args.seed, args.seed + args.seeds))


def _report(paths) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def _out(args) -> Path:
    from jaxopt_lectures._cli_common import writable_dir as _writable_dir

    return _writable_dir(args.out)


def _run_paths(args) -> int:
    out = _out(args)
    from jaxopt_lectures.lab import figures

    r = figures.optimizer_paths(args.steps, seed=args.seed)
    print(f"closed-form minimum: w* = {r.minimum[0]:.4f}, b* = {r.minimum[1]:.4f} (loss {r.min_loss:.4f})")
    for name in r.paths:
        print(f"  {r.labels[name]:32s} {figures.path_summary(r, name)}")
    return _report(figures.plot_paths(r, out))


def _run_landscape(args) -> int:
    if (args.depth - 2) % 6:
        raise UsageError(f"--depth {args.depth} is out of range; allowed: 6n + 2 in [8, 110] (8, 14, 20, 26, 32, ...)")
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
    try:
        depths = tuple(int(d) for d in args.depths.split(","))
    except ValueError:
        raise UsageError(f"--depths {args.depths!r} must be comma-separated integers, e.g. 5,10,20") from None
    for d in depths:
        check("depths", d, LAYERS)
    if len(depths) > 10:
        raise UsageError(f"--depths {args.depths!r} names {len(depths)} depths; allowed: at most 10")
    out = _out(args)
    from jaxopt_lectures.lab import enable_compilation_cache, figures

    enable_compilation_cache()
    study = figures.gradient_depth_study(depths, epochs=args.epochs, seed=args.seed, progress=True)
    for (act, depth), (init, _) in study.norms.items():
        print(f"  {act:7s} depth {depth:2d}: first-layer gradient {init[0]:.3g}, last layer {init[-1]:.3g} at init")
    return _report(figures.plot_gradients(study, out))


def _run_batch_size(args) -> int:
    seeds = _seed_range(args)
    from jaxopt_lectures.lab import data

    ds = data.load_digits(seed=args.seed)  # the study's data: the batch sizes are checked against it first
    n = len(ds.x_train)
    for name in ("small", "large"):
        check(name, getattr(args, name), Bounds(1, n), why="the size of the digits training split")
    out = _out(args)
    from jaxopt_lectures.lab import enable_compilation_cache, figures

    enable_compilation_cache()
    study = figures.batch_size_study(
        (args.small, args.large),
        updates=args.updates,
        seeds=seeds,
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
    seeds = _seed_range(args)
    out = _out(args)
    import time

    from jaxopt_lectures.lab import enable_compilation_cache, figures

    enable_compilation_cache()
    start = time.perf_counter()
    study = figures.optimizer_conditioning(
        seeds=seeds,
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
    add_number(p, "--steps", STEPS, 1000, "updates per optimizer")
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
    add_number(p, "--depth", DEPTH, 20, "ResNet depth 6n+2")
    add_number(p, "--width", WIDTH, 8, "channels of the first stage")
    add_number(p, "--epochs", EPOCHS, 4, "training epochs")
    add_number(p, "--resolution", RESOLUTION, 13, "grid points per axis, odd (an even one gets one more)")
    add_number(p, "--span", SPAN, 1.0, "the grid covers [-span, span] in units of the filter-normalized directions")
    p.set_defaults(run=_run_landscape)

    p = sub.add_parser(
        "gradients",
        help="per-layer gradient norms, sigmoid vs ReLU, at depths 5/10/20",
        description="Vanishing gradients: the size of each layer's gradient at initialization and after "
        "training, for deep sigmoid and ReLU networks, with their training curves; each "
        "activation starts from its own initialization (He for ReLU, LeCun for sigmoid).",
    )
    _common(p)
    p.add_argument(
        "--depths",
        default="5,10,20",
        help=f"comma-separated numbers of hidden layers, at most 10 of them (default 5,10,20; each {LAYERS.describe()})",
    )
    add_number(p, "--epochs", Bounds(0, EPOCHS.high), 5, "training epochs, 0 = initialization only")
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
    add_number(p, "--small", BATCH, 16, "small batch size, at most the training split (1257 digits)")
    add_number(p, "--large", BATCH, 512, "large batch size, at most the training split (1257 digits)")
    add_number(
        p,
        "--updates",
        UPDATES,
        1560,
        "optimizer steps for each batch size (1560: 20 epochs of batch 16, 780 of batch 512)",
    )
    add_number(p, "--seeds", SEEDS, 3, "seeds, starting at --seed")
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
    add_number(p, "--seeds", SEEDS, 3, "seeds (split and initialization), from --seed")
    add_number(p, "--epochs", EPOCHS, 30, "epochs per run, 9 updates each (30: 270 updates)")
    add_number(p, "--scale-seed", SEED, 0, "seed of the fixed draw of feature scales u_j, kept across --seed values")
    p.set_defaults(run=_run_conditioning)

    p = sub.add_parser(
        "schedules",
        help="plot every learning-rate schedule in jol.schedules",
        description="Plot each learning-rate schedule of jol.schedules over one run.",
    )
    _common(p)
    add_number(p, "--steps", SCHEDULE_STEPS, 1000, "length of the run in updates")
    p.set_defaults(run=_run_schedules)
