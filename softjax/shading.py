"""Lights and Lambertian shading (SoftRas's ambient + one directional light)."""

from __future__ import annotations

import jax
import numpy as np

from softjax._checks import as_float_array, check_finite, check_shape, is_concrete
from softjax._numerics import safe_normalize, smax


@jax.tree_util.register_pytree_node_class
class Lights:
    """Ambient light plus one directional light, applied per face (flat Lambert shading).

    `shade = albedo * (ambient * ambient_color
                       + directional * directional_color * max(0, n . -normalize(direction)))`
    with `n` the face's unit normal `cross(b - a, c - a)`, i.e. outward for counter-clockwise
    faces. Lighting is one-sided, as in SoftRas: a face lit from behind gets only the ambient
    term.

    Args:
      ambient: scalar ambient intensity.
      directional: scalar intensity of the directional light.
      direction: `(3,)` direction in which the light travels (from the light towards the
        scene), in world coordinates; need not be normalised. `(0, -1, -1)` lights a scene from
        above and from +z.
      ambient_color, directional_color: `(3,)` RGB colours of the two lights.
    """

    def __init__(
        self,
        ambient=0.5,
        directional=0.5,
        direction=(0.0, -1.0, -1.0),
        ambient_color=(1.0, 1.0, 1.0),
        directional_color=(1.0, 1.0, 1.0),
    ):
        direction = as_float_array(direction, "direction")
        dtype = direction.dtype
        fields = {
            "ambient": as_float_array(ambient, "ambient", dtype),
            "directional": as_float_array(directional, "directional", dtype),
            "direction": direction,
            "ambient_color": as_float_array(ambient_color, "ambient_color", dtype),
            "directional_color": as_float_array(directional_color, "directional_color", dtype),
        }
        for name, shape in (("ambient", ()), ("directional", ()), ("direction", (3,)),
                            ("ambient_color", (3,)), ("directional_color", (3,))):  # fmt: skip
            check_shape(fields[name], shape, name)
            check_finite(fields[name], name)
        if is_concrete(direction) and not np.any(np.asarray(direction)):
            raise ValueError("`direction` must be a non-zero vector")
        for name, value in fields.items():
            setattr(self, name, value)

    _FIELDS = ("ambient", "directional", "direction", "ambient_color", "directional_color")

    def tree_flatten(self):
        return tuple(getattr(self, n) for n in self._FIELDS), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for name, value in zip(cls._FIELDS, children, strict=True):
            setattr(obj, name, value)
        return obj

    def __repr__(self) -> str:
        return (
            f"Lights(ambient={self.ambient}, directional={self.directional}, "
            f"direction={self.direction})"
        )


def lambert(lights: Lights, normals):
    """Light reaching each face, `(F, 3)` RGB, for unit face normals `(F, 3)`."""
    to_light = -safe_normalize(lights.direction)
    cosine = smax(normals @ to_light, 0.0)
    return (
        lights.ambient * lights.ambient_color
        + (lights.directional * cosine)[:, None] * lights.directional_color
    )
