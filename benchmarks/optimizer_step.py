"""Time one optimizer step (ours: fused and per-leaf; optax; torch) against bytes / bandwidth.

An optimizer step is memory traffic: Adam reads θ, g, m, v and writes θ, m, v (28 bytes per
float32 parameter), SGD with momentum reads θ, g, m and writes θ, m (20 bytes). The limit
for a tree is those bytes divided by the machine's bandwidth, measured here as the in-place
``a += s·b`` rate on 50M floats (12 bytes per element; the best of JAX and torch).

Every method runs in this one process, round-robin (one call of each per round, in a
shuffled order, so load spikes hit all alike); medians and minimums over ``--repeats``
rounds; the load average is recorded before and after. "ours kernel" is the fused step with
the C++ kernel (``backend="kernel"``), "ours fused-xla" the same packed state updated by
XLA (``backend="xla"``). "ours tx-kernel"/"ours tx-xla" are those rules in the init/update
protocol (``opt.as_transformation()``, what ``nnx.Optimizer``/``TrainState`` call), stepped
like the per-leaf chain (``update`` + ``apply_updates``, state donated). Not a test:

    .venv/bin/python benchmarks/optimizer_step.py                  # full run, ~3 min
    .venv/bin/python benchmarks/optimizer_step.py --quick          # small trees, few repeats
    .venv/bin/python benchmarks/optimizer_step.py --trees mlp --repeats 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_lectures as jol
from jaxopt_lectures import _kernels
from jaxopt_lectures.fused import fused_adam, fused_adamw, fused_sgd, jit_step

LR, B1, B2, EPS, WD, BETA = 1e-3, 0.9, 0.999, 1e-8, 1e-2, 0.9
BYTES = {"adam": 28, "adamw": 28, "sgdm": 20}


# --- the trees ---------------------------------------------------------------------------


def tree_shapes(name: str) -> list[tuple[int, ...]]:
    if name == "tiny":  # 3 leaves, 100 parameters
        return [(8, 8), (32,), (4,)]
    if name == "resnet":  # ResNet-20-like (CIFAR, width 16): 59 leaves, 0.27M
        shapes = [(3, 3, 3, 16), (16,), (16,)]
        c_in = 16
        for stage in range(3):
            c = 16 * 2**stage
            for _ in range(3):
                for _ in range(2):
                    shapes += [(3, 3, c_in, c), (c,), (c,)]
                    c_in = c
        return shapes + [(64, 10), (10,)]
    if name == "mlp":  # 100 leaves, 9.8M
        widths = [784] + [443] * 49 + [10]
        out = []
        for a, b in zip(widths[:-1], widths[1:]):
            out += [(a, b), (b,)]
        return out
    if name == "big":  # one leaf, 50M
        return [(50_000_000,)]
    if name == "gpt2":  # GPT-2 small: 148 leaves, 124M (tied embedding, 12 blocks of width 768)
        d, vocab, ctx = 768, 50257, 1024
        out = [(vocab, d), (ctx, d)]
        for _ in range(12):
            out += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
        return out + [(d,), (d,)]
    raise ValueError(f"unknown tree {name!r}; choose from tiny, resnet, mlp, big, gpt2")


def torch_device() -> str:
    """Where torch runs: on the GPU when JAX runs on one (same device, fair), else the CPU."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def _torch_synced(fn):
    """``fn`` followed by a CUDA synchronize (GPU kernels are asynchronous), or ``fn`` itself."""
    import torch

    if torch_device() != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize()

    return run


def make_tree(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.1) for s in shapes]


# --- timing ------------------------------------------------------------------------------


def wait_for_quiet(max_load: float, max_wait_s: float) -> float:
    """Waits (up to ``max_wait_s``) until the 1-minute load average is below ``max_load``."""
    t0 = time.time()
    while os.getloadavg()[0] > max_load and time.time() - t0 < max_wait_s:
        time.sleep(5)
    return os.getloadavg()[0]


