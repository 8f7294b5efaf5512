"""Dropout (seed 004): switch units off at random while training, use them all at test time.

Trains the same wide MLP with dropout rates 0, 0.2 and 0.5 in one vmapped program
(the rate is a traced hyper-parameter) and prints the generalization gap.

Run: python examples/dropout.py [--small]
"""

import functools

from _small import small

import jaxopt_lectures as jol
from jaxopt_lectures.lab import MLP, load_mnist1d, train


def main():
    ds = load_mnist1d(1000 if small() else 4000, seed=0)
    epochs = 2 if small() else 30
    model_fn = functools.partial(MLP, (40, 64, 64, 10) if small() else (40, 256, 256, 10))
    rates = [0.0, 0.2, 0.5]
    h = train(
        model_fn,
        ds,
        jol.adam(1e-3),
        epochs,
        64,
        seeds=(0,),
        hparams={"dropout": 0.0},
        configs=[{"dropout": r} for r in rates],
        progress=False,
    )
    for i, r in enumerate(rates):
        tl, vl = h.final("train_loss")[i, 0], h.final("val_loss")[i, 0]
        print(f"dropout {r:.1f}: train loss {tl:.3f}, val loss {vl:.3f}, gap {vl - tl:.3f}")


if __name__ == "__main__":
    main()
