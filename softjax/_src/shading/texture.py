"""Texture sampling: nearest, bilinear, trilinear and anisotropic (mipmapped) lookups of UV
texture images, differentiable in the texels, the UVs and, when filtered, the UV derivatives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.numerics import safe_norm


def _bilinear(flat, offset, h, w, uv, wrap: str):
    """Bilinear samples of the `(h, w)` image whose texels are rows `offset ..` of `flat (N,
    C)`, at `uv (2, ...)`; `offset`, `h`, `w` are numbers or per-sample integer arrays.
    Returns `(C, ...)`. The texel convention and `wrap` are `sample`'s."""
    x = uv[0] * w - 0.5  # continuous column, texel centres at integers
    y = (1.0 - uv[1]) * h - 0.5  # continuous row
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)

    def index(i, size):
        return jnp.mod(i, size) if wrap == "wrap" else jnp.clip(i, 0, size - 1)

    cols = index(x0, w), index(x0 + 1, w)
    rows = index(y0, h), index(y0 + 1, h)

    def texel(r, c):
        return jnp.moveaxis(flat[offset + r * w + c], -1, 0)  # (C, ...)

    top = texel(rows[0], cols[0]) * (1 - fx) + texel(rows[0], cols[1]) * fx
    bottom = texel(rows[1], cols[0]) * (1 - fx) + texel(rows[1], cols[1]) * fx
    return top * (1 - fy) + bottom * fy


UV_CONVENTIONS = ("opengl", "pytorch3d", "nvdiffrast")
FILTERS = ("nearest", "linear", "trilinear", "anisotropic")
MIPMAPPED = ("trilinear", "anisotropic")  # the filters that read a pyramid and a Jacobian


def opengl_uv(uv, convention: str, h: int, w: int):
    """UVs `(..., 2)` given in another project's `convention` for an `(h, w)` image stored row
    0 first, as the OpenGL UVs (`sample`'s) that read the same point of it:
      "opengl": unchanged: texel (i, j) centred at `((j + 0.5) / w, 1 - (i + 0.5) / h)`.
      "pytorch3d": `TexturesUV`'s default (`align_corners=True` in `grid_sample` after
        flipping the image's rows): u = 0 and 1 are the centres of the first and last
        columns, v = 0 and 1 those of the last and first rows, so texel (i, j) is at
        `(j / (w - 1), 1 - i / (h - 1))`.
      "nvdiffrast": `dr.texture`'s rule on the array as given: texel (i, j) at `((j + 0.5) /
        w, (i + 0.5) / h)`, row 0 at v = 0 (an image loaded top row first shows upside down
        unless flipped, as nvdiffrec does)."""
    u, v = uv[..., 0], uv[..., 1]
    if convention == "pytorch3d":
        u = (u * (w - 1) + 0.5) / w
        v = 1.0 - ((1.0 - v) * (h - 1) + 0.5) / h
    elif convention == "nvdiffrast":
        v = 1.0 - v
    return jnp.stack([u, v], axis=-1)


def opengl_uv_scale(convention: str, h: int, w: int) -> tuple[float, float]:
    """The slopes of `opengl_uv`'s map of u and of v (it is affine in each): what UV
    derivatives are multiplied by."""
    if convention == "pytorch3d":
        return (w - 1) / w, (h - 1) / h
    return 1.0, -1.0 if convention == "nvdiffrast" else 1.0


def sample(texture, uv, wrap: str = "clamp"):
    """Bilinear samples of `texture (Ht, Wt, C)` at `uv (2, ...)`, returned as `(C, ...)`.

    u = 0 is the image's left edge and v = 0 its bottom edge (OBJ / OpenGL); texel (i, j),
    row 0 at the top, is centred at `u = (j + 0.5) / Wt`, `v = 1 - (i + 0.5) / Ht`.
    `wrap="clamp"` repeats the border texels outside [0, 1]; "wrap" tiles the texture.
    Gradients flow to the texels (the four around each sample) and to `uv`.
    """
    h, w = texture.shape[0], texture.shape[1]
    return _bilinear(texture.reshape(h * w, -1), 0, h, w, uv, wrap)


