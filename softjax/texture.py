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
