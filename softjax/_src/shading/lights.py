"""Lights, materials and Phong-model shading (flat, Gouraud or per-fragment).

The model (PyTorch3D's Phong form, no distance attenuation, no clamping inside the sums):

    colour = albedo * (ka * La + kd * (sum_l I_l c_l max(0, N.L_l) + E_sh(N) / pi))
             + ks * sum_l I_l c_l [N.L_l > 0] max(0, R_l.V)^shininess

with `La = ambient * ambient_color`, `L_l` the unit direction from the surface to light `l`
(`-direction` for a directional light, `normalize(position - p)` for a point light),
`R_l = 2 (N.L_l) N - L_l`, `V` the unit direction from the surface to the camera, and `N` the
unit normal `cross(b - a, c - a)` (outward for counter-clockwise faces; lighting is one-sided,
as in SoftRas), and `E_sh` the irradiance of an `SHLight` and an `EnvironmentLight` (diffuse
only: highlights come from directional and point lights). The default `Material` (ka = kd =
1, ks = 0) gives SoftRas's Lambert shading. `shading="pbr"` shades radiometrically instead
(`pbr`).

Arrays here are channel-first: a colour or vector field is `(3, ...)`, so the same functions
shade faces, vertices or the (pixel, face) pairs of the rasterizer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.checks import (
    as_float_array,
    check_finite,
    check_positive,
    check_shape,
    host_values,
)
from softjax._src.mesh import face_normals
from softjax._src.numerics import safe_norm, safe_normalize, smax
from softjax._src.pytrees import Leaves
from softjax._src.shading.environment import EnvironmentLight
from softjax._src.shading.environment import irradiance as env_irradiance
from softjax._src.shading.environment import prepare as prepare_environment
from softjax._src.shading.sh import SHLight, sh_irradiance


def _stack(items, cls, name):
    """A light of class `cls`, or a list of them, as one `cls` with a leading axis."""
    if isinstance(items, cls):
        items = [items]
    items = list(items)
    if not all(isinstance(x, cls) for x in items):
        raise ValueError(f"`{name}` must be a {cls.__name__} or a list of them")
    if not items:
        return cls.empty()
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *items)


def _fields(values: dict, shapes: dict, dtype=None):
    out = {}
    for name, value in values.items():
        arr = as_float_array(value, name, dtype)
        check_shape(arr, shapes[name], name)
        check_finite(arr, name)
        out[name] = arr
        dtype = dtype or arr.dtype
    return out


class _Light(Leaves):
    """A light with fields (a `(3,)` vector, `color (3,)`, `intensity ()`)."""

    def _set(self, vector, color, intensity):
        values = dict(zip(self._FIELDS, (vector, color, intensity), strict=True))
        shapes = dict(zip(self._FIELDS, ((3,), (3,), ()), strict=True))
        for name, value in _fields(values, shapes).items():
            setattr(self, name, value)

    @classmethod
    def empty(cls):
        """No light: fields with a leading axis of length 0."""
        return cls.tree_unflatten(None, (jnp.zeros((0, 3)), jnp.zeros((0, 3)), jnp.zeros(0)))


@jax.tree_util.register_pytree_node_class
class DirectionalLight(_Light):
    """A light at infinity.

    Args:
      direction: `(3,)` direction in which the light travels (from the light towards the
        scene), world coordinates, need not be normalised: `(0, -1, 0)` shines downwards.
      color: `(3,)` RGB colour.
      intensity: scalar multiplier.
    """

    _FIELDS = ("direction", "color", "intensity")

    def __init__(self, direction=(0.0, -1.0, -1.0), color=(1.0, 1.0, 1.0), intensity=1.0):
        self._set(direction, color, intensity)
        values = host_values(self.direction)
        if values is not None and not np.any(values):
            raise ValueError("`direction` must be a non-zero vector")


@jax.tree_util.register_pytree_node_class
class PointLight(_Light):
    """A point light (no distance attenuation, as in PyTorch3D's Phong shading).

    Args:
      position: `(3,)` world position.
      color: `(3,)` RGB colour.
      intensity: scalar multiplier.
    """

    _FIELDS = ("position", "color", "intensity")

    def __init__(self, position=(0.0, 1.0, 3.0), color=(1.0, 1.0, 1.0), intensity=1.0):
        self._set(position, color, intensity)


@jax.tree_util.register_pytree_node_class
class Lights(Leaves):
    """Ambient light plus any number of directional and point lights.

    What is not given is not there: `Lights()` is white ambient light of intensity 1 and
    nothing else (the albedo unchanged), `Lights(ambient=0.2, directional=[...])` adds the
    lights listed. `Lights.softras(...)` takes SoftRas's lighting parameters.

    Args:
      ambient: scalar ambient intensity.
      directional: a `DirectionalLight` or a list of them (none by default).
      point: a `PointLight` or a list of them (none by default).
      ambient_color: `(3,)` RGB colour of the ambient light.
      sh: an `SHLight` (environment light as spherical harmonics) or None.
      environment: an `EnvironmentLight` (a latitude-longitude radiance map) or None.

    All of them add up. Under `shading="pbr"` the ambient light is a uniform environment of
    radiance `ambient * ambient_color` (lighting the material diffusely and specularly).

    Fields (pytree leaves): `ambient ()`, `ambient_color (3,)`, `directional` (a
    `DirectionalLight` whose fields have a leading axis N), `point` (a `PointLight` with a
    leading axis M), `sh` (an `SHLight` or None) and `environment` (an `EnvironmentLight` or
    None).
    """

    _FIELDS = ("ambient", "ambient_color", "directional", "point", "sh", "environment")

    def __init__(self, ambient=1.0, directional=(), point=(), ambient_color=(1.0, 1.0, 1.0),
                 sh=None, environment=None):  # fmt: skip
        f = _fields({"ambient": ambient, "ambient_color": ambient_color},
                    {"ambient": (), "ambient_color": (3,)})  # fmt: skip
        if not isinstance(directional, (DirectionalLight, list, tuple)):
            raise TypeError(
                "`directional` takes a DirectionalLight or a list of them, got "
                f"{type(directional).__name__}; for SoftRas's intensity and direction "
                "parameters use Lights.softras(...)"
            )
        self.ambient, self.ambient_color = f["ambient"], f["ambient_color"]
        self.directional = _stack(directional, DirectionalLight, "directional")
        self.point = _stack(point, PointLight, "point")
        if sh is not None and not isinstance(sh, SHLight):
            raise TypeError(f"`sh` must be a softjax SHLight or None, got {type(sh).__name__}")
        self.sh = sh
        if environment is not None and not isinstance(environment, EnvironmentLight):
            raise TypeError(
                "`environment` must be a softjax EnvironmentLight or None, got "
                f"{type(environment).__name__}"
            )
        self.environment = environment

    @classmethod
    def softras(cls, intensity_ambient=0.5, color_ambient=(1.0, 1.0, 1.0),
                intensity_directionals=0.5, color_directionals=(1.0, 1.0, 1.0),
                directions=(0.0, 1.0, 0.0)):  # fmt: skip
        """SoftRas's `Lighting`, with its parameter names, meanings and defaults.

        SoftRas lights a surface with `intensity_ambient * color_ambient +
        intensity_directionals * color_directionals * max(0, N . directions)`, where
        `directions` points from the surface towards the light (the opposite of
        `DirectionalLight.direction`) and is used as given, so its length scales the light.
        The same numbers give the same light here: one `DirectionalLight` travelling along
        `-directions` with intensity `intensity_directionals * |directions|`. With the default
        `Material()`, "flat" shading is SoftRas's surface lighting and "gouraud" its vertex
        lighting.

        Args:
          intensity_ambient: scalar.
          color_ambient: `(3,)` RGB.
          intensity_directionals: scalar.
          color_directionals: `(3,)` RGB.
          directions: `(3,)` non-zero vector towards the light, world coordinates.
        """
        towards = as_float_array(directions, "directions")
        check_shape(towards, (3,), "directions")
        check_finite(towards, "directions")
        values = host_values(towards)
        if values is not None and not np.any(values):
            raise ValueError("`directions` must be a non-zero vector")
        length = safe_norm(towards)
        intensity = as_float_array(intensity_directionals, "intensity_directionals",
                                   towards.dtype)  # fmt: skip
        check_shape(intensity, (), "intensity_directionals")
        light = DirectionalLight(-towards / jnp.where(length > 0, length, 1.0),
                                 color_directionals, intensity * length)  # fmt: skip
        return cls(intensity_ambient, [light], ambient_color=color_ambient)


@jax.tree_util.register_pytree_node_class
class Material(Leaves):
    """Reflectance of the Phong model (see the module docstring).

    Args:
      ambient: ka, scalar or `(3,)` RGB.
      diffuse: kd, scalar or `(3,)` RGB.
      specular: ks, scalar or `(3,)` RGB; 0 turns highlights off.
      shininess: scalar Phong exponent, > 0.
    """

    _FIELDS = ("ambient", "diffuse", "specular", "shininess")

    def __init__(self, ambient=1.0, diffuse=1.0, specular=0.0, shininess=64.0):
        dtype = None
        for name, value in (("ambient", ambient), ("diffuse", diffuse), ("specular", specular)):
            arr = as_float_array(value, name, dtype)
            dtype = arr.dtype
            if arr.ndim == 0:
                arr = jnp.broadcast_to(arr, (3,))
            check_shape(arr, (3,), name)
            check_finite(arr, name)
            setattr(self, name, arr)
        self.shininess = as_float_array(shininess, "shininess", dtype)
        check_shape(self.shininess, (), "shininess")
        check_finite(self.shininess, "shininess")
        check_positive(self.shininess, "shininess")


def dot(a, b):
    """Dot product of channel-first vectors `(3, ...)`: `(...)`."""
    return jnp.sum(a * b, axis=0)


def light_directions(lights: Lights, position):
    """`(to_light (3, ...), radiance (3, 1, ...))` of each directional, then point light of
    `lights` at world positions `position (3, ...)`: the unit direction towards it and its
    `intensity * color`."""
    extra = (1,) * (position.ndim - 1)

    def col(v):  # (3,) -> (3, 1, ...)
        return v.reshape(3, *extra)

    out = [(col(-safe_normalize(d)), col(c * i))
           for d, c, i in zip(lights.directional.direction, lights.directional.color,
                              lights.directional.intensity, strict=True)]  # fmt: skip
    point = lights.point
    for p, c, i in zip(point.position, point.color, point.intensity, strict=True):
        out.append((safe_normalize(col(p) - position, axis=0), col(c * i)))
    return out


def light_terms(normal, position, eye, lights: Lights, material: Material, environment=None):
    """The Phong model as an affine map of the albedo: `(gain, offset)`, each `(3, ...)`, with
    `colour = albedo * gain + offset` (gain: ambient and diffuse light, offset: highlights).

    Args:
      normal: `(3, ...)` normals (normalised here; zero stays zero: ambient only).
      position: `(3, ...)` world positions.
      eye: `(3,)` camera centre (for an orthographic camera, any point far behind it along
        the view direction: only `V` depends on it).
      lights, material: see `Lights`, `Material`.
      environment: `lights.environment` prepared once per render (`environment.prepare`),
        or None to prepare it here.
    """
    extra = (1,) * (normal.ndim - 1)

    def col(v):  # (3,) -> (3, 1, ...)
        return v.reshape(3, *extra)

    n = safe_normalize(normal, axis=0)
    view = safe_normalize(col(eye) - position, axis=0)
    ambient = material.ambient * lights.ambient * lights.ambient_color
    diffuse = jnp.zeros_like(normal)
    specular = jnp.zeros_like(normal)
    for to_light, radiance in light_directions(lights, position):
        n_dot_l = dot(n, to_light)
        diffuse = diffuse + radiance * smax(n_dot_l, 0.0)
        reflect = 2 * n_dot_l * n - to_light
        r_dot_v = dot(reflect, view)
        lit = (n_dot_l > 0) & (r_dot_v > 0)
        # Double where: x ** shininess and its derivatives stay finite where x = 0.
        base = jnp.where(lit, r_dot_v, 1.0)
        specular = specular + radiance * jnp.where(lit, base**material.shininess, 0.0)
    if lights.sh is not None:
        # Lambertian: the irradiance over pi (a uniform radiance r lights like ambient=r).
        irradiance = sh_irradiance(lights.sh.coeffs, n) / jnp.pi
        diffuse = diffuse + jnp.where(dot(n, n) > 0, irradiance, 0.0)
    if lights.environment is not None:
        if environment is None:
            environment = prepare_environment(lights.environment, specular=False)
        irradiance = env_irradiance(environment, n) / jnp.pi
        diffuse = diffuse + jnp.where(dot(n, n) > 0, irradiance, 0.0)
    gain = col(ambient) + col(material.diffuse) * diffuse
    return gain, col(material.specular) * specular


def phong(albedo, normal, position, eye, lights: Lights, material: Material, environment=None):
    """Shaded colour `(3, ...)` of surface points with `albedo (3, ...)`; the other arguments
    as in `light_terms`."""
    gain, offset = light_terms(normal, position, eye, lights, material, environment)
    return albedo * gain + offset


def vertex_normals(verts, faces, face_mask=None):
    """Unit vertex normals `(V, 3)`: the area-weighted sum of the adjacent faces' normals
    `cross(b - a, c - a)`, normalised (zero for a vertex of degenerate faces only). Faces
    whose `face_mask` `(F,)` entry is False take no part."""
    tri = verts[faces]
    area_normals = jnp.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # (F, 3), |.| = 2A
    if face_mask is not None:
        area_normals = jnp.where(face_mask[:, None], area_normals, 0.0)
    summed = jnp.zeros_like(verts).at[faces.reshape(-1)].add(jnp.repeat(area_normals, 3, 0))
    return safe_normalize(summed)


def corner_normals(verts, faces, shading: str, face_mask=None):
    """`(F, 3, 3)` normals and points at which a face's corners are lit: the face's normal
    and centroid for flat shading, the vertices' smooth normals (over the faces `face_mask`
    keeps) and positions otherwise."""
    if shading == "flat":
        normal = jnp.broadcast_to(face_normals(verts, faces)[:, None, :], (*faces.shape, 3))
        return normal, jnp.broadcast_to(jnp.mean(verts[faces], axis=1)[:, None, :], normal.shape)
    return vertex_normals(verts, faces, face_mask)[faces], verts[faces]
