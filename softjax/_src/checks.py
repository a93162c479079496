"""Argument checks, one helper per idea, shared by every constructor and entry point.

Shape and dtype checks always run (shapes are static, so they work under `jit`, `vmap` and
`grad`). Checks that need values (finite, positive, index ranges, orthonormality) read them
only where that costs nothing: host data (Python numbers, lists, numpy arrays) and JAX arrays
on the CPU. Values of tracers are unknown, and reading an array that lives on an accelerator
would wait for the device and copy it to the host on every construction (an eager training
loop on a GPU would sync each step), so those are checked for shape and dtype only.
"""

from __future__ import annotations

import math
import numbers
import operator

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when `x` holds actual values (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def host_values(x):
    """`x` as a numpy array when its values can be read without a device transfer, else None
    (a tracer, or a JAX array on an accelerator)."""
    if isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, jax.Array):
        if all(d.platform == "cpu" for d in x.devices()):
            return np.asarray(x)
        return None
    return np.asarray(x)


def _kind(x) -> str:
    return type(x).__name__


def _numeric_host_array(x, name: str) -> np.ndarray:
    """A Python number or (nested) list as a numpy array of real numbers."""
    if x is None or isinstance(x, (str, bytes, dict, set)):
        raise TypeError(f"`{name}` must be an array of numbers, got {_kind(x)} {x!r:.60}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`{name}` must be a rectangular array of numbers ({e})") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"`{name}` must hold real numbers, got complex values")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be an array of numbers, got {_kind(x)} {x!r:.60}")
    return arr


def as_float_array(x, name: str, dtype=None):
    """`x` as a floating JAX array.

    Arrays (numpy, JAX, tracers) must already have a floating dtype: integer vertices are
    almost always a mistake in the caller's data. Python numbers and lists take the default
    float dtype (or `dtype`). Strings, None, complex and ragged input raise, naming `name`.
    """
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"`{name}` must have a floating dtype, got {x.dtype}")
        return jnp.asarray(x, dtype=dtype)
    arr = _numeric_host_array(x, name)
    if dtype is None:
        dtype = jnp.result_type(float)
    return jnp.asarray(arr, dtype=dtype)


def as_index_array(x, name: str, size: int, what: str):
    """Integer `(N, 3)` indices into `size` items, as int32; the range is checked where the
    values are on the host."""
    if not (hasattr(x, "dtype") and hasattr(x, "shape")):
        x = _numeric_host_array(x, name)
        if x.size == 0:
            x = x.astype(np.int32).reshape(-1, 3) if x.ndim < 2 else x.astype(np.int32)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"`{name}` must have an integer dtype, got {x.dtype}")
    check_shape(x, (None, 3), name)
    values = host_values(x) if x.shape[0] > 0 else None
    if values is not None:
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= size:
            raise ValueError(
                f"`{name}` indices must lie in [0, {size - 1}] (there are {size} {what}), "
                f"got values in [{lo}, {hi}]"
            )
    return jnp.asarray(x, dtype=jnp.int32)


def as_bool_array(x, name: str):
    """`x` as a JAX bool array: arrays must already be bool (0/1 integers or floats as a
    mask are easily a mix-up with indices or weights); lists of Python bools are accepted."""
    if not (hasattr(x, "dtype") and hasattr(x, "shape")):
        if isinstance(x, (str, bytes, dict, set)) or x is None:
            raise TypeError(f"`{name}` must be a bool array, got {_kind(x)}")
        x = np.asarray(x)
        if x.size == 0:
            x = x.astype(bool)
    if x.dtype != bool:
        raise ValueError(f"`{name}` must have dtype bool, got {x.dtype}")
    return jnp.asarray(x)


def check_shape(x, shape: tuple, name: str) -> None:
    """`shape` uses None for a free dimension, e.g. (None, 3)."""
    ok = x.ndim == len(shape) and all(
        s is None or s == d for s, d in zip(shape, x.shape, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"`{name}` must have shape {want}, got {tuple(x.shape)}")


def check_finite(x, name: str) -> None:
    values = host_values(x)
    if values is not None and not bool(np.all(np.isfinite(values))):
        raise ValueError(f"`{name}` contains NaN or infinite values")


def check_positive(x, name: str) -> None:
    values = host_values(x)
    if values is not None and not bool(np.all(values > 0)):
        raise ValueError(f"`{name}` must be positive, got {values}")


def check_rotation(x, name: str) -> None:
    """A `(3, 3)` proper rotation (orthonormal, det +1), to the input's precision."""
    values = host_values(x)
    if values is None:
        return
    r = values.astype(np.float64)
    tol = max(1e-4, 50 * float(jnp.finfo(x.dtype).eps))
    if np.abs(r @ r.T - np.eye(3)).max() > tol or np.linalg.det(r) < 0:
        raise ValueError(
            f"`{name}` must be a rotation matrix (orthonormal rows, det +1), got {r.tolist()}"
        )


def as_int(x, name: str, minimum: int | None = None) -> int:
    """An integer given as a Python or numpy integer (or a 0-d integer array); bools, floats
    and strings raise."""
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an integer, got {x!r}")
    try:
        value = operator.index(x)
    except TypeError:
        raise TypeError(f"`{name}` must be an integer, got {_kind(x)} {x!r:.60}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}")
    return value


def as_image_size(x, name: str = "image_size") -> tuple[int, int]:
    """`(H, W)` positive integers; one integer means a square image."""
    try:
        if not isinstance(x, (tuple, list, np.ndarray)) or np.ndim(x) == 0:
            h = w = as_int(x, name)
        else:
            if len(x) != 2:
                raise ValueError
            h, w = (as_int(s, name) for s in x)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be two positive integers (H, W) or one for a square image, got {x!r}"
        ) from None
    if h <= 0 or w <= 0:
        raise ValueError(f"`{name}` must be two positive integers (H, W), got {x!r}")
    return int(h), int(w)


def as_real(x, name: str, *, traced_hint: str = "") -> float:
    """A real number given as a Python or numpy scalar or a concrete 0-d array."""
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"`{name}` must be a concrete number, got a traced value. {traced_hint}")
    if isinstance(x, (bool, np.bool_)) or not (
        isinstance(x, numbers.Real) or (hasattr(x, "dtype") and np.ndim(x) == 0)
    ):
        raise TypeError(f"`{name}` must be a real number, got {_kind(x)} {x!r:.60}")
    if hasattr(x, "dtype") and not jnp.issubdtype(x.dtype, jnp.number) or jnp.iscomplexobj(x):
        raise TypeError(f"`{name}` must be a real number, got {_kind(x)} {x!r:.60}")
    return float(x)


def as_finite_real(x, name: str, *, positive: bool = False, traced_hint: str = "") -> float:
    value = as_real(x, name, traced_hint=traced_hint)
    if not math.isfinite(value) or (positive and not value > 0):
        what = "a positive finite" if positive else "a finite"
        raise ValueError(f"`{name}` must be {what} number, got {value!r}")
    return value


def as_flag(x, name: str) -> bool:
    """A bool (Python or numpy); strings such as "False" and numbers raise."""
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {_kind(x)} {x!r:.60}")
    return bool(x)


def as_choice(x, name: str, choices: tuple):
    if not isinstance(x, str) or x not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {x!r}")
    return x
