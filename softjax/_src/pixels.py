"""The pixel-centre convention, written once: where pixel (i, j) sits in screen units.

Pixel (i, j) has its centre at NDC x = (2j+1)/W - 1, y = 1 - (2i+1)/H, x then scaled by W/H
into the isotropic screen units (NDC-y) that distances are measured in. Every path (dense,
tiled, z-buffer, fragments, antialiasing) reads its pixel centres from here, so all of them
see bit-identical centres."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def pixel_axes(image_size: tuple[int, int], rows: int, cols: int, first_row: int = 0):
    """Screen y of pixel rows `first_row .. first_row + rows - 1` and x of columns
    `0..cols-1` (numpy float64).

    Pixel (i, j) has its centre at NDC x = (2j+1)/W - 1, y = 1 - (2i+1)/H; x is then scaled by
    W/H into the isotropic screen units used for distances. `rows`/`cols` may run past the
    image (the tiled path pads to whole tiles); every caller uses this one formula so that all
    paths see bit-identical pixel centres. Rows past the image's edges (`first_row` < 0, or
    past H) continue the formula.
    """
    h, w = image_size
    y = 1 - (2 * np.arange(first_row, first_row + rows) + 1) / h
    x = ((2 * np.arange(cols) + 1) / w - 1) * (w / h)
    return y, x


def pixel_centers(image_size: tuple[int, int], dtype) -> jax.Array:
    """Screen xy of every pixel centre, `(H * W, 2)` in row-major order (see `pixel_axes`).

    Built by broadcasting the two axes inside the program: an image-sized constant would be
    embedded in the compiled code (at 1024x1024, 8 MB of literal that the compiler copies
    several times)."""
    h, w = image_size
    y, x = pixel_axes(image_size, h, w)
    xx = jnp.broadcast_to(jnp.asarray(x, dtype)[None, :], (h, w))
    yy = jnp.broadcast_to(jnp.asarray(y, dtype)[:, None], (h, w))
    return jnp.stack([xx.reshape(-1), yy.reshape(-1)], axis=-1)


def shifted(x, di: int, dj: int, fill):
    """`x (..., H, W)` at pixel (i + di, j + dj), `fill` past the image's edge."""
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(max(-di, 0), max(di, 0)), (max(-dj, 0), max(dj, 0))]
    x = jnp.pad(x, pad, constant_values=fill)
    return x[..., max(di, 0) : max(di, 0) + h, max(dj, 0) : max(dj, 0) + w]
