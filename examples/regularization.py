"""Regularization (seed 004): L2 in the loss, decoupled weight decay (AdamW), L1, early stopping.

Trains one wide MLP on MNIST-1D (where it overfits) under each regularizer, all runs in one
vmapped program per optimizer, and prints the training and validation loss.

Run: python examples/regularization.py [--small]
"""

import functools

from _small import small

import jaxopt_lectures as jol
from jaxopt_lectures.lab import MLP, load_mnist1d, train


def main():
    ds = load_mnist1d(1000 if small() else 4000, seed=0)
    epochs = 2 if small() else 30
    model_fn = functools.partial(MLP, (40, 64, 64, 10) if small() else (40, 256, 256, 10))
    # The trainer's own hyper-parameters (l2, l1) vary per configuration without recompiling.
    h = train(
        model_fn,
        ds,
        jol.adam(1e-3),
        epochs,
        64,
        seeds=(0,),
        hparams={"l2": 0.0, "l1": 0.0},
        configs=[{}, {"l2": 1e-3}, {"l1": 1e-4}],
        progress=False,
    )
    for i, name in enumerate(["none", "L2 in the loss (λ = 1e-3)", "L1 in the loss (λ = 1e-4)"]):
        print(f"{name:28s} train {h.final('train_loss')[i, 0]:.3f}  val {h.final('val_loss')[i, 0]:.3f}")
    h = train(model_fn, ds, jol.adamw(1e-3, weight_decay=1e-2), epochs, 64, seeds=(0,), progress=False)
    print(
        f"{'AdamW (decoupled, 1e-2)':28s} train {h.final('train_loss')[0, 0]:.3f}  val {h.final('val_loss')[0, 0]:.3f}"
    )
    h = train(model_fn, ds, jol.adam(1e-3), epochs, 64, seeds=(0,), early_stopping_patience=3, progress=False)
    print(
        f"{'early stopping (patience 3)':28s} best epoch {int(h.best_epoch[0, 0]) + 1}, "
        f"val {h.final('val_loss')[0, 0]:.3f}"
    )


if __name__ == "__main__":
    main()
