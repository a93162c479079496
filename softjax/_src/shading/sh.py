"""Spherical-harmonic lighting: an environment's radiance as nine real SH coefficients per
colour channel (bands 0-2), its exact diffuse irradiance, and its projection from a
latitude-longitude map.

Radiance `L(w) = sum_k c_k Y_k(w)` for unit world directions `w = (x, y, z)`, with the real
basis (the usual graphics ordering, Ramamoorthi and Hanrahan 2001, Sloan's "Stupid SH Tricks")

    Y = [0.282095, 0.488603 y, 0.488603 z, 0.488603 x, 1.092548 x y, 1.092548 y z,
         0.315392 (3 z^2 - 1), 1.092548 x z, 0.546274 (x^2 - y^2)]

(constants written here exactly: 1/2 sqrt(1/pi), sqrt(3/(4 pi)), 1/2 sqrt(15/pi),
1/4 sqrt(5/pi), 1/4 sqrt(15/pi)). The irradiance `E(n) = integral L(w) max(n.w, 0) dw` of
such a radiance is exact in closed form: the same sum with band l scaled by `A_l`, `(pi,
2 pi / 3, pi / 4)` (Ramamoorthi and Hanrahan, "An Efficient Representation for Irradiance
Environment Maps", SIGGRAPH 2001). A Lambertian surface of albedo `a` then leaves
`a E(n) / pi`: a uniform environment of radiance 1 (`c_0 = 1 / 0.282095`, the rest 0)
shades a white surface 1.

Arrays here are channel-first like the rest of the shading: directions `(3, ...)`, colours
`(3, ...)`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from softjax._src.checks import as_float_array, check_finite, check_shape
from softjax._src.pytrees import Leaves

_C0 = 0.5 * math.sqrt(1.0 / math.pi)
_C1 = math.sqrt(3.0 / (4.0 * math.pi))
_C2 = 0.5 * math.sqrt(15.0 / math.pi)
_C3 = 0.25 * math.sqrt(5.0 / math.pi)
_C4 = 0.25 * math.sqrt(15.0 / math.pi)

# The band of each of the nine coefficients, and the clamped-cosine kernel's factor per band.
BANDS = (0, 1, 1, 1, 2, 2, 2, 2, 2)
IRRADIANCE = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)


def sh_basis(d):
    """The nine basis functions `(9, ...)` at unit directions `d (3, ...)`."""
    x, y, z = d[0], d[1], d[2]
    return jnp.stack([
        jnp.full_like(x, _C0), _C1 * y, _C1 * z, _C1 * x, _C2 * x * y, _C2 * y * z,
        _C3 * (3.0 * z * z - 1.0), _C2 * x * z, _C4 * (x * x - y * y),
    ])  # fmt: skip


def sh_eval(coeffs, d, band_scale=(1.0, 1.0, 1.0)):
    """`sum_k s_l(k) c_k Y_k(d)`: `(3, ...)` from coefficients `coeffs (9, 3)` at unit
    directions `d (3, ...)`, band l scaled by `band_scale[l]` (a float or an array
    broadcasting against `d[0]`)."""
    y = sh_basis(d)
    out = 0.0
    for k in range(9):
        term = coeffs[k].reshape(3, *(1,) * (d.ndim - 1)) * y[k]
        out = out + band_scale[BANDS[k]] * term
    return out


def sh_irradiance(coeffs, n):
    """The exact irradiance `(3, ...)` of the radiance `coeffs (9, 3)` on surfaces with unit
    normals `n (3, ...)`: `integral L(w) max(n.w, 0) dw`."""
    return sh_eval(coeffs, n, IRRADIANCE)


def latlong_directions(height: int, width: int, dtype=jnp.float32):
    """Unit direction of each texel centre of a latitude-longitude map `(3, He, We)`, +y up:
    row i has polar angle `theta = pi (i + 0.5) / He` from +y, column j the azimuth
    `phi = 2 pi (j + 0.5) / We`; direction `(sin theta sin phi, cos theta, sin theta cos phi)`."""
    theta = jnp.pi * (jnp.arange(height, dtype=dtype) + 0.5) / height
    phi = 2.0 * jnp.pi * (jnp.arange(width, dtype=dtype) + 0.5) / width
    st, ct = jnp.sin(theta)[:, None], jnp.cos(theta)[:, None]
    return jnp.stack([st * jnp.sin(phi), jnp.broadcast_to(ct, (height, width)),
                      st * jnp.cos(phi)])  # fmt: skip


def latlong_solid_angles(height: int, width: int, dtype=jnp.float32):
    """Exact solid angle `(He, We)` of each texel of a latitude-longitude map (they sum to
    4 pi): `(2 pi / We) (cos theta_top - cos theta_bottom)`."""
    edges = jnp.cos(jnp.pi * jnp.arange(height + 1, dtype=dtype) / height)
    band = (edges[:-1] - edges[1:]) * (2.0 * jnp.pi / width)
    return jnp.broadcast_to(band[:, None], (height, width))


@jax.tree_util.register_pytree_node_class
class SHLight(Leaves):
    """Environment light as spherical harmonics (see the module docstring for the basis).

    Args:
      coeffs: `(9, 3)` real SH coefficients of the radiance, bands 0-2, RGB columns, in world
        coordinates. A uniform environment of radiance `r` is `c_0 = r / 0.282095` and zeros.

    Under `shading="flat"`, "gouraud" and "phong" the SH light is diffuse: `kd * albedo *
    E(n) / pi` joins the Phong model's diffuse term (so a uniform environment of radiance `r`
    lights like `ambient=r`). Under `shading="pbr"` it lights the GGX material diffusely
    (exact irradiance) and specularly (split sum, see `softjax.PBRMaterial`).
    """

    _FIELDS = ("coeffs",)

    def __init__(self, coeffs):
        coeffs = as_float_array(coeffs, "coeffs")
        check_shape(coeffs, (9, 3), "coeffs")
        check_finite(coeffs, "coeffs")
        self.coeffs = coeffs

    @classmethod
    def from_environment(cls, latlong) -> SHLight:
        """The SH light of a latitude-longitude radiance map `latlong (He, We, 3)` (layout as
        in `latlong_directions`): each coefficient `c_k = sum_t L_t Y_k(w_t) dw_t` over the
        texels, with exact texel solid angles. Differentiable in the map."""
        latlong = as_float_array(latlong, "latlong")
        if latlong.ndim != 3 or latlong.shape[-1] != 3 or min(latlong.shape[:2]) < 1:
            raise ValueError(f"`latlong` must have shape (He, We, 3), got {latlong.shape}")
        check_finite(latlong, "latlong")
        h, w, _ = latlong.shape
        y = sh_basis(latlong_directions(h, w, latlong.dtype))  # (9, He, We)
        weight = latlong_solid_angles(h, w, latlong.dtype)
        return cls(jnp.einsum("khw,hwc->kc", y * weight, latlong,
                              precision=jax.lax.Precision.HIGHEST))  # fmt: skip

    @classmethod
    def from_deca(cls, light) -> SHLight:
        """The SH light of DECA's lighting code (also EMOCA's and FLAME photometric fitting's:
        their `add_SHlight`), `light (9, 3)` or DECA's flat `(27,)`.

        Those projects shade `albedo * sum_k l_k f_k b_k(n)` with the basis `b = [1, x, y,
        z, x y, x z, y z, x^2 - y^2, 3 z^2 - 1]` and constant factors `f` that hold the
        irradiance's band factors for bands 1 and 2 but not for band 0, and no 1 / pi. The
        result shades, as `kd * albedo * E(n) / pi` (the Phong model with ambient 0 and the
        default `Material`; "flat", "gouraud" or "phong"), exactly what their formula gives
        for the same normals: `c = [l_0, pi l_2, pi l_3, pi l_1, pi l_4, pi l_6, pi l_8,
        pi l_5, pi l_7]`. Their normals are in FLAME's frame (x right, y up, z towards the
        camera): render the mesh in that frame, or rotate the light with it.
        """
        light = as_float_array(light, "light")
        if light.shape == (27,):
            light = light.reshape(9, 3)
        check_shape(light, (9, 3), "light")
        order = (0, 2, 3, 1, 4, 6, 8, 5, 7)
        scale = jnp.asarray((1.0,) + (math.pi,) * 8, light.dtype)
        return cls(light[jnp.asarray(order)] * scale[:, None])

    @classmethod
    def from_kaolin(cls, lights) -> SHLight:
        """The SH light of Kaolin's `sh9` coefficients (`kaolin.render.lighting`), `lights
        (9,)` (one channel, as Kaolin takes them; used for all three) or `(9, 3)`.

        Kaolin's basis (`project_onto_sh9`) has this module's order and constants with the
        Condon-Shortley signs (`-` on the y, x, y z and x z terms), and `sh9_irradiance(lights,
        normals)` the same band factors, without 1 / pi: Kaolin shades `albedo *
        sh9_irradiance(lights, n)` (`sh9_diffuse(direction, ...)` is that with `lights =
        project_onto_sh9(direction)`, so pass those). The result shades, as `kd * albedo *
        E(n) / pi` (Phong model, ambient 0, default `Material`), exactly that: `c_k = pi s_k
        l_k`, `s = [+, -, +, -, +, -, +, -, +]`.
        """
        lights = as_float_array(lights, "lights")
        if lights.shape == (9,):
            lights = jnp.broadcast_to(lights[:, None], (9, 3))
        check_shape(lights, (9, 3), "lights")
        signs = jnp.asarray([1.0, -1.0] * 4 + [1.0], lights.dtype) * math.pi
        return cls(lights * signs[:, None])

    def radiance(self, d):
        """Radiance `(..., 3)` in the unit directions `d (..., 3)` (channel-last)."""
        d = jnp.moveaxis(jnp.asarray(d), -1, 0)
        return jnp.moveaxis(sh_eval(self.coeffs, d), 0, -1)
