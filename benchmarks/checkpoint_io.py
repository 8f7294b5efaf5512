"""Time of one Orbax save and one restore of the lab's ResNet-20 run state.

Run: ``python benchmarks/checkpoint_io.py [--seeds 3] [--optimizer adam] [--repeat 5]``. The
state is what ``lab.train`` checkpoints every epoch for ResNet-20 (width 16, batch norm, on the
digits' 8x8x1 images): parameters, batch statistics, optimizer state, keys and counters of
every seed, stacked, plus the history arrays; its floating leaves are filled with random
values, as after training (a fresh Adam's zero moments would compress to nothing). It prints the state's bytes, the bytes on disk of
one epoch, and the median (and min) wall time of ``Checkpoints.save`` (synchronous: written,
renamed into place and hashed; the hashing alone is shown too) and ``Checkpoints.restore`` (into the fresh state's shardings).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import lab
from jaxopt_lectures.lab import checkpoints, trainer

OPTIMIZERS = {"adam": lambda: jol.adam(1e-3), "sgd-momentum": lambda: jol.sgd(0.1, momentum=0.9)}


def run_state(n_seeds: int, optimizer) -> trainer.RunState:
    model_fn = functools.partial(lab.ResNet, 20, 16)
    runs = []
    for s in range(n_seeds):
        key = jax.random.PRNGKey(s)
        params, batch_stats = trainer.init_model_state(model_fn, jax.random.fold_in(key, 0))
        runs.append(
            trainer.RunState(
                params=params,
                batch_stats=batch_stats,
                opt_state=optimizer.init(params),
                key=jax.random.fold_in(key, 1),
                step=jnp.zeros((), jnp.int32),
                active=jnp.ones((), bool),
                diverged_step=jnp.full((), -1, jnp.int32),
                best_params=None,
                best_batch_stats=None,
                best_val=jnp.full((), jnp.inf, jnp.float32),
                bad_epochs=jnp.zeros((), jnp.int32),
            )
        )
    state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *runs)
    keys = iter(jax.random.split(jax.random.PRNGKey(99), len(jax.tree.leaves(state))))
    return jax.tree.map(
        lambda a: jax.random.normal(next(keys), a.shape, a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, state
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.seeds < 1 or args.repeat < 1:
        ap.error("--seeds and --repeat must be >= 1")
    state = run_state(args.seeds, OPTIMIZERS[args.optimizer]())
    jax.block_until_ready(state)
    epochs = 100
    history = {
        name: np.full((1, args.seeds, epochs), np.nan) for name in ("train_loss", "train_acc", "val_loss", "val_acc")
    }
    n_params = sum(x.size for x in jax.tree.leaves(state.params)) // args.seeds
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    saves, restores = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ck = checkpoints.Checkpoints(Path(tmp) / "run", fingerprint={"bench": 1}, keep=2)
        for epoch in range(1, args.repeat + 1):
            t = time.perf_counter()
            ck.save(state, epoch, history)
            saves.append(time.perf_counter() - t)
        t = time.perf_counter()
        checkpoints._file_hashes(Path(tmp) / "run" / str(args.repeat))
        hashing = time.perf_counter() - t
        disk = sum(f.stat().st_size for f in (Path(tmp) / "run" / str(args.repeat)).rglob("*") if f.is_file())
        for _ in range(args.repeat):
            t = time.perf_counter()
            back, _, _ = ck.restore(state)
            jax.block_until_ready(back)
            restores.append(time.perf_counter() - t)
        ck.close()
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    print(
        f"ResNet-20 run state: {args.seeds} seeds x {n_params:,} parameters, {args.optimizer}; "
        f"jax {jax.__version__}, {jax.devices()[0].platform}"
    )
    print(f"state bytes in memory: {state_bytes:,}; one epoch on disk (with history, metadata): {disk:,}")
    print(
        f"save:    median {statistics.median(saves) * 1e3:.0f} ms, min {min(saves) * 1e3:.0f} ms "
        f"(first {saves[0] * 1e3:.0f} ms) over {args.repeat}; of which hashing the files: "
        f"{hashing * 1e3:.0f} ms"
    )
    print(
        f"restore: median {statistics.median(restores) * 1e3:.0f} ms, min {min(restores) * 1e3:.0f} ms "
        f"(first {restores[0] * 1e3:.0f} ms) over {args.repeat}"
    )


if __name__ == "__main__":
    main()
