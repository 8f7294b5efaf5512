"""Semi-supervised learning (seed 000): 100 labeled digits plus 800 unlabeled ones.

Entropy minimization pushes the network to be confident on the unlabeled pool; graph
smoothness asks neighbouring inputs to get similar outputs. Both are trainer terms.

Run: python examples/semi_supervised.py [--small]
"""

import functools

from _small import small

import jaxopt_lectures as jol
from jaxopt_lectures.lab import MLP, load_digits, train


def main():
    ds = load_digits(seed=0, train_size=100, unlabeled_size=800)
    epochs = 2 if small() else 30
    model_fn = functools.partial(MLP, (64, 64, 64, 10))
    h = train(
        model_fn,
        ds,
        jol.adam(1e-3),
        epochs,
        32,
        seeds=(0,),
        hparams={"entropy_weight": 0.0, "graph_weight": 0.0},
        configs=[{}, {"entropy_weight": 0.3}, {"graph_weight": 1.0}],
        progress=False,
    )
    for i, name in enumerate(["labeled only", "+ entropy minimization", "+ graph smoothness"]):
        print(f"{name:24s} val loss {h.final('val_loss')[i, 0]:.3f}, val acc {h.final('val_acc')[i, 0]:.3f}")


if __name__ == "__main__":
    main()
