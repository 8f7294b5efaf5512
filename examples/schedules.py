"""Learning-rate schedules (seed 000): warm-up and decay, plugged into an optimizer.

Prints η at a few steps for each schedule and trains the lab's MLP with and without
warm-up + cosine decay. Writes schedules.png (every schedule in jol.schedules).

Run: python examples/schedules.py [--small] [--out DIR]
"""

import functools
import sys
from pathlib import Path

from _small import small

import jaxopt_lectures as jol
from jaxopt_lectures.lab import MLP, figures, load_digits, train


def main():
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else Path("figures")
    epochs = 2 if small() else 20
    ds = load_digits(seed=0, train_size=256 if small() else None)
    steps = epochs * (len(ds.x_train) // 32)
    for name, (_desc, values) in figures.schedule_curves(steps, peak=0.1).items():
        print(f"{name:20s} η at 0, T/2, T-1: {values[0]:.4f} {values[steps // 2]:.4f} {values[-1]:.4f}")
    model_fn = functools.partial(MLP, (64, 64, 10))
    for label, lr in [
        ("constant 0.1", 0.1),
        ("warm-up + cosine", jol.schedules.warmup_cosine_decay(0.0, 0.1, steps // 10, steps)),
    ]:
        h = train(model_fn, ds, jol.sgd(lr, momentum=0.9), epochs, 32, seeds=(0,), progress=False)
        print(
            f"{label:18s} final training loss {h.final('train_loss')[0, 0]:.4f}, val acc {h.final('val_acc')[0, 0]:.3f}"
        )
    print("wrote", *figures.plot_schedules(figures.schedule_curves(steps), out))


if __name__ == "__main__":
    main()
