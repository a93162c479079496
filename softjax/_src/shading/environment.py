"""Environment light from a latitude-longitude radiance map: its exact diffuse irradiance, and
the map pre-filtered by the GGX lobe for the split sum's specular term.

Layout (`sh.latlong_directions`): `latlong (He, We, 3)` HDR radiance, +y up; row i's centre
has polar angle `theta = pi (i + 0.5) / He` from +y, column j's centre the azimuth
`phi = 2 pi (j + 0.5) / We`; direction `(sin theta sin phi, cos theta, sin theta cos phi)`.
Each texel is a patch of constant radiance over its exact solid angle.

- Diffuse: the irradiance `E(n) = integral L(w) max(n.w, 0) dw` of the piecewise-constant
  map, not only its SH truncation. Once per render, on a grid of normals (`IRRADIANCE_ROWS`
  latitudes, at least `IRRADIANCE_COLUMNS` longitudes):
  each texel's patch split in 2 x 2, each part's integral of `w` (its moment vector, in
  closed form) dotted with n and clamped at 0 (exact for parts wholly above or below the
  horizon of n), the weights scaled so that they sum to pi (the exact value for a uniform
  map). Per shaded point: the exact irradiance of the map's SH bands 0-2 plus the rest of
  the grid's value, interpolated bilinearly (the rest is small and smooth). Against the
  exact integral this measured 1.7e-4 of the largest irradiance for random (white
  noise) maps of 16 x 32 and 2.5e-5 at 32 x 64; smooth maps do far better. O(1) per shaded
  point; per render a product in the azimuth's Fourier domain with map-independent weights
  (computed once per map size, on the host).
- Specular: the split sum's pre-filtered radiance `L_s(r, roughness)`, computed once per
  render in JAX (differentiable in the texels): for each of `ROUGHNESS_LEVELS`, each texel
  the average of the map weighted by the GGX pre-filter lobe around its direction
  (`D(h) (n.l)` with n = v = r, Karis 2013); looked up bilinearly at the reflected view
  direction (wrapping in azimuth) and linearly between roughness levels. O(levels (He We)^2)
  per render.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.checks import as_float_array, check_finite
from softjax._src.numerics import HIGHEST, matmul
from softjax._src.pytrees import Leaves
from softjax._src.shading.sh import (
    latlong_directions,
    latlong_solid_angles,
    sh_basis,
    sh_irradiance,
)

# The largest map (texels): the specular pre-filter is a (texels x texels) product per level.
MAX_TEXELS = 4096

# Roughness of the pre-filtered levels (alpha = max(roughness, 0.08)^2 as in the BRDF).
ROUGHNESS_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@jax.tree_util.register_pytree_node_class
class EnvironmentLight(Leaves):
    """Environment light as a latitude-longitude radiance map (layout in the module
    docstring): `latlong (He, We, 3)`, HDR radiance in world coordinates, +y up, of at most
    `MAX_TEXELS` (4,096) texels.

    Under `shading="flat"`, "gouraud" and "phong" it is diffuse (`kd * albedo * E(n) / pi`,
    like `SHLight`); under `shading="pbr"` diffuse and specular (split sum). Differentiable
    in the texels: a learnable environment.
    """

    _FIELDS = ("latlong",)

    def __init__(self, latlong):
        latlong = as_float_array(latlong, "latlong")
        if latlong.ndim != 3 or latlong.shape[-1] != 3 or min(latlong.shape[:2]) < 1:
            raise ValueError(f"`latlong` must have shape (He, We, 3), got {latlong.shape}")
        if latlong.shape[0] * latlong.shape[1] > MAX_TEXELS:
            raise ValueError(
                f"`latlong` of {latlong.shape[0]} x {latlong.shape[1]} texels: at most "
                f"{MAX_TEXELS:,} (for example 32 x 64 or 45 x 90; the pre-filtering costs the "
                "square of the texels per render): downsample the map (area-average its "
                "texels), or light with its SH projection, SHLight.from_environment"
            )
        check_finite(latlong, "latlong")
        self.latlong = latlong

    def __repr__(self) -> str:
        return f"EnvironmentLight(latlong shape {tuple(self.latlong.shape)})"


# The normals at which the exact irradiance is computed per render: rows of latitude, and
# at least this many columns of longitude (a multiple of the map's columns).
IRRADIANCE_ROWS, IRRADIANCE_COLUMNS = 96, 192


class Prepared(NamedTuple):
    """What per-point shading reads of an environment, computed once per render: the map's
    SH coefficients `sh (9, 3)`, the rest of the irradiance on the grid `residual (1, rows +
    2, cols, 3)` and the pre-filtered maps `prefiltered (levels, He + 2, We, 3)` (None where
    only diffuse light is wanted), each with a row for each pole (`_with_poles`)."""

    sh: jax.Array
    residual: jax.Array
    prefiltered: jax.Array | None = None


_SPLIT = 2  # each texel's patch in _SPLIT x _SPLIT parts for the irradiance


def _moments(height: int, width: int) -> np.ndarray:
    """`(3, SPLIT^2, He, We)` float64: the integral of the direction `w` over each part of
    each texel, in closed form for the patch `theta in [t0, t1], phi in [p0, p1]`: `(S(t1) -
    S(t0)) (cos p0 - cos p1)`, `(p1 - p0) (sin^2 t1 - sin^2 t0) / 2`, `(S(t1) - S(t0))
    (sin p1 - sin p0)` with `S(t) = t / 2 - sin(2 t) / 4`."""
    k = _SPLIT
    theta = np.pi * np.arange(height * k + 1) / (height * k)
    phi = 2.0 * np.pi * np.arange(width * k + 1) / (width * k)
    t0, t1 = theta[:-1, None], theta[1:, None]
    p0, p1 = phi[None, :-1], phi[None, 1:]

    def big_s(t):
        return 0.5 * t - 0.25 * np.sin(2.0 * t)

    ring = big_s(t1) - big_s(t0)
    m = np.stack([ring * (np.cos(p0) - np.cos(p1)),
                  (p1 - p0) * (np.sin(t1) ** 2 - np.sin(t0) ** 2) / 2,
                  ring * (np.sin(p1) - np.sin(p0))])  # fmt: skip
    m = m.reshape(3, height, k, width, k).transpose(0, 2, 4, 1, 3)
    return m.reshape(3, k * k, height, width)


@functools.lru_cache(maxsize=8)
def _irradiance_kernel(height: int, width: int):
    """The map-independent part of the grid's irradiance, in the azimuth's Fourier domain:
    `(rows, k, He, We // 2 + 1)` complex128, with `k` grid columns per map column.

    The weight of texel (i, j) at grid normal (g, c) depends on j and c only through
    `c - k j` (both grids are uniform in azimuth, the grid k times finer), so the grid's
    irradiance is, per grid row and column phase r, a circular convolution of the map's
    rows with that of texel (i, 0): a product in the Fourier domain."""
    k = -(-IRRADIANCE_COLUMNS // width)
    rows, cols = IRRADIANCE_ROWS, k * width
    theta = np.pi * (np.arange(rows) + 0.5) / rows
    phi = 2.0 * np.pi * (np.arange(cols) + 0.5) / cols
    n = np.stack([np.sin(theta)[:, None] * np.sin(phi), np.broadcast_to(np.cos(theta)[:, None],
                  (rows, cols)), np.sin(theta)[:, None] * np.cos(phi)])  # fmt: skip
    m = _moments(height, width)[:, :, :, 0]  # texels (i, 0): (3, parts, He)
    w = np.maximum(np.einsum("cpi,cgx->gxpi", m, n), 0.0).sum(2)  # (rows, cols, He)
    # E[g, k c' + r] = sum_i sum_j L[i, j] w[g, k (c' - j) + r, i]: per phase r, over c'.
    per_phase = w.reshape(rows, width, k, height).transpose(0, 2, 3, 1)  # (rows, k, He, We)
    # A grid normal's weights over every texel sum to pi: normalise (per row and phase: the
    # texels repeat every k grid columns).
    per_phase = per_phase * (np.pi / per_phase.sum((2, 3)))[:, :, None, None]
    return np.fft.rfft(per_phase, axis=-1)


def _grid_irradiance(latlong):
    """The exact irradiance `(3, rows, k We)` of the map at the grid's normals."""
    h, w, _ = latlong.shape
    kernel = _irradiance_kernel(h, w)
    ctype = jnp.complex128 if latlong.dtype == jnp.float64 else jnp.complex64
    spectrum = jnp.fft.rfft(latlong, axis=1)  # (He, We // 2 + 1, 3)
    product = jnp.einsum("grif,ifc->grfc", jnp.asarray(kernel, ctype), spectrum,
                         precision=HIGHEST)  # fmt: skip
    grid = jnp.fft.irfft(product, n=w, axis=2)  # (rows, k, We, 3)
    rows, k = grid.shape[:2]
    return jnp.moveaxis(grid.transpose(0, 2, 1, 3).reshape(rows, w * k, 3), -1, 0)


