"""Argument checks of the losses: shapes, dtypes and index ranges, with the likely cause in the
message."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from softjax._src.checks import as_float_array, as_int, check_shape, host_values, is_concrete


def check_shape_hinted(x, shape: tuple, name: str, hints=()) -> None:
    """`check_shape`, with the reasons a caller most likely got it wrong appended."""
    try:
        check_shape(x, shape, name)
    except ValueError as err:
        more = f" ({'; '.join(hints)})" if hints else ""
        raise ValueError(f"{err}{more}") from None


def check_broadcasts_to(x, shape: tuple, name: str) -> None:
    """`x` may stretch to `pred`'s `shape` under NumPy rules but never enlarge it: the mean
    would then count each element of `pred` several times."""
    try:
        ok = np.broadcast_shapes(x.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        hint = ""
        if name == "mask" and x.ndim and tuple(x.shape) == tuple(shape[:-1]):
            hint = " (for an (H, W, C) image pass an (H, W, 1) mask, e.g. `mask[..., None]`)"
        raise ValueError(
            f"`{name}` must have the shape of `pred` {tuple(shape)} or broadcast to it, "
            f"got {tuple(x.shape)}{hint}"
        )


def real_array(x, name: str, dtype=None):
    """`x` as a JAX array of a bool, integer or floating dtype, cast to `dtype` if given."""
    try:
        arr = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"`{name}` must be a numeric array, got {type(x).__name__}") from None
    if not (
        arr.dtype == jnp.bool_
        or jnp.issubdtype(arr.dtype, jnp.integer)
        or jnp.issubdtype(arr.dtype, jnp.floating)
    ):
        raise ValueError(f"`{name}` must be real (bool, integer or floating), got {arr.dtype}")
    return arr if dtype is None else arr.astype(dtype)


def index_array(idx, shape: tuple, name: str, size=None, what: str = ""):
    """`idx`, checked to be an integer index array of `shape` (None: any size) into `size`
    items (None: unknown); returned unconverted, so numpy input stays concrete under `jit`.

    The range is checked when `idx` is concrete: under `jit` an out-of-range gather is clamped
    to the last item instead of failing, which would give silently wrong losses.
    """
    if not hasattr(idx, "dtype"):
        idx = np.asarray(idx)
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise ValueError(f"`{name}` must have an integer dtype, got {idx.dtype}")
    check_shape(idx, shape, name)
    host = host_values(idx) if idx.size else None
    if host is None:
        return idx
    lo, hi = int(host.min()), int(host.max())
    if size is None and lo < 0:
        raise ValueError(f"`{name}` indices must be non-negative, got a minimum of {lo}")
    if size is not None and (lo < 0 or hi >= size):
        raise ValueError(
            f"`{name}` indices must lie in [0, {size - 1}] ({what}), got values in [{lo}, {hi}]"
        )
    return idx


def mesh_verts(verts, num_verts=None, built_by=None):
    """`verts` as a floating `(V, 3)` array; `num_verts` is V when a structure fixes it."""
    verts = as_float_array(verts, "verts")
    hints = []
    if built_by is not None:
        hints.append(f"`{built_by}` was built for {num_verts} vertices")
    if verts.ndim == 3:
        hints.append("these losses take one mesh: map over a batch of meshes with `jax.vmap`")
    check_shape_hinted(verts, (num_verts, 3), "verts", hints)
    return verts


def vertex_count(verts) -> str:
    return f"there are {verts.shape[0]} vertices in `verts`"


def check_structure(lap, cls, builder: str) -> None:
    # Both laplacians are NamedTuples, so a swapped one would otherwise fail on a missing field.
    if not isinstance(lap, cls):
        raise TypeError(
            f"`lap` must be a {cls.__name__} from `{builder}(faces, num_verts)`, "
            f"got {type(lap).__name__}"
        )


def faces_array(faces, num_verts=None) -> np.ndarray:
    """Concrete `(F, 3)` integer faces as int64 numpy, for the eager structure builders."""
    if not is_concrete(faces):
        raise TypeError(
            "`faces` must be concrete: build the mesh structures once, outside `jit`/`vmap`"
        )
    faces = np.asarray(faces)
    if num_verts is None:
        index_array(faces, (None, 3), "faces")
    else:
        num_verts = as_int(num_verts, "num_verts", minimum=0)
        index_array(faces, (None, 3), "faces", num_verts, f"`num_verts` is {num_verts}")
    return faces.astype(np.int64)
