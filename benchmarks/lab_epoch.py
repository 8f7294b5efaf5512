"""Wall time of one training epoch on digits: MLP, CNN and ResNet-20, 1 seed vs 3 seeds.

Run: ``python benchmarks/lab_epoch.py [--epochs 3] [--batch-size 32]``. For each model it
times ``lab.train`` with 1 seed, 3 seeds vmapped into one program, and 3 seeds stepped one
after another in a Python loop (the trainer's default for conv nets). The first epoch
includes compiling; "epoch" is the median of the later ones, including the end-of-epoch
evaluation on the whole training and validation splits.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import lab

MODELS = {
    "MLP 64-128-128-10": functools.partial(lab.MLP, (64, 128, 128, 10)),
    "CNN 16-32 conv + 64 dense": functools.partial(lab.CNN, (8, 8, 1), 10),
    "ResNet-20 (width 16, batch norm)": functools.partial(lab.ResNet, 20, 16),
}


def time_run(model_fn, data, seeds, vmap, epochs, batch_size):
    stamps = []
    start = time.perf_counter()
    lab.train(
        model_fn,
        data,
        jol.adam(1e-3),
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        vmap=vmap,
        progress=False,
        compilation_cache=False,
        on_epoch_end=lambda e, h: stamps.append(time.perf_counter()),
    )
    first = stamps[0] - start
    later = float(np.median(np.diff(stamps))) if len(stamps) > 1 else float("nan")
    return first, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    data = lab.load_digits(seed=0)
    print(
        f"digits: {len(data.x_train)} training examples, batch {args.batch_size}, "
        f"{len(data.x_train) // args.batch_size} steps per epoch"
    )
    print(f"{'model':34s} {'mode':22s} {'1st epoch (compile) s':>22s} {'epoch s':>9s}")
    for name, model_fn in MODELS.items():
        for label, seeds, vmap in (
            ("1 seed (default mode)", [0], None),
            ("3 seeds vmapped", [0, 1, 2], True),
            ("3 seeds Python loop", [0, 1, 2], False),
        ):
            first, later = time_run(model_fn, data, seeds, vmap, args.epochs, args.batch_size)
            print(f"{name:34s} {label:22s} {first:22.2f} {later:9.3f}", flush=True)


if __name__ == "__main__":
    main()