def _lobe_weights(dirs, solid, roughness: float):
    """`(T, T)` pre-filter weights, rows summing to 1: texel t's output averages the texels
    u with weight `D(h) (r.l) dw_u`, l = w_u, r = w_t, h halfway (so n.h = cos(angle / 2))."""
    alpha = max(roughness, 0.08) ** 2
    a2 = alpha * alpha
    # Full precision (TF32 on some GPUs would blur the smoothest lobes): cosines of texels a
    # fraction of a degree apart.
    cos = jnp.clip(matmul(dirs.T, dirs), -1.0, 1.0)  # (T_out, T_in)
    cos_half2 = 0.5 * (1.0 + cos)  # (n.h)^2
    t = cos_half2 * (a2 - 1.0) + 1.0
    w = jnp.where(cos > 0, a2 / (jnp.pi * t * t) * cos, 0.0) * solid[None, :]
    return w / jnp.sum(w, axis=1, keepdims=True)


def prepare(env: EnvironmentLight, specular: bool) -> Prepared:
    """The per-render part of shading with `env`: texel data, and with `specular` the
    pre-filtered levels."""
    latlong = env.latlong
    h, w, _ = latlong.shape
    dtype = latlong.dtype
    flat = latlong.reshape(-1, 3)
    dirs = latlong_directions(h, w, dtype).reshape(3, -1)
    solid = latlong_solid_angles(h, w, dtype).reshape(-1)
    sh = jnp.einsum("kt,tc->kc", sh_basis(dirs) * solid, flat, precision=HIGHEST)
    exact = _grid_irradiance(latlong)  # (3, rows, cols)
    grid = latlong_directions(*exact.shape[1:], dtype)
    residual = _with_poles((exact - sh_irradiance(sh, grid))[None].transpose(0, 2, 3, 1))
    if not specular:
        return Prepared(sh, residual)
    levels = [
        matmul(_lobe_weights(dirs, solid, r), flat).reshape(h, w, 3) for r in ROUGHNESS_LEVELS
    ]  # fmt: skip
    return Prepared(sh, residual, _with_poles(jnp.stack(levels)))


