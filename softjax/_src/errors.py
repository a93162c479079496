"""Error translation at the public entry points: what JAX reports, said in softjax's terms."""

from __future__ import annotations

import functools


def reverse_only(fn, *args, **kwargs):
    """`fn(*args)` of the hard path, with a clear message where forward-mode
    differentiation meets its custom backward passes."""
    try:
        return fn(*args, **kwargs)
    except TypeError as e:
        if "custom_vjp" in str(e):
            raise TypeError(
                'visibility="hard" (sj.rasterize, sj.antialias) supports reverse-mode '
                "derivatives (jax.grad, jax.vjp, jax.jacrev) only: parts of it define their "
                "own backward pass. For forward-mode derivatives (jax.jvp, jax.jacfwd, "
                'jax.hessian) render with visibility="soft", method="dense".'
            ) from e
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
