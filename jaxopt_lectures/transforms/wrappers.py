"""Wrappers that change *when* or *on what* an inner transformation runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from .._core import (
    FlatTree,
    GradientTransformation,
    MaskedNode,
    check_integer,
    check_same_shapes,
    check_same_structure,
    check_state,
    safe_increment,
    tree_zeros_like,
)
from .regularization import Mask, resolve_mask

# --- masked -------------------------------------------------------------------------------


class MaskedState(NamedTuple):
    """``inner_state``: the state of the wrapped transformation, on the masked leaves only."""

    inner_state: Any


def _select(tree, keep):
    """The leaves ``keep`` selects; a per-element mask keeps the leaf with zeros elsewhere
    (so that a global norm inside sees only the selected elements)."""

    def pick(x, k):
        if k is True:
            return x
        if k is False:
            return MaskedNode()
        return jnp.where(k, x, jnp.zeros_like(x))

    return jax.tree.map(pick, tree, keep)


def masked(inner: GradientTransformation, mask: Mask) -> GradientTransformation:
    """Runs ``inner`` only on the leaves where ``mask`` is True; the others pass through.

    ``mask`` is a bool pytree like the params, or a prefix of it (a bool at an inner node
    applies to its whole subtree, as in optax), or a callable ``params -> bool pytree``; a
    leaf may also be a bool array (per element: the inner transformation then sees the
    leaf with zeros where the mask is False, and its updates are used where it is True).
    An array flag, even a 0-d one like ``jnp.all(p > 0)``, is per element: a mask computed
    from the values then steps alike eager and under ``jit``. Only for Python bools does the
    inner state hold nothing for the left-out leaves (an integer leaf left out is fine).
    """
    tx = inner
    if mask is None:
        raise ValueError("masked: mask=None would select nothing explicit; pass a bool pytree or a callable")

    def init(params):
        keep = resolve_mask(mask, params, "masked")
        return MaskedState(inner_state=tx.init(_select(params, keep)))

    def update(grads, state, params=None, **extra):
        check_state(state, MaskedState, "masked")
        keep = resolve_mask(mask, grads if params is None else params, "masked")
        check_same_structure(grads, keep, "grads", "mask")
        inner_params = None if params is None else _select(params, keep)
        inner_updates, inner_state = tx.update(_select(grads, keep), state.inner_state, inner_params, **extra)
        if params is not None:
            check_same_shapes(grads, params, "grads", "params")
        merged = jax.tree.map(
            lambda g, u, k: (u if k else g) if isinstance(k, bool) else jnp.where(k, u, g),
            grads,
            inner_updates,
            keep,
            is_leaf=lambda x: isinstance(x, MaskedNode),
        )
        return merged, MaskedState(inner_state=inner_state)

    return GradientTransformation(init, update)


# --- apply_if_finite ----------------------------------------------------------------------


class ApplyIfFiniteState(NamedTuple):
    """``notfinite_count``: consecutive skipped steps; ``last_finite``: was the last step kept;
    ``total_notfinite``: all skipped steps so far."""

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


def _float_leaves(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]


def all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]).all()


def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int) -> GradientTransformation:
    """Skips a step whose gradients, updates or new inner state hold NaN or Inf: zero
    update, inner state unchanged.

    This is the guard against exploding gradients in the adaptive rules: without it one
    gradient with ``g² = inf`` makes Adam's ``v`` infinite for good and freezes that
    coordinate; with it the step is skipped and the moments stay finite. NaN made inside
    the optimizer (a NaN schedule value) is caught too. After more than
    ``max_consecutive_errors`` bad steps in a row the step is applied anyway, so a run
    that truly diverged shows NaNs instead of silently stalling.
    """
    tx = inner
    check_integer("max_consecutive_errors", max_consecutive_errors, 0, owner="apply_if_finite")

    def init(params):
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros([], jnp.int32),
            last_finite=jnp.array(True),
            total_notfinite=jnp.zeros([], jnp.int32),
            inner_state=tx.init(params),
        )

    def update(grads, state, params=None, **extra):
        check_state(state, ApplyIfFiniteState, "apply_if_finite")
        updates, inner = tx.update(grads, state.inner_state, params, **extra)
        ok = all_finite(grads) & all_finite(updates) & all_finite(_float_leaves(inner))
        bad_count = jnp.where(ok, 0, safe_increment(state.notfinite_count)).astype(jnp.int32)
        apply = ok | (bad_count > max_consecutive_errors)
        updates = jax.tree.map(lambda u: jnp.where(apply, u, jnp.zeros_like(u)), updates)
        inner = jax.tree.map(lambda new, old: jnp.where(apply, new, old), inner, state.inner_state)
        return updates, ApplyIfFiniteState(
            notfinite_count=bad_count,
            last_finite=ok,
            total_notfinite=jnp.where(ok, state.total_notfinite, safe_increment(state.total_notfinite)),
            inner_state=inner,
        )

    return GradientTransformation(init, update)


# --- accumulate_gradients -----------------------------------------------------------------


class AccumulateState(NamedTuple):
    """``mini_step``: micro-batches seen since the last real update (0..k−1);
    ``acc_grads``: their running sum; ``inner_state``: the wrapped optimizer's state;
    ``every_k``: the ``k`` that made the state (an int32 scalar), so that a state is not
    stepped by another ``k`` silently (``None`` in a state built by hand: not checked)."""

    mini_step: jax.Array
    acc_grads: Any
    inner_state: Any
    every_k: Any = None


def accumulate_gradients(
    tx: GradientTransformation, every_k: int, *, accumulator_dtype: DTypeLike | None = None
) -> GradientTransformation:
    """One update of ``tx`` per ``every_k`` micro-batches, on their mean gradient.

    Between real updates the returned updates are zero and ``tx``'s state is unchanged,
    so ``k`` micro-batches of size ``B`` follow the same path as one batch of ``k·B``.
    The running sum is kept in ``accumulator_dtype``; by default in the parameters' dtype
    promoted to at least float32 (bfloat16 parameters accumulate in float32, as
    ``optax.MultiSteps`` does), and the mean is cast back to the parameters' dtype.
    """
    check_integer("every_k", every_k, 1, owner="accumulate_gradients")
    acc_dtype = None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)

    def acc_zeros(params):
        def leaf(p):
            d = acc_dtype or jnp.promote_types(jnp.result_type(p), jnp.float32)
            return jnp.zeros_like(p, dtype=d)  # zeros_like keeps the parameter's sharding

        return jax.tree.map(leaf, params)

    def init(params):
        return AccumulateState(
            mini_step=jnp.zeros([], jnp.int32),
            acc_grads=acc_zeros(params),
            inner_state=tx.init(params),
            every_k=jnp.asarray(every_k, jnp.int32),
        )

    def update(grads, state, params=None, **extra):
        check_state(state, AccumulateState, "accumulate_gradients")
        _check_accumulate_state(state, every_k)
        check_same_structure(grads, state.acc_grads, "grads", "state.acc_grads")
        check_same_shapes(grads, state.acc_grads, "grads", "state.acc_grads")
        acc = jax.tree.map(lambda a, g: (a + g).astype(a.dtype), state.acc_grads, grads)
        # ``>=``, not ``==``: a state whose ``mini_step`` is past this ``k`` (one that escaped
        # the concrete check above, under ``jit``) steps now on the mean of all it holds,
        # instead of counting on forever without an update.
        seen = state.mini_step + 1
        last = seen >= every_k

        def real_step(_):
            n = jnp.maximum(seen, every_k)  # == every_k on every state this k made

            def mean_of(a, g):
                return (a / n.astype(a.dtype)).astype(_mean_dtype(g, a))

            mean = jax.tree.map(mean_of, acc, grads)
            updates, inner = tx.update(mean, state.inner_state, params, **extra)
            return updates, inner, tree_zeros_like(acc)

        def wait(_):
            return tree_zeros_like(grads), state.inner_state, acc

        updates, inner, acc = jax.lax.cond(last, real_step, wait, None)
        mini = jnp.where(last, 0, seen).astype(jnp.int32)
        # The state now belongs to this k (it could differ only on an empty accumulation).
        made_by = None if state.every_k is None else jnp.full_like(state.every_k, every_k)
        return updates, AccumulateState(mini_step=mini, acc_grads=acc, inner_state=inner, every_k=made_by)

    return GradientTransformation(init, update)


def _check_accumulate_state(state: AccumulateState, every_k: int) -> None:
    """Refuses, outside ``jit``, a state whose ``mini_step`` is outside ``[0, every_k)``
    (``set_state_field(state, "mini_step", 5)`` with ``k = 2``), and a state made with
    another ``every_k`` that holds micro-batches of an unfinished cycle (its sum belongs to
    that cycle). A state of another ``k`` saved right after an update (``mini_step`` 0, an
    empty sum) resumes correctly and is accepted. Traced values pass: the update then
    steps at ``mini_step >= every_k − 1`` on the mean of what the state holds."""
    mini = state.mini_step
    steps = None if isinstance(mini, jax.core.Tracer) else np.asarray(mini).reshape(-1)
    made = state.every_k
    if steps is not None and made is not None and not isinstance(made, jax.core.Tracer):
        made_ks = sorted(set(np.asarray(made).reshape(-1).tolist()))
        if made_ks and made_ks != [every_k] and steps.size and steps.max() > 0:
            shown = made_ks[0] if len(made_ks) == 1 else made_ks
            raise ValueError(
                f"accumulate_gradients(every_k={every_k}) got a state made with every_k={shown} "
                f"that holds {int(steps.max())} micro-batches of an unfinished cycle of {shown}; "
                f"step it with every_k={shown} until its next update (mini_step 0), then change k"
            )
    if steps is not None and steps.size and (steps.min() < 0 or steps.max() >= every_k):
        bad = int(steps.max()) if steps.max() >= every_k else int(steps.min())
        raise ValueError(
            f"accumulate_gradients(every_k={every_k}) got a state with mini_step={bad}; "
            f"allowed: integers in [0, {every_k - 1}] (micro-batches seen since the last update)"
        )


def _mean_dtype(g, acc):
    """The mean gradient's dtype: the gradient's (float or complex), else the accumulator's."""
    d = jnp.result_type(g)
    return d if jnp.issubdtype(d, jnp.inexact) else acc.dtype


