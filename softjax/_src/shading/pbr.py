"""Radiometric shading (`shading="pbr"`): a GGX microfacet material lit by directional and
point lights, a uniform environment (`Lights.ambient`) and spherical-harmonic light.

The BRDF is nvdiffrec's (Munkberg et al., CVPR 2022; Karis, "Real Shading in Unreal Engine 4",
SIGGRAPH 2013), with `base` the surface's base colour:

    alpha = max(roughness, 0.08)^2
    D = alpha^2 / (pi ((n.h)^2 (alpha^2 - 1) + 1)^2)                   GGX distribution
    G = 1 / (1 + Lambda(n.l) + Lambda(n.v)),                           height-correlated Smith
        Lambda(c) = (sqrt(1 + alpha^2 (1 - c^2) / c^2) - 1) / 2
    F = F0 + (1 - F0) (1 - v.h)^5,  F0 = 0.04 (1 - metallic) + base metallic    Schlick
    f = base (1 - metallic) / pi + F D G / (4 (n.l) (n.v))

with the cosines n.l, n.v, n.h, v.h clamped to [1e-4, 1 - 1e-4], and, as nvdiffrec does, the
specular lobe only where n.l and n.v both exceed 1e-4. Outgoing radiance:

    L_o = sum over lights of f E_l max(n.l, 0)           E_l = intensity * color
          + base (1 - metallic) E(n) / pi + (F0 A + B) L_s(r)       environment terms

For the environments (a uniform one of radiance `ambient * ambient_color`, SH light and a
latitude-longitude map, see `environment`),
the diffuse term uses its exact irradiance `E(n)` (for a uniform radiance `La`, `pi La`), and
the specular term the split sum (Karis 2013): `A, B` integrate the specular lobe against a
uniform environment (a table over (n.v, roughness), computed once by quadrature, bilinear in
between), and `L_s` is the environment pre-filtered by the GGX lobe around the reflected view
direction `r = 2 (n.v) n - v` (Karis's n = v = r assumption): for SH light each band scaled
by the lobe's Legendre moment (a table over roughness), for a map its pre-filtered levels,
for a uniform environment `La` itself. So a white surface (base 1, metallic 0) under a
uniform environment of radiance 1 shades `1 + F0 A + B`: its Lambertian term is exactly 1.

Phong shading (`softjax.Material`) is not radiometric: its diffuse term is `kd I max(n.l, 0)`
where a Lambertian surface under the same light leaves `I max(n.l, 0) / pi`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.checks import as_float_array, check_finite, host_values
from softjax._src.numerics import safe_normalize, sclip, smax
from softjax._src.pytrees import Leaves
from softjax._src.shading.environment import irradiance as env_irradiance
from softjax._src.shading.environment import prefiltered_radiance
from softjax._src.shading.lights import dot, light_directions
from softjax._src.shading.sh import sh_eval, sh_irradiance

_COS_EPS = 1e-4
_MIN_ROUGHNESS = 0.08
_F0_DIELECTRIC = 0.04


@jax.tree_util.register_pytree_node_class
class PBRMaterial(Leaves):
    """A GGX microfacet material for `shading="pbr"` (see `softjax._src.shading.pbr`'s
    formulas, nvdiffrec's BRDF); the base colour is the mesh's colour source (vertex colours,
    UV texture or atlas; white without one).

    Args:
      roughness: perceptual roughness in [0, 1] (`alpha = max(roughness, 0.08)^2`): a scalar,
        one value per vertex `(V,)` or a texture map `(Ht, Wt)` sampled with the mesh's UVs
        like its colour texture (with `RasterConfig.texture_filter`, the mesh's
        `texture_wrap` and `uv_convention`; the mesh needs a UV texture, and under
        "pytorch3d" the map needs the texture's size).
      metallic: in [0, 1]: a scalar, `(V,)` or a texture map `(Ht, Wt)`, as `roughness`.
    """

    _FIELDS = ("roughness", "metallic")

    def __init__(self, roughness=0.5, metallic=0.0):
        dtype = None
        for name, value in (("roughness", roughness), ("metallic", metallic)):
            arr = as_float_array(value, name, dtype)
            dtype = arr.dtype
            if arr.ndim > 2 or 0 in arr.shape:
                raise ValueError(
                    f"`{name}` must be a scalar, (V,) or a texture map (Ht, Wt), got shape "
                    f"{arr.shape}"
                )
            check_finite(arr, name)
            values = host_values(arr)
            if values is not None and (np.any(values < 0) or np.any(values > 1)):
                raise ValueError(f"`{name}` must lie in [0, 1]")
            setattr(self, name, arr)


def _clamp_cos(c):
    return sclip(c, _COS_EPS, 1.0 - _COS_EPS)


def ggx_alpha(roughness):
    """`max(roughness, 0.08)^2`."""
    return smax(roughness, _MIN_ROUGHNESS) ** 2


def ggx_lobe(n_dot_l, n_dot_v, n_dot_h, alpha):
    """`D G / (4 (n.l) (n.v))` from clamped cosines (each `(...)`) and `alpha`."""
    a2 = alpha * alpha
    t = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    d = a2 / (jnp.pi * t * t)

    def lam(c):
        return 0.5 * (jnp.sqrt(1.0 + a2 * (1.0 - c * c) / (c * c)) - 1.0)

    g = 1.0 / (1.0 + lam(n_dot_l) + lam(n_dot_v))
    return d * g / (4.0 * n_dot_l * n_dot_v)


def f0_of(base, metallic):
    """Schlick's reflectance at normal incidence `(3, ...)`."""
    return _F0_DIELECTRIC * (1.0 - metallic) + base * metallic


def ggx_brdf(n, wi, v, base, roughness, metallic):
    """The BRDF `f (3, ...)` (not times n.l) for unit vectors `n`, `wi` (towards the light,
    the formulas' `l`) and `v` `(3, ...)`, base colour
    `base (3, ...)`, `roughness` and `metallic` `(...)`; every cosine clamped, no
    front-facing test (see `pbr_shade`)."""
    h = safe_normalize(wi + v, axis=0)
    nl, nv = _clamp_cos(dot(n, wi)), _clamp_cos(dot(n, v))
    nh, vh = _clamp_cos(dot(n, h)), _clamp_cos(dot(v, h))
    f0 = f0_of(base, metallic)
    fresnel = f0 + (1.0 - f0) * (1.0 - vh) ** 5
    spec = fresnel * ggx_lobe(nl, nv, nh, ggx_alpha(roughness))
    return base * (1.0 - metallic) / jnp.pi + spec


# Split-sum tables: nodes of roughness uniform on [0, 1], of n.v uniform in sqrt(n.v) (the
# integrals change fastest at grazing angles; n.v = 0 evaluated at 1e-4). The integrals are
# taken over half vectors h with density D(h) (n.h) (midpoints in the inverse-CDF variable
# u), and, for each u, over the arc of azimuths whose reflected direction lies above the
# surface (Gauss-Legendre nodes on that arc: the integrand is smooth there, and even in the
# azimuth, so half the circle suffices).
_LUT_NODES = 48
_LUT_U, _LUT_PHI, _LOBE_U = 128, 8, 4096


def _ggx_cos_h(alpha, u):
    """cos(theta_h) of GGX samples: `cos^2 = (1 - u) / (1 + (alpha^2 - 1) u)`."""
    a2 = alpha * alpha
    return np.sqrt((1.0 - u) / (1.0 + (a2 - 1.0) * u))


@functools.lru_cache(maxsize=1)
def _split_sum_table() -> np.ndarray:
    """`(n.v, roughness, 2)` float64: the split sum's `A` and `B`, `integral f_s (n.l) dl =
    F0 A + B` for the specular lobe against a uniform environment of radiance 1 (unclamped
    cosines, as the split sum's tables are made)."""
    nodes = np.linspace(0.0, 1.0, _LUT_NODES)
    mu = np.maximum(nodes**2, _COS_EPS)[:, None, None, None]  # n.v
    alpha = (np.maximum(nodes, _MIN_ROUGHNESS) ** 2)[None, :, None, None]
    a2 = alpha * alpha
    vx = np.sqrt(1.0 - mu * mu)  # v = (vx, 0, mu); n = +z

    def kappa(ch):
        # The reflected direction l = 2 (v.h) h - v is above the surface (n.l > 0) for
        # cos(phi) > kappa.
        sh = np.sqrt(np.maximum(1.0 - ch * ch, 0.0))
        return (mu / (2.0 * ch) - mu * ch) / np.maximum(vx * sh, 1e-300)

    # Half vectors beyond u_max reflect below the surface at every azimuth (kappa >= 1):
    # the midpoints cover 0 .. u_max only (found by bisection; kappa grows with u).
    lo, hi = np.zeros_like(mu * alpha), np.ones_like(mu * alpha)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        ok = kappa(_ggx_cos_h(alpha, mid)) < 1.0
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    u_max = lo
    # u = u_max (1 - t^2) with midpoints in t: the integrand falls to 0 like a square root
    # at u_max (the arc of azimuths closes there), which that substitution smooths.
    t = ((np.arange(_LUT_U) + 0.5) / _LUT_U)[None, None, :, None]
    u = u_max * (1.0 - t * t)
    ch = _ggx_cos_h(alpha, u)
    sh = np.sqrt(1.0 - ch * ch)
    phi_max = np.arccos(np.clip(kappa(ch), -1.0, 1.0))
    x, wx = np.polynomial.legendre.leggauss(_LUT_PHI)
    phi = phi_max * (0.5 * (x + 1.0))  # (..., P)
    v_dot_h = vx * sh * np.cos(phi) + mu * ch
    n_dot_l = np.maximum(2.0 * v_dot_h * ch - mu, 1e-300)

    def lam(c):
        return 0.5 * (np.sqrt(1.0 + a2 * (1.0 - c * c) / (c * c)) - 1.0)

    g = 1.0 / (1.0 + lam(n_dot_l) + lam(mu))
    # With h of density D(h) (n.h), integral F D G / (4 nl nv) nl dl has the estimator
    # F G (v.h) / ((n.v)(n.h)); the arc's share of the half circle is phi_max / pi.
    w = g * v_dot_h / (mu * ch) * (0.5 * wx) * (phi_max / np.pi)
    fc = (1.0 - np.clip(v_dot_h, 0.0, 1.0)) ** 5
    w = w * (2.0 * t * u_max)  # du = 2 u_max t dt
    a = np.mean(np.sum(w * (1.0 - fc), axis=-1), axis=-1)
    b = np.mean(np.sum(w * fc, axis=-1), axis=-1)
    return np.stack([a, b], axis=-1)


@functools.lru_cache(maxsize=1)
def _lobe_table() -> np.ndarray:
    """`(roughness, 2)` float64: the Legendre moments of bands 1 and 2 of the GGX pre-filter
    lobe around r (weight `D(h) (n.l)`, n = v = r), i.e. the factors by which it scales an SH
    radiance's bands (band 0: 1)."""
    nodes = np.linspace(0.0, 1.0, _LUT_NODES)
    alpha = (np.maximum(nodes, _MIN_ROUGHNESS) ** 2)[:, None]
    u = ((np.arange(_LOBE_U) + 0.5) / _LOBE_U)[None, :]
    ch = _ggx_cos_h(alpha, u)
    c = 2.0 * ch * ch - 1.0  # cos of the angle between l and r: twice theta_h
    w = np.maximum(c, 0.0)  # n.l, with l below the horizon left out
    p1, p2 = c, 0.5 * (3.0 * c * c - 1.0)
    total = np.sum(w, axis=1)
    return np.stack([np.sum(w * p1, 1) / total, np.sum(w * p2, 1) / total], axis=-1)


def _lerp_axis(x):
    """Node below `x` in [0, 1] (clamped) and the weight of the node above."""
    f = sclip(x, 0.0, 1.0) * (_LUT_NODES - 1)
    i = jnp.clip(jnp.floor(jax.lax.stop_gradient(f)), 0, _LUT_NODES - 2).astype(jnp.int32)
    return i, f - i


def split_sum(n_dot_v, roughness):
    """`(A, B)`, each `(...)`, of the split sum at `n_dot_v` and `roughness` (bilinear in
    the table)."""
    table = jnp.asarray(_split_sum_table(), jnp.result_type(n_dot_v))
    i, ti = _lerp_axis(jnp.sqrt(sclip(n_dot_v, _COS_EPS, 1.0)))
    j, tj = _lerp_axis(roughness)
    ti, tj = ti[..., None], tj[..., None]
    out = ((1 - ti) * ((1 - tj) * table[i, j] + tj * table[i, j + 1])
           + ti * ((1 - tj) * table[i + 1, j] + tj * table[i + 1, j + 1]))  # fmt: skip
    return out[..., 0], out[..., 1]


def lobe_moments(roughness):
    """Scale factors `(g_0, g_1, g_2)` of the SH bands for the GGX pre-filter at
    `roughness (...)`; `g_0 = 1`."""
    table = jnp.asarray(_lobe_table(), jnp.result_type(roughness))
    j, tj = _lerp_axis(roughness)
    g = (1 - tj)[..., None] * table[j] + tj[..., None] * table[j + 1]
    return (1.0, g[..., 0], g[..., 1])


def pbr_shade(base, normal, position, roughness, metallic, eye, lights, environment=None):
    """Outgoing radiance `(3, ...)` of surface points: `base (3, ...)` colour, `normal` and
    world `position` `(3, ...)` (normals normalised here; zero lights nothing but the
    uniform environment's terms), `roughness` and `metallic` `(...)`, `eye (3,)` the camera
    centre (see `shaders.viewer`), `lights` a `Lights`, `environment` its environment map
    prepared once per render (`environment.prepare(..., specular=True)`; None without one)."""
    extra = (1,) * (normal.ndim - 1)

    def col(x):  # (3,) -> (3, 1, ...)
        return x.reshape(3, *extra)

    n = safe_normalize(normal, axis=0)
    v = safe_normalize(col(eye) - position, axis=0)
    n_dot_v = dot(n, v)
    diffuse_albedo = base * (1.0 - metallic)
    f0 = f0_of(base, metallic)
    out = jnp.zeros_like(base)
    for to_light, radiance in light_directions(lights, position):
        n_dot_l = dot(n, to_light)
        f = ggx_brdf(n, to_light, v, base, roughness, metallic)
        # The specular lobe only where light and viewer are both in front (nvdiffrec's test).
        front = (n_dot_l > _COS_EPS) & (n_dot_v > _COS_EPS)
        f = jnp.where(front, f, diffuse_albedo / jnp.pi)
        out = out + radiance * f * smax(n_dot_l, 0.0)
    a, b = split_sum(sclip(n_dot_v, _COS_EPS, 1.0), roughness)
    spec_weight = f0 * a + b
    ambient = col(lights.ambient * lights.ambient_color)
    out = out + (diffuse_albedo + spec_weight) * ambient
    if lights.sh is None and environment is None:
        return out
    has_normal = dot(n, n) > 0
    r = jnp.where(has_normal, 2.0 * n_dot_v * n - v, v)  # the reflected view direction
    if lights.sh is not None:
        coeffs = lights.sh.coeffs
        irradiance = jnp.where(has_normal, sh_irradiance(coeffs, n), 0.0)
        out = out + diffuse_albedo * irradiance / jnp.pi
        out = out + spec_weight * sh_eval(coeffs, r, lobe_moments(roughness))
    if environment is not None:
        irradiance = jnp.where(has_normal, env_irradiance(environment, n), 0.0)
        out = out + diffuse_albedo * irradiance / jnp.pi
        out = out + spec_weight * prefiltered_radiance(environment, r, roughness)
    return out
