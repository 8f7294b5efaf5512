"""Data-parallel training on every device JAX sees, with and without ZeRO-1 optimizer state.

    python examples/data_parallel.py                 # the devices JAX finds (1 CPU here)
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py
    python examples/data_parallel.py --small         # a few seconds (CI)

The batch is split over the mesh's "data" axis; ``jit``'s SPMD partitioner averages the
gradients. The run is repeated with the optimizer state split over the devices (each keeps
1/N of m and v), and the script prints the per-device bytes of that state, measured from
the arrays' shards, and the seconds per step. Several hosts: see docs/distributed.md.
"""

import argparse
import functools
import os

import jax
import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import lab, sharding as shd
from jaxopt_lectures.lab import parallel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny model, few steps (CI)")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=512, help="hidden width of the MLP")
    args = parser.parse_args()
    small = args.small or os.environ.get("JOL_SMALL", "") not in ("", "0")
    steps, width = (3, 32) if small else (args.steps, args.width)

    if os.environ.get("JAX_COORDINATOR_ADDRESS"):  # several hosts: docs/distributed.md
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    mesh = shd.data_mesh()
    n = mesh.shape[shd.DATA_AXIS]
    batch = max(n, args.batch_size // n * n)
    data = lab.load_digits(seed=0)
    model = (
        functools.partial(lab.MLP, (64, width, width, 10))
        if args.model == "mlp"
        else functools.partial(lab.CNN, (8, 8, 1), 10)
    )
    opt = jol.adamw(1e-3, weight_decay=1e-2)
    print(
        f"{jax.process_count()} process(es), {n} device(s) {jax.devices()[0].platform}; "
        f"{args.model}, batch {batch}, {steps} steps"
    )

    for zero in (False, True):
        res = parallel.train_data_parallel(model, data, opt, steps, batch, mesh=mesh, shard_optimizer_state=zero)
        per_device = shd.per_device_bytes(res.state.opt_state)
        total = sum(leaf.nbytes for leaf in jax.tree.leaves(res.state.opt_state))
        print(
            f"  optimizer state {'split (ZeRO-1)' if zero else 'replicated   '}: "
            f"{max(per_device.values()) / 1024:8.1f} KiB per device (whole state {total / 1024:.1f} KiB); "
            f"loss {res.losses[0]:.3f} -> {res.losses[-1]:.3f}; "
            f"{1e3 * res.step_seconds:.2f} ms/step"
        )
    assert np.isfinite(res.losses).all()


if __name__ == "__main__":
    main()
