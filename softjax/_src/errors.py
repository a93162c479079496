"""Error translation at the public entry points: what JAX reports, said in softjax's terms."""

from __future__ import annotations

import functools

# Why a path takes reverse-mode derivatives only, and what to use instead.
HARD_REVERSE_ONLY = (
    'visibility="hard" (and sj.antialias) supports reverse-mode derivatives '
    "(jax.grad, jax.vjp, jax.jacrev) only: parts of it define their own backward pass. For "
    'forward-mode derivatives (jax.jvp, jax.jacfwd, jax.hessian) render with visibility="soft", '
    'method="dense".'
)
TILED_REVERSE_ONLY = (
    'method="tiled" supports reverse-mode derivatives (jax.grad, jax.vjp, jax.jacrev) only: it '
    "defines its own memory-saving backward pass. For forward-mode derivatives (jax.jvp, "
    'jax.jacfwd, jax.hessian) use sj.RasterConfig(..., method="dense"), which gives the same '
    "images."
)


def reverse_only(fn, *args, why: str | None = HARD_REVERSE_ONLY, **kwargs):
    """`fn(*args, **kwargs)`, re-raising JAX's error where forward-mode differentiation meets
    a custom backward pass (`jax.custom_vjp`) as one that says `why` (None: as it is)."""
    try:
        return fn(*args, **kwargs)
    except TypeError as e:
        if why is not None and "custom_vjp" in str(e):
            raise TypeError(why) from e
        raise


_EXPLICIT_HINT = (
    "softjax renders sharded batches under JAX's automatic sharding: with a device mesh whose "
    "axes are Explicit (the default of jax.make_mesh), make the mesh with "
    "axis_types=(jax.sharding.AxisType.Auto,), or wrap the batched call in "
    "jax.sharding.auto_axes(fn, out_sharding=P('views')), or use jax.shard_map"
)


def explain_sharding_errors(fn):
    """`fn` re-raising JAX's sharding-type errors (explicit sharding mode) with the hint
    above, as the same kind of error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if type(e).__name__ != "ShardingTypeError" or _EXPLICIT_HINT in str(e):
                raise
            raise type(e)(f"{e}\n\n{_EXPLICIT_HINT}") from e

    return wrapper
