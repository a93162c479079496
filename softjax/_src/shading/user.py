"""User shaders: any JAX function of named per-fragment attributes, applied by every visibility
mode the way the built-in shaders are (diffren's "any JAX function may be a shader").

A user shader is `shader(frag, params) -> rgb`: `frag` a dict of interpolated attributes,
channel-last (`(..., k)`; "face_id" `(...)` int32), `params` the pytree passed to `render` as
`shader_params` (traced: gradients reach it), `rgb` `(..., 3)`. The leading shape is whatever
the visibility mode evaluates at once (pixels, or pixel-face pairs): the function must act
elementwise over it. It is static in the compiled program (hashed by identity): define it
once, not anew per call, so that calls reuse compilations.

Fragments that show no face (background pixels, the padding of the tiled path's batches) are
given a placeholder: position 0, normal (0, 0, 1), zeros elsewhere, face id 0; their colours
are discarded. So a shader that is finite on real surfaces (normalising with care where a
normal can be zero, e.g. on degenerate faces) gives finite images and gradients.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from softjax._src.geometry.clip import PIECES, source_face
from softjax._src.mesh import Mesh
from softjax._src.shading.lights import vertex_normals
from softjax._src.shading.shaders import Shading, with_aovs

# The attributes every fragment offers, in this order, before the user's own.
BUILT_IN = ("position", "normal", "uv", "color", "face_id")


@dataclasses.dataclass(frozen=True)
class UserShader:
    """The shader protocol around a user's function: interpolated corner attributes `(A, ...)`
    laid out as `layout` (names and widths) -> `(3 + passthrough, ...)`.

    fn: the user's `shader(frag, params) -> (..., 3)`.
    layout: `((name, width), ...)` of the attributes, in the order they are stacked.
    num_faces: the mesh's face count: clipped triangles `0 .. PIECES * num_faces - 1` are
      fragments, other indices (-1, the tiled path's sentinel) are not.
    passthrough: the last attributes, copied after the colour (depth, normals outputs).
    """

    fn: Callable
    layout: tuple
    num_faces: int
    passthrough: int = 0

    @property
    def channels(self) -> int:
        return 3 + self.passthrough

    def __call__(self, attrs, face, params):
        if self.passthrough:
            attrs, extra = attrs[: -self.passthrough], attrs[-self.passthrough :]
        # Double where: the user's function never sees the zeros of a non-fragment, whose
        # NaN would reach the gradients through the discarded branch.
        real = jnp.broadcast_to((face >= 0) & (face < PIECES * self.num_faces), attrs.shape[1:])
        frag, start = {}, 0
        for name, width in self.layout:
            x = jnp.moveaxis(attrs[start : start + width], 0, -1)
            stand_in = jnp.zeros(width, x.dtype)
            if name == "normal":
                stand_in = stand_in.at[2].set(1.0)
            frag[name] = jnp.where(real[..., None], x, stand_in)
            start += width
        face_id = jnp.where(real, source_face(face), 0).astype(jnp.int32)
        frag["face_id"] = face_id
        rgb = jnp.asarray(self.fn(frag, params))
        if rgb.shape[-1:] != (3,) or rgb.ndim > attrs.ndim:
            raise ValueError(
                f"a shader must return (..., 3) colours of its inputs' shape "
                f"{tuple(attrs.shape[1:])}, got {tuple(rgb.shape)}"
            )
        rgb = jnp.moveaxis(jnp.broadcast_to(rgb, (*attrs.shape[1:], 3)), -1, 0)
        rgb = rgb.astype(attrs.dtype)
        if not self.passthrough:
            return rgb
        return jnp.concatenate([rgb, extra])


def _per_corner(values, mesh: Mesh, name: str):
    """`(F, 3, C)` corner values of per-vertex `(V, C)` or per-corner `(F, 3, C)` ones."""
    values = jnp.asarray(values)
    v, f = mesh.verts.shape[0], mesh.num_faces
    if values.ndim == 2 and values.shape[0] == v:
        return values[mesh.faces]
    if values.ndim == 3 and values.shape[:2] == (f, 3):
        return values
    raise ValueError(
        f"attribute {name!r} must be per-vertex ({v}, C) or per-corner ({f}, 3, C), got shape "
        f"{tuple(values.shape)}"
    )


def prepare_user(mesh: Mesh, camera, fn, params, attributes, shading: str, aovs=()) -> Shading:
    """The `Shading` of `mesh` with the user's shader `fn`: corner attributes position,
    normal (smooth vertex normals), uv and color where the mesh has them, then `attributes`
    (a dict of per-vertex or per-corner arrays), then the auxiliary outputs `aovs`. Checks its
    arguments, then prepares in one jitted program (inlined under a caller's `jit`)."""
    if not callable(fn):
        raise TypeError(f"`shader` must be a function (frag, params) -> rgb, got {fn!r}")
    attributes = {} if attributes is None else attributes
    if not isinstance(attributes, dict):
        raise TypeError(f"`attributes` must be a dict of name -> array, got {type(attributes)}")
    clash = sorted(set(attributes) & set(BUILT_IN))
    if clash:
        raise ValueError(f"`attributes` names {clash} are built in; choose other names")
    # As arrays before the jit, which would otherwise take a list of numbers for a pytree.
    attributes = {name: jnp.asarray(values) for name, values in attributes.items()}
    return _prepared(mesh, camera, fn, params, attributes, shading, aovs)


@functools.partial(jax.jit, static_argnames=("fn", "shading", "aovs"))
def _prepared(mesh: Mesh, camera, fn, params, attributes: dict, shading: str, aovs) -> Shading:
    verts, faces = mesh.verts, mesh.faces
    parts = {"position": verts[faces],
             "normal": vertex_normals(verts, faces, mesh.face_mask)[faces]}  # fmt: skip
    if mesh.uvs is not None:
        parts["uv"] = mesh.uvs[mesh.face_uvs]
    if mesh.colors is not None:
        parts["color"] = mesh.colors[faces]
    for name, values in attributes.items():
        values = _per_corner(values, mesh, name)
        if not jnp.issubdtype(values.dtype, jnp.floating):
            values = values.astype(verts.dtype)
        parts[name] = values.astype(verts.dtype)
    layout = tuple((name, x.shape[-1]) for name, x in parts.items())
    attrs = jnp.concatenate(list(parts.values()), axis=-1)
    shader = UserShader(fn, layout, mesh.num_faces)
    return with_aovs(Shading(attrs, shader, params), mesh, camera, aovs, shading)
