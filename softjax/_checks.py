"""Argument checks that run when values are concrete and stay silent under tracing.

Constructors call these eagerly so that a user gets a `ValueError` naming the argument at the
call site; under `jit`/`vmap`/`grad` the values are tracers and the checks are skipped (the
same inputs were already checked when the user built them outside the transformation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when `x` holds actual values (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def as_float_array(x, name: str, dtype=None):
    """Converts `x` to a floating JAX array; lists/scalars take the default float dtype.

    Raises `ValueError` for arrays of a non-floating dtype (e.g. integer vertices), which are
    almost always a mistake in the caller's data.
    """
    if isinstance(x, (jax.Array, np.ndarray)) or hasattr(x, "dtype"):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"`{name}` must have a floating dtype, got {x.dtype}")
        return jnp.asarray(x, dtype=dtype)
    arr = jnp.asarray(x, dtype=dtype)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def check_shape(x, shape: tuple, name: str) -> None:
    """`shape` uses None for a free dimension, e.g. (None, 3)."""
    ok = x.ndim == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"`{name}` must have shape {want}, got {tuple(x.shape)}")


def check_finite(x, name: str) -> None:
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"`{name}` contains NaN or infinite values")


def check_positive(x, name: str) -> None:
    if is_concrete(x) and not bool(np.all(np.asarray(x) > 0)):
        raise ValueError(f"`{name}` must be positive, got {np.asarray(x)}")
