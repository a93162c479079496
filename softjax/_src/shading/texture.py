"""Texture sampling: bilinear lookups of UV texture images, differentiable in both."""

from __future__ import annotations

import jax.numpy as jnp


def sample(texture, uv, wrap: str = "clamp"):
    """Bilinear samples of `texture (Ht, Wt, C)` at `uv (2, ...)`, returned as `(C, ...)`.

    u = 0 is the image's left edge and v = 0 its bottom edge (OBJ / OpenGL); texel (i, j),
    row 0 at the top, is centred at `u = (j + 0.5) / Wt`, `v = 1 - (i + 0.5) / Ht`.
    `wrap="clamp"` repeats the border texels outside [0, 1]; "wrap" tiles the texture.
    Gradients flow to the texels (the four around each sample) and to `uv`.
    """
    h, w = texture.shape[0], texture.shape[1]
    x = uv[0] * w - 0.5  # continuous column, texel centres at integers
    y = (1.0 - uv[1]) * h - 0.5  # continuous row
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)

    def index(i, size):
        return jnp.mod(i, size) if wrap == "wrap" else jnp.clip(i, 0, size - 1)

    cols = index(x0, w), index(x0 + 1, w)
    rows = index(y0, h), index(y0 + 1, h)
    flat = texture.reshape(h * w, -1)

    def texel(r, c):
        return jnp.moveaxis(flat[r * w + c], -1, 0)  # (C, ...)

    top = texel(rows[0], cols[0]) * (1 - fx) + texel(rows[0], cols[1]) * fx
    bottom = texel(rows[1], cols[0]) * (1 - fx) + texel(rows[1], cols[1]) * fx
    return top * (1 - fy) + bottom * fy


def sample_atlas(atlas, bary, face):
    """Nearest-texel samples of a per-face texture atlas, SoftRas's surface textures.

    `atlas (F, R, R, C)` holds R x R texels per face, `bary (3, ...)` the barycentrics
    `(w0, w1, w2)` of each fragment (weights of the face's corners) and `face (...)` its face
    index; returns `(C, ...)`. With `x = floor(w0 R)` and `y = floor(w1 R)` (clipped to
    [0, R - 1]), a fragment in the lower half of its cell reads texel `[y, x]` and one in the
    upper half reads `[R - 1 - y, R - 1 - x]`, a cell outside the triangle. The R(R + 1)/2
    lower and R(R - 1)/2 upper half-cells tile the face exactly once. SoftRas's
    `(F, R * R, C)` textures are this array reshaped to `(F, R, R, C)`.

    The half is told by `w2`: the upper half is `(w0 R - x) + (w1 R - y) > 1`, which is
    `w2 R < R - 1 - x - y` since the weights sum to 1. Fragments clamped onto the edge
    opposite corner 2 (w2 = 0 exactly, w0 + w1 = 1 up to rounding) then read the lower half,
    the texel inside the face, whatever the rounding of `w0` and `w1`; summing those two
    would put every such fragment on a cell boundary.

    Gradients flow to the texels read; the lookup is piecewise constant in `bary`.
    """
    f, r = atlas.shape[0], atlas.shape[1]
    x = jnp.clip(jnp.floor(bary[0] * r), 0, r - 1).astype(jnp.int32)
    y = jnp.clip(jnp.floor(bary[1] * r), 0, r - 1).astype(jnp.int32)
    upper = bary[2] * r < (r - 1) - (x + y)
    x, y = jnp.where(upper, r - 1 - x, x), jnp.where(upper, r - 1 - y, y)
    face = jnp.clip(face, 0, f - 1)  # the tiled path's sentinel pairs (never drawn)
    flat = atlas.reshape(f * r * r, -1)
    return jnp.moveaxis(flat[(face * r + y) * r + x], -1, 0)