# --- inject_hyperparams -------------------------------------------------------------------


class InjectHyperparamsState(NamedTuple):
    """``hyperparams``: a dict of scalar arrays (read them for logging, change them with
    ``set_state_field``); ``count``: steps made (the argument of scheduled ones);
    ``made_with``: the values the optimizer was built with, in the order of the sorted
    names (NaN for a schedule), so that a state is not stepped by an optimizer built with
    other values (``()`` in a state built by hand: not checked)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; it shadows tuple.count
    hyperparams: dict
    inner_state: Any
    made_with: tuple = ()


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: DTypeLike | None = None,
) -> Callable[..., GradientTransformation]:
    """Moves a factory's numeric hyper-parameters into the optimizer state.

    ``inject_hyperparams(adam)(learning_rate=1e-3, b1=0.9)`` behaves like ``adam(...)``,
    but ``state.hyperparams["learning_rate"]`` is an array: it can be logged, and changed
    between steps (``set_state_field(state, "learning_rate", 1e-4)``) without recompiling.
    A hyper-parameter given as a schedule ``count -> value`` is evaluated each step and
    its current value stored. Floats, float arrays and schedules are injected, and so are
    Python integers given for a hyper-parameter whose default is a float or that has no
    default (``sgd(learning_rate=1)``); integer arguments with an integer default, strings,
    booleans, masks and names in ``static_args`` stay fixed. Injected values are stored in
    ``hyperparam_dtype`` (default float32, so that ``1 − β2`` is not rounded away in a
    bfloat16 model; optax's default is the parameters' highest dtype).
    """
    factory = inner_factory
    if isinstance(static_args, str):
        static_args = (static_args,)
    hp_dtype = jnp.float32 if hyperparam_dtype is None else jnp.dtype(hyperparam_dtype)
    sig = inspect.signature(factory)

    def wrapped(*args, **kwargs) -> GradientTransformation:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        all_args = dict(bound.arguments)
        factory(**all_args)  # validates Python-scalar hyper-parameters now, at construction

        def numeric(name, v):
            if name in static_args or isinstance(v, bool):
                return False
            if isinstance(v, (float, np.floating)):
                return True
            if isinstance(v, (int, np.integer)):
                default = sig.parameters[name].default
                return default is inspect.Parameter.empty or isinstance(default, float)
            if isinstance(v, (jax.Array, np.ndarray)):
                return jnp.issubdtype(v.dtype, jnp.floating)
            return callable(v) and name != "mask" and _is_schedule(v)

        dynamic = {k: v for k, v in all_args.items() if numeric(k, v)}
        static = {k: v for k, v in all_args.items() if k not in dynamic}
        try:  # and again as they will be stored: b2=0.999 is 1.0 in bfloat16
            factory(**static, **{k: v if callable(v) else jnp.asarray(v, hp_dtype) for k, v in dynamic.items()})
        except ValueError as err:
            raise ValueError(
                f"{wrapped.__name__}: {err}, once stored in hyperparam_dtype={jnp.dtype(hp_dtype).name}; "
                "pass a wider hyperparam_dtype (the default float32), or name the argument in static_args"
            ) from None

        def values_at(count, hyperparams):
            out = dict(hyperparams)
            for k, v in dynamic.items():
                if callable(v):
                    out[k] = jnp.asarray(v(count), hp_dtype)
            return out

        names = sorted(dynamic)

        def made_with():
            return tuple(jnp.asarray(np.nan if callable(dynamic[k]) else dynamic[k], hp_dtype) for k in names)

        def init(params):
            count = jnp.zeros([], jnp.int32)
            hp = {k: jnp.asarray(v(count) if callable(v) else v, hp_dtype) for k, v in dynamic.items()}
            inner = factory(**static, **hp).init(params)
            return InjectHyperparamsState(count=count, hyperparams=hp, inner_state=inner, made_with=made_with())

        def update(grads, state, params=None, **extra):
            check_state(state, InjectHyperparamsState, wrapped.__name__)
            own = made_with() if len(state.made_with) else ()
            hyperparams = _check_injected_state(state, names, own, wrapped.__name__)
            hp = values_at(state.count, hyperparams)
            inner_tx = factory(**static, **hp)
            updates, inner = inner_tx.update(grads, state.inner_state, params, **extra)
            new = InjectHyperparamsState(safe_increment(state.count), hp, inner, own)
            return updates, new

        return GradientTransformation(init, update)

    wrapped.__doc__ = f"{factory.__name__} with hyper-parameters in the state.\n\n{factory.__doc__ or ''}"
    wrapped.__name__ = f"injected_{factory.__name__}"
    return wrapped


def _check_injected_state(state: InjectHyperparamsState, names: list, own: tuple, owner: str) -> dict:
    """The state's hyper-parameters, after checking it was made by an optimizer built like
    this one. Another set of injected names is refused (a name missing from the state would
    silently take the factory's default). A value built otherwise (``learning_rate=1e-2``
    where this optimizer has ``1e-3``) is refused outside ``jit``, naming both: the state's
    stored value would silently win over the configuration. Under ``jit`` (traced values)
    the configuration's value is used instead. Values changed with ``set_state_field`` are
    not a different build (``made_with`` keeps the build's values) and stay in effect."""
    if sorted(state.hyperparams) != names:
        raise ValueError(
            f"{owner} got a state whose injected hyper-parameters are {sorted(state.hyperparams)} where "
            f"this optimizer injects {names}; was it made by this optimizer's init (same static_args)?"
        )
    if not own:  # a state built by hand, without made_with
        return state.hyperparams
    if len(state.made_with) != len(names):
        raise ValueError(f"{owner}: the state's made_with has {len(state.made_with)} entries for {len(names)} names")
    hyperparams = dict(state.hyperparams)
    for name, saved, mine in zip(names, state.made_with, own):
        if not isinstance(saved, jax.core.Tracer) and not isinstance(mine, jax.core.Tracer):
            a, b = np.asarray(saved), np.asarray(mine)
            if not np.array_equal(a, np.broadcast_to(b, a.shape), equal_nan=True):

                def shown(x):
                    x = np.unique(x)
                    return "a schedule" if np.isnan(x).all() else ", ".join(f"{v:g}" for v in x.tolist())

                raise ValueError(
                    f"{owner}: this state was made by an optimizer built with {name}={shown(a)}; this one "
                    f"is built with {name}={shown(b)}, and the state holds the values in use. Build the "
                    "optimizer as before (change a running value with set_state_field), or start from this "
                    "optimizer's init"
                )
            continue
        same = (saved == mine) | (jnp.isnan(saved) & jnp.isnan(mine))
        hyperparams[name] = jnp.where(same, hyperparams[name], mine).astype(hyperparams[name].dtype)
    return hyperparams


def _is_schedule(f) -> bool:
    """A one-argument callable (``count -> value``), not a mask or a transformation."""
    try:
        params = [
            p
            for p in inspect.signature(f).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(params) == 1


# --- flatten ------------------------------------------------------------------------------


class FlattenState(NamedTuple):
    """``inner_state``: the wrapped transformation's state over one flat buffer per dtype;
    ``layout``: the static layout of the packed tree (a ``FlatTree`` with no buffers)."""

    inner_state: Any
    layout: Any = None


def flatten(inner: GradientTransformation) -> GradientTransformation:
    """Runs ``inner`` on one contiguous buffer per dtype instead of leaf by leaf.

    Same numbers as ``tx`` for element-wise transformations (and global-norm clipping);
    fewer, larger kernels. Masks inside ``tx`` (the default weight-decay mask of ``adamw``
    and the regularizers, ``masked``) are evaluated on the original tree and carried into
    the packed layout, so every rule keeps its meaning. Gradients are checked against the
    parameters' layout (structure and shapes, named by path) and cast to its dtypes.
    """
    tx = inner

    def init(params):
        flat = FlatTree.pack(params)
        return FlattenState(inner_state=tx.init(flat), layout=FlatTree({}, flat.spec))

    def update(grads, state, params=None, **extra):
        check_state(state, FlattenState, "flatten")
        if not isinstance(state.layout, FlatTree):
            raise ValueError("flatten: this state has no layout; was it made by flatten(...).init?")
        spec = state.layout.spec
        flat_params = None if params is None else FlatTree.pack(params, spec, "params")
        flat_grads = FlatTree.pack(grads, spec, "grads")
        flat_updates, inner = tx.update(flat_grads, state.inner_state, flat_params, **extra)
        updates = FlatTree(flat_updates.buffers, spec).unpack()
        return updates, FlattenState(inner_state=inner, layout=state.layout)

    return GradientTransformation(init, update)