def sample_nearest(texture, uv, wrap: str = "clamp"):
    """The texel holding each `uv (2, ...)` of `texture (Ht, Wt, C)`, as `(C, ...)`: column
    `floor(u Wt)`, row `floor((1 - v) Ht)`, then `wrap` as in `sample`. Gradients flow to the
    texels read; the lookup is piecewise constant in `uv`."""
    h, w = texture.shape[0], texture.shape[1]
    col = jnp.floor(uv[0] * w).astype(jnp.int32)
    row = jnp.floor((1.0 - uv[1]) * h).astype(jnp.int32)
    if wrap == "wrap":
        col, row = jnp.mod(col, w), jnp.mod(row, h)
    else:
        col, row = jnp.clip(col, 0, w - 1), jnp.clip(row, 0, h - 1)
    return jnp.moveaxis(texture[row, col], -1, 0)


def mip_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """The sizes of the levels of an `(h, w)` texture's pyramid: each level halves the sides
    larger than 1, and the pyramid ends at 1 x 1 or at the first level with an odd side
    larger than 1 (such a level cannot be halved exactly, so it is the last)."""
    sizes = [(h, w)]
    while sizes[-1] != (1, 1) and all(s == 1 or s % 2 == 0 for s in sizes[-1]):
        sizes.append(tuple(max(s // 2, 1) for s in sizes[-1]))
    return sizes


def mipmaps(texture) -> tuple:
    """The pyramid of `texture (Ht, Wt, C)`: level 0 is the texture, and each next level's
    texel is the mean of the 2 x 2 texels it covers (of the 2 x 1 or 1 x 2 once a side is
    1). Sizes as `mip_sizes`. Differentiable: gradients at any level reach the texture."""
    levels = [texture]
    for h, w in mip_sizes(*texture.shape[:2])[1:]:
        x = levels[-1]
        c = x.shape[-1]
        x = x.reshape(h, x.shape[0] // h, w, x.shape[1] // w, c)
        levels.append(jnp.mean(x, axis=(1, 3)))
    return tuple(levels)


def level_of_detail(jacobian, h: int, w: int):
    """The mip level `lambda (...)` of samples with UV derivatives `jacobian (2, 2, ...)`
    (`[a, b]`: of u (a = 0) or v (a = 1) per pixel along x (b = 0) or y (b = 1)) on an `(h,
    w)` texture, as nvdiffrast computes it: in texels, `dX = (u_x w, v_x h)`, `dY = (u_y w,
    v_y h)`, `A = |dX|^2`, `B = |dY|^2`, `C = dX . dY`, the ellipse's major axis squared
    `(A + B) / 2 + sqrt((A - B)^2 / 4 + C^2)`, and `lambda = log2` of its square root; -inf
    for a zero Jacobian. Finite gradients everywhere (0 where the square roots have a kink)."""
    dx, dy = _texel_derivatives(jacobian, h, w)
    a, b, c = jnp.sum(dx * dx, 0), jnp.sum(dy * dy, 0), jnp.sum(dx * dy, 0)
    major2 = (a + b) / 2 + safe_norm(jnp.stack([(a - b) / 2, c]), axis=0)
    return 0.5 * _log2(major2)


def _texel_derivatives(jacobian, h: int, w: int):
    """`dX`, `dY` `(2, ...)`: the UV derivatives `jacobian (2, 2, ...)` along the pixel's x
    and y, in texels of an `(h, w)` texture."""
    return [jnp.stack([jacobian[0, b] * w, jacobian[1, b] * h]) for b in (0, 1)]


def _log2(x):
    """`log2(x)` for `x >= 0`: -inf at 0, with a zero gradient there (not NaN)."""
    return jnp.where(x > 0, jnp.log2(jnp.where(x > 0, x, 1.0)), -jnp.inf)


def _pyramid(levels):
    """A sampler `at(uv, lam)` of the pyramid `levels`: bilinear in the two levels nearest
    `lam` (clamped to [0, L - 1]), blended linearly."""
    sizes = [tuple(x.shape[:2]) for x in levels]
    c = levels[0].shape[-1]
    flat = jnp.concatenate([x.reshape(-1, c) for x in levels])
    starts = jnp.asarray(np.cumsum([0] + [h * w for h, w in sizes])[:-1], jnp.int32)
    heights, widths = (jnp.asarray([s[k] for s in sizes], jnp.int32) for k in (0, 1))

    def at(uv, lam, wrap):
        lam = jnp.clip(lam, 0, len(levels) - 1)
        l0 = jnp.floor(lam)
        t = lam - l0
        l0 = l0.astype(jnp.int32)
        l1 = jnp.minimum(l0 + 1, len(levels) - 1)

        def level(k):
            return _bilinear(flat, starts[k], heights[k], widths[k], uv, wrap)

        return level(l0) * (1 - t) + level(l1) * t

    return at


def sample_trilinear(levels, uv, jacobian, wrap: str = "clamp"):
    """Trilinear samples of the pyramid `levels` (from `mipmaps`, or any list of `(Hk, Wk,
    C)` images) at `uv (2, ...)` with UV derivatives `jacobian (2, 2, ...)`: the level of
    detail of level 0 (`level_of_detail`), clamped to [0, L - 1], is split into `l0 =
    floor`, `t` the rest and `l1 = min(l0 + 1, L - 1)`, and the bilinear samples (`sample`'s
    texel convention, each level at its own size) of those two levels blend as `(1 - t) s0 +
    t s1`. Returns `(C, ...)`; differentiable in the levels, `uv` and `jacobian`."""
    lam = level_of_detail(jacobian, *levels[0].shape[:2])
    return _pyramid(levels)(uv, lam, wrap)


def anisotropy(jacobian, h: int, w: int, max_aniso: int):
    """OpenGL's anisotropic footprint of samples with UV derivatives `jacobian (2, 2, ...)` on
    an `(h, w)` texture: with `Px`, `Py` the lengths in texels of the derivatives along the
    pixel's x and y, `Pmax` and `Pmin` their larger and smaller, the number of taps `N =
    min(ceil(Pmax / Pmin), max_aniso)` (`max_aniso` when `Pmin = 0`, 1 when `Pmax = 0`), the
    level of detail `log2(Pmax / N)` (-inf when `Pmax = 0`) and the axis the taps spread
    along, the UV derivative `(2, ...)` of the longer one. Returns `(N, lambda, axis)`."""
    px, py = (safe_norm(d, axis=0) for d in _texel_derivatives(jacobian, h, w))
    x_major = px >= py
    p_max, p_min = jnp.where(x_major, px, py), jnp.where(x_major, py, px)
    ratio = jnp.ceil(jax.lax.stop_gradient(p_max / jnp.where(p_min > 0, p_min, 1.0)))
    n = jnp.where(p_min > 0, jnp.minimum(ratio, max_aniso), max_aniso)
    n = jnp.where(p_max > 0, n, 1)
    lam = _log2(p_max / n)
    axis = jnp.where(x_major, jacobian[:, 0], jacobian[:, 1])
    return n.astype(jnp.int32), lam, axis


def sample_anisotropic(levels, uv, jacobian, max_aniso: int = 8, wrap: str = "clamp"):
    """Anisotropic samples of the pyramid `levels` at `uv (2, ...)` with UV derivatives
    `jacobian (2, 2, ...)`: the mean of `N` trilinear taps (`_pyramid`, all at the level of
    detail `lambda`; see `anisotropy`) at `uv + ((k + 0.5) / N - 0.5) axis`, k = 0 .. N - 1,
    evenly along the footprint's longer axis. Returns `(C, ...)`; differentiable in the
    levels, `uv` and `jacobian` (N is piecewise constant)."""
    n, lam, axis = anisotropy(jacobian, *levels[0].shape[:2], max_aniso)
    at = _pyramid(levels)
    count = n.astype(uv.dtype)
    total = 0.0
    for k in range(max_aniso):  # static taps; those past N weigh nothing
        offset = (k + 0.5) / count - 0.5
        tap = at(uv + offset * axis, lam, wrap)
        total = total + jnp.where(k < n, tap, 0.0)
    return total / count


def sample_filtered(image, uv, jacobian, filter: str, wrap: str = "clamp", max_aniso: int = 8):
    """Samples `(C, ...)` of `image` at `uv (2, ...)` with `filter` (one of `FILTERS`):
    `image` is an `(Ht, Wt, C)` texture, or for a mipmapped filter (`MIPMAPPED`) its pyramid,
    sampled with the UV derivatives `jacobian (2, 2, ...)` (unused by the others)."""
    if filter == "nearest":
        return sample_nearest(image, uv, wrap)
    if filter == "trilinear":
        return sample_trilinear(image, uv, jacobian, wrap)
    if filter == "anisotropic":
        return sample_anisotropic(image, uv, jacobian, max_aniso, wrap)
    return sample(image, uv, wrap)


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