def irradiance(prepared: Prepared, n):
    """`E(n) (3, ...)` at unit normals `n (3, ...)` (see the module docstring)."""
    zero = jnp.zeros(n.shape[1:], jnp.int32)
    return sh_irradiance(prepared.sh, n) + _bilinear(prepared.residual, zero, n)


def _with_poles(maps):
    """`maps (L, He, We, 3)` with a row for each pole before and after: `(L, He + 2, We,
    3)`, the pole's value its nearest row's mean (what `_bilinear` looks up)."""
    count, _, w, _ = maps.shape
    poles = [jnp.broadcast_to(jnp.mean(maps[:, i], axis=1)[:, None, None], (count, 1, w, 3))
             for i in (0, -1)]  # fmt: skip
    return jnp.concatenate([poles[0], maps, poles[1]], axis=1)


def _bilinear(padded, level, d):
    """`padded (L, He + 2, We, 3)` (`_with_poles`) at the integer `level (...)` sampled at
    unit directions `d (3, ...)`: `(3, ...)`, bilinear between texel centres, wrapping in
    azimuth. Towards a pole, between the nearest row and the pole's value, so that the lookup
    is continuous there, where the azimuth is not."""
    _, h, w, _ = padded.shape
    h -= 2  # texel rows
    x, y, z = d[0], d[1], d[2]
    # Off the axis (where the azimuth is defined and atan2's gradient finite); on it, the
    # pole, whose value does not depend on the azimuth.
    rho2 = x * x + z * z
    off = rho2 > float(jnp.finfo(rho2.dtype).tiny)
    rho = jnp.sqrt(jnp.where(off, rho2, 1.0))
    theta = jnp.where(off, jnp.arctan2(rho, y), jnp.where(y < 0, jnp.pi, 0.0))
    phi = jnp.where(off, jnp.arctan2(jnp.where(off, x, 1.0), jnp.where(off, z, 1.0)), 0.0)
    phi = phi % (2.0 * jnp.pi)
    # Padded rows: the north pole, the He texel rows, the south pole.
    f = theta / jnp.pi * h - 0.5  # texel rows at 0 .. He - 1, poles at -0.5 and He - 0.5
    fy = jnp.where(f < 0, 2.0 * (f + 0.5), jnp.where(f > h - 1, h + 2.0 * (f - (h - 1)), f + 1.0))
    fx = phi / (2.0 * jnp.pi) * w - 0.5
    y0 = jnp.clip(jnp.floor(jax.lax.stop_gradient(fy)), 0, h).astype(jnp.int32)
    x0 = jnp.floor(jax.lax.stop_gradient(fx)).astype(jnp.int32)
    ty, tx = fy - y0, fx - x0
    x0w, x1w = x0 % w, (x0 + 1) % w
    flat = padded.reshape(-1, 3)

    def at(row, col):  # (3, ...)
        return jnp.moveaxis(flat[(level * (h + 2) + row) * w + col], -1, 0)

    top = at(y0, x0w) * (1 - tx) + at(y0, x1w) * tx
    bottom = at(y0 + 1, x0w) * (1 - tx) + at(y0 + 1, x1w) * tx
    return top * (1 - ty) + bottom * ty


def prefiltered_radiance(prepared: Prepared, r, roughness):
    """The split sum's pre-filtered radiance `(3, ...)` in directions `r (3, ...)` at
    `roughness (...)`: linear between the two nearest levels."""
    grid = np.asarray(ROUGHNESS_LEVELS)
    f = jnp.clip(roughness, 0.0, 1.0) / float(grid[1] - grid[0])
    i = jnp.clip(jnp.floor(jax.lax.stop_gradient(f)), 0, len(grid) - 2).astype(jnp.int32)
    t = f - i
    maps = prepared.prefiltered
    return _bilinear(maps, i, r) * (1 - t) + _bilinear(maps, i + 1, r) * t