def bandwidth_runners(n: int):
    """``a += s·b`` on ``n`` float32, in place (JAX with donation; torch ``add_``)."""
    runners = {}
    b = jnp.full((n,), 0.5, jnp.float32)
    box = [jnp.ones((n,), jnp.float32)]
    axpy = jax.jit(lambda a, b: a + 0.5 * b, donate_argnums=0)

    def jax_axpy():
        box[0] = axpy(box[0], b)
        box[0].block_until_ready()

    runners["jax a+=s*b"] = jax_axpy
    try:
        import torch

        dev = torch_device()
        ta, tb = torch.ones(n, device=dev), torch.full((n,), 0.5, device=dev)
        runners["torch a+=s*b"] = _torch_synced(lambda: ta.add_(tb, alpha=0.5))
    except ImportError:
        pass
    return runners


def jax_runner(step, state, grads):
    """A closure that runs ``state = step(state, grads)`` and waits for it."""
    box = [jax.tree.map(jnp.copy, state)]  # the step donates (deletes) what it is given

    def run():
        box[0] = step(box[0], grads)
        jax.block_until_ready(box[0])

    run()  # compile
    run()
    return run


def make_runners(tree_name: str, optimizers: list[str], include_torch: bool):
    shapes = tree_shapes(tree_name)
    params = make_tree(shapes)
    grads = make_tree(shapes, seed=1)
    runners = {}
    kernel_ok = jax.default_backend() == "cpu" and _kernels.available()  # a CPU custom call
    if not kernel_ok:
        print(f"# no C++ kernel rows: {_kernels.unavailable_reason() or 'it runs on the CPU only'}", file=sys.stderr)

    def fused_opt(kind, backend):
        return {
            "adam": fused_adam(LR, B1, B2, EPS, backend=backend),
            "adamw": fused_adamw(LR, B1, B2, EPS, weight_decay=WD, mask=None, backend=backend),
            "sgdm": fused_sgd(LR, BETA, backend=backend),
        }[kind]

    def ours_fused(kind, backend):
        opt = fused_opt(kind, backend)
        return jax_runner(jit_step(opt), opt.init(params), grads)

    def per_leaf(tx):
        def step(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            return jol.apply_updates(p, u), s

        return jax_runner(jax.jit(step, donate_argnums=0, keep_unused=True), (params, tx.init(params)), grads)

    for kind in optimizers:
        if kernel_ok:
            runners[(kind, "ours kernel")] = ours_fused(kind, "kernel")
        runners[(kind, "ours fused-xla")] = ours_fused(kind, "xla")
        ref = {
            "adam": jol.adam(LR, B1, B2, EPS),
            "adamw": jol.adamw(LR, B1, B2, EPS, weight_decay=WD, mask=None),
            "sgdm": jol.sgd(LR, BETA),
        }[kind]
        runners[(kind, "ours per-leaf")] = per_leaf(ref)
        # the fused rule in the init/update protocol (opt.as_transformation(), for Flax), same loop
        for backend in ("kernel", "xla") if kernel_ok else ("xla",):
            runners[(kind, f"ours tx-{backend}")] = per_leaf(fused_opt(kind, backend).as_transformation())
        try:
            import optax

            otx = {
                "adam": optax.adam(LR, B1, B2, EPS),
                "adamw": optax.adamw(LR, B1, B2, EPS, weight_decay=WD),
                "sgdm": optax.sgd(LR, BETA),
            }[kind]

            def ostep(carry, g, otx=otx):
                p, s = carry
                u, s = otx.update(g, s, p)
                return optax.apply_updates(p, u), s

            runners[(kind, "optax")] = jax_runner(
                jax.jit(ostep, donate_argnums=0, keep_unused=True), (params, otx.init(params)), grads
            )
        except ImportError:
            pass
        if include_torch:
            runners.update(torch_runners(kind, shapes))
    return runners, sum(int(np.prod(s)) for s in shapes), len(shapes)


def torch_runners(kind: str, shapes):
    try:
        import torch
    except ImportError:
        return {}
    out = {}
    variants = {"fused": dict(fused=True), "foreach": dict(foreach=True)}
    for label, flags in variants.items():
        dev = torch_device()
        ps = [torch.nn.Parameter(torch.randn(s, device=dev) * 0.1) for s in shapes]
        for p in ps:
            p.grad = torch.randn(p.shape, device=dev) * 0.1
        try:
            if kind == "adam":
                opt = torch.optim.Adam(ps, LR, (B1, B2), EPS, **flags)
            elif kind == "adamw":
                opt = torch.optim.AdamW(ps, LR, (B1, B2), EPS, weight_decay=WD, **flags)
            else:
                opt = torch.optim.SGD(ps, LR, momentum=BETA, **flags)
            opt.step()
            opt.step()
        except (RuntimeError, TypeError, ValueError) as e:  # a variant this build lacks
            print(f"# torch {kind} {label}: {e}", file=sys.stderr)
            continue
        out[(kind, f"torch {label}")] = _torch_synced(opt.step)
    return out


def time_round_robin(runners: dict, repeats: int, seed: int = 0) -> dict:
    """Each round calls every runner once, in a fresh random order: a load spike hits all
    methods alike, and no method always runs right after the same one (torch's OpenMP
    threads keep spinning for a while after a call and slow whatever comes next)."""
    times = {k: [] for k in runners}
    order = list(runners)
    rng = random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for k in order:
            run = runners[k]
            t = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - t)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "n": len(v)} for k, v in times.items()}


