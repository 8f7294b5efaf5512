"""Time a full training step (forward, backward, optimizer) of the lab's MLP and ResNet and
of a GPT-style transformer (``--gpt2``: at GPT-2-small size, for an accelerator).

Same model, same batch, four optimizers: our fused AdamW (θ, m, v packed, the state
donated) with the C++ kernel and with the pure-XLA update, our per-leaf ``adamw`` chain, and
``optax.adamw``, each in a jitted step with the whole carry donated. Another program computes
the loss and gradients only; the difference is the optimizer's share of the step.
Round-robin, medians/minimums, load recorded. Not a test:

    .venv/bin/python benchmarks/train_step.py            # ~2 min
    .venv/bin/python benchmarks/train_step.py --quick

The step is written here (a few lines, below) rather than taken from the lab's trainer,
whose step is internal to its vmapped multi-run loop and works on a parameter pytree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import jaxopt_lectures as jol
from jaxopt_lectures import _kernels
from jaxopt_lectures.fused import fused_adamw
from jaxopt_lectures.lab.models import MLP, ResNet

LR, WD = 1e-3, 1e-2


class Transformer(nnx.Module):
    """A GPT-style decoder (pre-norm blocks of causal self-attention and a 4x MLP, tied
    embedding) for the benchmark's language-model step: next-token cross-entropy."""

    def __init__(self, vocab: int, ctx: int, width: int, depth: int, heads: int, *, rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, width, rngs=rngs)
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (ctx, width)) * 0.02)
        self.blocks = nnx.List([_Block(width, heads, rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, rngs=rngs)

    def __call__(self, tokens, train: bool = True):
        h = self.embed(tokens) + self.pos[...][: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.embed.attend(self.norm(h))


class _Block(nnx.Module):
    def __init__(self, width: int, heads: int, rngs: nnx.Rngs):
        self.norm1, self.norm2 = nnx.LayerNorm(width, rngs=rngs), nnx.LayerNorm(width, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, width, decode=False, rngs=rngs)
        self.up, self.down = nnx.Linear(width, 4 * width, rngs=rngs), nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, h):
        x = self.norm1(h)
        h = h + self.attn(x, mask=nnx.make_causal_mask(x[..., 0]))
        return h + self.down(jax.nn.gelu(self.up(self.norm2(h))))


def models(quick: bool, gpt2: bool = False):
    mlp_widths = (784, 1024, 1024, 10) if quick else (784, 2048, 2048, 2048, 10)
    yield "mlp", lambda rngs: MLP(mlp_widths, rngs=rngs), (128, 784)
    yield "resnet20", lambda rngs: ResNet(20, 16, in_shape=(32, 32, 3), rngs=rngs), (32, 32, 32, 3)
    # GPT-2 small (124M, 12 x 768) with --gpt2 (an accelerator's size); a small one otherwise
    vocab, ctx, width, depth, heads, batch = (
        (50257, 1024, 768, 12, 12, 8) if gpt2 else (2048, 64, 128, 2, 4, 16) if quick else (8192, 128, 256, 4, 8, 16)
    )
    yield (
        ("gpt2" if gpt2 else "transformer"),
        (lambda rngs: Transformer(vocab, ctx, width, depth, heads, rngs=rngs)),
        ("tokens", batch, ctx, vocab),
    )


def build(model_fn, x_shape):
    graphdef, params, stats = nnx.split(model_fn(nnx.Rngs(0)), nnx.Param, nnx.BatchStat)
    if x_shape[0] == "tokens":  # a language model: predict token t + 1 from tokens <= t
        _, batch, ctx, vocab = x_shape
        seq = jax.random.randint(jax.random.PRNGKey(1), (batch, ctx + 1), 0, vocab)
        x, y = seq[:, :-1], seq[:, 1:]
    else:
        x = jax.random.normal(jax.random.PRNGKey(1), x_shape)
        y = jax.random.randint(jax.random.PRNGKey(2), (x_shape[0],), 0, 10)

    def loss(params, stats):
        stats = jax.tree.map(lambda a: a, stats)  # fresh Variables at this trace level (BatchNorm writes them)
        model = nnx.merge(graphdef, params, stats)
        logits = model(x, train=True)
        value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return value, nnx.state(model, nnx.BatchStat)

    grad_fn = jax.value_and_grad(loss, has_aux=True)
    return params, stats, grad_fn


def runners(model_fn, x_shape):
    params, stats, grad_fn = build(model_fn, x_shape)
    out = {}

    def donated(step, carry):
        step = jax.jit(step, donate_argnums=0, keep_unused=True)
        box = [jax.tree.map(jnp.copy, carry)]

        def run():
            box[0] = step(box[0])
            jax.block_until_ready(box[0])

        run()
        return run

    kernel_ok = jax.default_backend() == "cpu" and _kernels.available()  # the kernel is a CPU custom call
    for backend in ("kernel", "xla") if kernel_ok else ("xla",):
        fused = fused_adamw(LR, weight_decay=WD, mask=None, backend=backend)

        def fused_step(carry, fused=fused):
            state, stats = carry
            (_, stats), grads = grad_fn(state.params.unpack(), stats)
            return fused.step(state, grads), stats

        out[f"ours fused-{backend} adamw"] = donated(fused_step, (fused.init(params), stats))

    def tree_step(tx, apply):
        def step(carry):
            params, opt_state, stats = carry
            (_, stats), grads = grad_fn(params, stats)
            updates, opt_state = tx.update(grads, opt_state, params)
            return apply(params, updates), opt_state, stats

        return donated(step, (params, tx.init(params), stats))

    out["ours per-leaf adamw"] = tree_step(jol.adamw(LR, weight_decay=WD, mask=None), jol.apply_updates)
    out["optax adamw"] = tree_step(optax.adamw(LR, weight_decay=WD), optax.apply_updates)
    grads_only = jax.jit(lambda p, s: grad_fn(p, s)[1])
    grads_only(params, stats)
    out["grads only"] = lambda: jax.block_until_ready(grads_only(params, stats))
    n = sum(x.size for x in jax.tree.leaves(params))
    return out, n, len(jax.tree.leaves(params))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--gpt2", action="store_true", help="the transformer at GPT-2-small size (124M; for a GPU)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default="benchmarks/results/train_step.json")
    args = ap.parse_args(argv)
    repeats = 5 if args.quick else args.repeats
    result = {"load_before": os.getloadavg(), "models": {}}
    print(f"# load {os.getloadavg()}")
    print(f"{'model':<10} {'method':<24} {'median':>10} {'min':>10} {'optimizer share':>16}")
    for name, model_fn, x_shape in models(args.quick, args.gpt2):
        rs, n, leaves = runners(model_fn, x_shape)
        times = {k: [] for k in rs}
        for _ in range(repeats):
            for k, run in rs.items():
                t = time.perf_counter()
                run()
                times[k].append(time.perf_counter() - t)
        base = statistics.median(times["grads only"])
        entry = {"params": n, "leaves": leaves, "results": {}}
        for k, v in times.items():
            med = statistics.median(v)
            entry["results"][k] = {"median_s": med, "min_s": min(v), "optimizer_share_s": med - base}
            print(f"{name:<10} {k:<24} {med * 1e3:>8.2f}ms {min(v) * 1e3:>8.2f}ms {(med - base) * 1e3:>14.2f}ms")
        result["models"][f"{name} ({leaves} leaves, {n:,} params)"] = entry
    result["load_after"] = os.getloadavg()
    print(f"# load after {result['load_after']}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
