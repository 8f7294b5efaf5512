"""Synthetic arms for the verdict's tests: a grid of learning rates with per-seed final numbers
and epoch-by-epoch curves, built from a few numbers (the layout :func:`.run._arm_result` writes)."""

import numpy as np

LR = "optimizer.learning_rate"
EPOCHS, UPE = 10, 40  # epochs and updates per epoch of every synthetic arm
SEEDS = 5


def _curve(start, end, epochs=EPOCHS):
    return list(np.geomspace(start, end, epochs))


def _acc_curve(hit_epoch, epochs=EPOCHS):
    """Training accuracy that first reaches 0.995 after ``hit_epoch`` epochs (None: never)."""
    out = []
    for e in range(1, epochs + 1):
        out.append(0.995 if hit_epoch is not None and e >= hit_epoch else 0.5 + 0.04 * e)
    return out


def point(lr, hits, train, test, val=None, test_acc=None, diverged=None, val_curve=None, acc_curves=None, curves=None):
    """One grid point: per seed the epoch the 99% target is hit, final training and test losses.
    ``curves``: per-seed epoch curves to use instead (e.g. ``{"train": ..., "test": ...}``: the
    test curve only where given, as in arms cached before it was recorded)."""
    n = len(train)
    val = list(val if val is not None else test)
    return {
        "config": {LR: lr},
        "train": list(map(float, train)),
        "val": list(map(float, val)),
        "val_acc": [0.9] * n,
        "test": list(map(float, test)),
        "test_acc": list(test_acc if test_acc is not None else [0.9] * n),
        "diverged_epoch": list(diverged if diverged is not None else [-1] * n),
        "curves": {
            "train": [_curve(1.0, t) for t in train],
            "train_acc": acc_curves or [_acc_curve(h) for h in hits],
            "val": val_curve or [_curve(1.5, v) for v in val],
            **(curves or {}),
        },
    }


def arm(points, epochs=EPOCHS):
    return {
        "fingerprint": "f",
        "program": "p",
        "grid": {LR: [p["config"][LR] for p in points]},
        "epochs": epochs,
        "updates_per_epoch": UPE,
        "input_condition": 7e6,  # badly scaled inputs: the optimizer rows' regime
        "points": points,
        "curves": {"train": {"mean": [1.0], "std": [0.0]}, "val": {"mean": [1.0], "std": [0.0]}},
    }


RNG = np.random.default_rng(0)  # module-level: each test file draws its own sequence


def noisy(level, spread=0.05, n=SEEDS, rng=None):
    return level * np.exp((RNG if rng is None else rng).normal(0, spread, n))


def four_arms(levels, spread=0.02, acc=None, seed=0):
    """The four arms of an interaction row (baseline and variant at the first level of the
    second factor, then at the second): ``levels`` their test (= validation) cross-entropies,
    each seed the same multiplicative noise for a level's two arms' η 0.01 point, plus a worse
    η 0.1 point that validation must not pick; ``acc``: their test accuracies. The noise is
    drawn from its own generator (``seed``): the same arms whatever ran before, in any worker."""
    out = []
    rng = np.random.default_rng(seed)
    for i, level in enumerate(levels):
        test = noisy(level, spread, rng=rng)
        good = point(0.01, [6] * SEEDS, noisy(0.02), test, test_acc=None if acc is None else [acc[i]] * SEEDS)
        bad = point(0.1, [6] * SEEDS, noisy(0.02), 2.0 * test, test_acc=[0.5] * SEEDS)
        out.append(arm([good, bad]))
    return out