# --- main --------------------------------------------------------------------------------


def fmt(s: float) -> str:
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trees", default="tiny,resnet,mlp,big", help="comma-separated: tiny,resnet,mlp,big,gpt2")
    ap.add_argument("--optimizers", default="adam,adamw,sgdm")
    ap.add_argument("--repeats", type=int, default=25, help="rounds (each method once per round)")
    ap.add_argument("--quick", action="store_true", help="tiny,resnet,mlp with 7 repeats")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--max-load", type=float, default=1.0, help="wait until the 1-min load is below this")
    ap.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for a quiet machine")
    ap.add_argument("--json", default="benchmarks/results/optimizer_step.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.trees, args.repeats = "tiny,resnet,mlp", 7
    trees = args.trees.split(",")
    optimizers = args.optimizers.split(",")
    include_torch = not args.no_torch
    if include_torch:
        try:
            import torch

            torch.set_num_threads(os.cpu_count() or 1)
        except ImportError:
            include_torch = False

    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "device": str(jax.devices()[0]),
            "torch_device": torch_device() if include_torch else None,
        },
        "load_before": os.getloadavg(),
        "trees": {},
    }
    result["load_after_wait"] = wait_for_quiet(args.max_load, args.max_wait)

    n_bw = 50_000_000 if "big" in trees or not args.quick else 10_000_000
    bw = time_round_robin(bandwidth_runners(n_bw), max(args.repeats, 9))
    rates = {k: 12 * n_bw / v["median_s"] for k, v in bw.items()}
    bandwidth = max(rates.values())
    result["bandwidth"] = {"elements": n_bw, "bytes_per_s": bandwidth, "by_method": rates, "timings": bw}
    print(
        f"# load {os.getloadavg()}; bandwidth {bandwidth / 1e9:.1f} GB/s "
        f"({', '.join(f'{k}: {v / 1e9:.1f}' for k, v in rates.items())}) on {n_bw:,} floats"
    )

    header = f"{'tree':<8} {'opt':<6} {'method':<15} {'median':>10} {'min':>10} {'x limit':>8} {'optax/this':>10}"
    print(header)
    for tree_name in trees:
        runners, n, leaves = make_runners(tree_name, optimizers, include_torch)
        timings = time_round_robin(runners, args.repeats)
        entry = {"params": n, "leaves": leaves, "limits_s": {}, "results": {}}
        for kind in optimizers:
            limit = BYTES[kind] * n / bandwidth
            entry["limits_s"][kind] = limit
            optax_t = timings.get((kind, "optax"), {}).get("median_s")
            for (k, method), t in timings.items():
                if k != kind:
                    continue
                row = dict(
                    t,
                    ratio_to_limit=t["median_s"] / limit,
                    optax_over_this=(optax_t / t["median_s"]) if optax_t else None,
                )
                entry["results"][f"{kind}/{method}"] = row
                print(
                    f"{tree_name:<8} {kind:<6} {method:<15} {fmt(t['median_s']):>10} {fmt(t['min_s']):>10} "
                    f"{row['ratio_to_limit']:>8.2f} {row['optax_over_this'] or float('nan'):>10.2f}"
                )
        entry["load_after"] = os.getloadavg()
        result["trees"][f"{tree_name} ({leaves} leaves, {n:,} params)"] = entry
        del runners
    result["load_after"] = os.getloadavg()
    print(f"# load after {result['load_after']}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
