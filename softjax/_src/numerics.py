"""Safe elementwise operations shared by every stage.

Each helper uses the "double where" pattern: the unsafe input is replaced by a harmless value
*before* the dangerous operation, so neither the primal nor the gradient of the branch that
`jnp.where` discards can be inf or NaN (JAX differentiates both branches).
"""

from __future__ import annotations

import jax
import jax.extend
import jax.interpreters.ad
import jax.interpreters.batching
import jax.interpreters.mlir
import jax.numpy as jnp

# Geometry and blending sums in full float32. On GPUs and TPUs XLA's default matrix-product
# precision for float32 is lower (TF32 / bfloat16 passes): enough to move a vertex by 1e-3
# screen units, which flips edge pixels at a small sigma. The products here are tiny (3x3
# transforms, short colour sums), so full precision costs nothing measurable.
HIGHEST = jax.lax.Precision.HIGHEST


def matmul(a, b):
    """`a @ b` in full precision on every backend."""
    return jnp.matmul(a, b, precision=HIGHEST)


def tiny(dtype) -> float:
    """A magnitude below which a denominator counts as zero for `dtype`.

    The square root of the smallest normal number: dividing by anything larger cannot overflow
    for the O(1) numerators used here, and its square is still representable.
    """
    return float(jnp.finfo(dtype).tiny) ** 0.5


def safe_div(num, den, fallback=0.0):
    """`num / den`, or `fallback` where `|den|` is (nearly) zero; finite gradients everywhere."""
    ok = jnp.abs(den) > tiny(jnp.result_type(den))
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), fallback)


def safe_norm(x, axis: int = -1, keepdims: bool = False):
    """Euclidean norm whose gradient is 0 (not NaN) at the origin."""
    sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    ok = sq > tiny(jnp.result_type(x))
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def safe_normalize(x, axis: int = -1, fallback=None):
    """`x / |x|` along `axis`; where `|x|` is zero, returns `fallback` (broadcast) or zeros."""
    n = safe_norm(x, axis=axis, keepdims=True)
    ok = n > 0
    unit = x / jnp.where(ok, n, 1.0)
    if fallback is None:
        return jnp.where(ok, unit, 0.0)
    return jnp.where(ok, unit, jnp.asarray(fallback, dtype=unit.dtype))


def cross2(a, b):
    """z component of the cross product of 2-vectors (last axis of size 2)."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


# Differentiable min / max / clip as selects. `jnp.minimum`'s derivative rule finds the
# winner by testing `x == min(x, y)`; once XLA fuses and recomputes `x` in the backward pass
# (with different rounding, e.g. contracted multiply-adds) that test can fail for both
# arguments and the gradient silently vanishes. A select evaluates one predicate and routes
# the gradient by it, so exactly one argument receives it.
def smin(a, b):
    """Elementwise minimum whose gradient goes to the selected argument."""
    return jnp.where(a <= b, a, b)


def smax(a, b):
    """Elementwise maximum whose gradient goes to the selected argument."""
    return jnp.where(a >= b, a, b)


def sclip(x, lo, hi):
    """`clip(x, lo, hi)` built from `smin` and `smax`."""
    return smin(smax(x, lo), hi)


def _twin(tree, first):
    # The branch taken when `first < -1`, and then exactly the identity: `first < 0` holds, so
    # each leaf is multiplied by one (or and-ed with true). XLA, not knowing that, keeps the
    # branches apart; were both branches alike, it would drop the outputs from the
    # conditional and their consumers would recompute them past the boundary.
    one = first < 0
    return jax.tree.map(lambda x: x & one if x.dtype == jnp.bool_ else x * one.astype(x.dtype),
                        tree)  # fmt: skip


def _branches(first, *leaves):
    return list(jax.lax.cond(first >= -1, lambda t, k: t, _twin, leaves, first))


# The boundary as a primitive of its own, `boundary_p.bind(first, *leaves)`: lowered to the
# `cond` above, and with rules that keep it a boundary under every transformation. Under
# `vmap` the batch shares one boundary (a condition of batched values would make the `cond` a
# select, which is no boundary at all); forward mode puts the tangents behind one, and
# reverse mode the cotangents.
boundary_p = jax.extend.core.Primitive("softjax_boundary")
boundary_p.multiple_results = True
boundary_p.def_impl(_branches)
boundary_p.def_abstract_eval(lambda first, *leaves: list(leaves))
jax.interpreters.mlir.register_lowering(
    boundary_p, jax.interpreters.mlir.lower_fun(_branches, multiple_results=True)
)


def _boundary_batch(args, dims):
    first, *leaves = args
    if dims[0] is not None:  # batched (unbatched operands have no axis)
        first = jax.lax.index_in_dim(first, 0, dims[0], keepdims=False)
    return boundary_p.bind(first, *leaves), list(dims[1:])


def _differentiable(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.inexact)


def _boundary_jvp(primals, tangents):
    first, *leaves = primals
    out = boundary_p.bind(first, *leaves)
    ad = jax.interpreters.ad
    t_out = [ad.Zero(jax.typeof(x).to_tangent_aval()) for x in leaves]
    moving = [i for i, x in enumerate(leaves) if _differentiable(x)]
    if moving:
        behind = boundary_p.bind(first, *(ad.instantiate_zeros(tangents[1 + i]) for i in moving))
        for i, t in zip(moving, behind, strict=True):
            t_out[i] = t
    return out, t_out


def _boundary_transpose(cts, first, *leaves):
    ad = jax.interpreters.ad
    cts = [ad.instantiate_zeros(c) for c in cts]
    return [None, *boundary_p.bind(first, *cts)]


jax.interpreters.batching.primitive_batchers[boundary_p] = _boundary_batch
jax.interpreters.ad.primitive_jvps[boundary_p] = _boundary_jvp
jax.interpreters.ad.primitive_transposes[boundary_p] = _boundary_transpose


def materialize(tree, key):
    """`tree` computed once, in full, at this point of the program.

    XLA's CPU backend fuses an elementwise producer into each of its consumers, recomputing
    it in each (and, for a consumer that transposes it, per element): with the many planes
    that per-pixel code derives from shared values, that measured 5-20x slower than
    computing them once. A `lax.cond` is a boundary that fusion does not cross. Its
    condition, `key`'s first element (an int array, such as face indices) being at least
    -1, is not known to XLA; both branches give `tree` exactly (the second through
    arithmetic XLA does not simplify away, so that the branches differ). Under `vmap` the
    batch shares one boundary; the tangents (forward mode) and the cotangents (reverse
    mode) get the same boundary.
    """
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, boundary_p.bind(jnp.ravel(key)[0], *leaves))


def decided_once(index):
    """Integer `index` (non-negative) computed once, at this point: every consumer reads the
    same values. XLA would otherwise recompute a cheap producer inside each consumer, and a
    comparison of values equal to the last bit may come out differently in each copy (an
    optimisation barrier does not stop this: XLA's CPU backend removes barriers before
    fusing). Integers carry no gradient, so this works in forward and reverse mode."""
    return materialize(index, index) if index.size else index
