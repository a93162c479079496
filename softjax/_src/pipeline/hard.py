"""Hard visibility's program: z-buffer, fragments, shading per pixel and antialiasing, in strips
of rows for large images."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from softjax._src.camera import Camera, to_camera
from softjax._src.config import RasterConfig
from softjax._src.geometry.clip import project
from softjax._src.hard.antialias import antialias_planes
from softjax._src.hard.fragments import (
    Planes,
    face_rows,
    interpolate_planes,
    planes_at,
    screen_derivatives,
    silhouette_planes,
    to_fragments,
)
from softjax._src.hard.zbuffer import visible_triangles
from softjax._src.mesh import Mesh
from softjax._src.pixels import pixel_axes
from softjax._src.shading.shaders import background_values
from softjax._src.topology import silhouette_edges


def planes_of(mesh: Mesh, camera: Camera, cfg: RasterConfig, tris, layers):
    """`Planes` `(..., K, H, W)` of `mesh`, whose clipped triangles are `tris` (no layer
    axis when `layers` is None)."""
    perspective = not camera.orthographic
    triangle = visible_triangles(tris, cfg, perspective, layers or 1, mesh.num_faces)
    if layers is None:
        triangle = triangle[0]
    rows = face_rows(to_camera(camera, mesh.verts), mesh.faces, camera.orthographic)
    return planes_at(rows, triangle, camera, cfg.image_size)


def antialias_image(image, p: Planes, mesh: Mesh, camera: Camera, across=None):
    """`antialias_planes` of `image (C, H, W)` at the nearest layer `p` (no layer axis); `across`
    the mesh's `EdgeTopology.across`, or None to build it here."""
    cam_verts = to_camera(camera, mesh.verts)
    edges = silhouette_edges(cam_verts, mesh.faces, camera.orthographic, mesh.face_mask, across)
    sil = silhouette_planes(edges, p.face)
    rows = face_rows(cam_verts, mesh.faces, camera.orthographic)
    return antialias_planes(image, p, sil, rows, camera, p.face.shape)


def shade_planes(
    p: Planes, rows, camera: Camera, cfg: RasterConfig, corner_attrs, shader, shade, y=None
) -> list:
    """The channel planes `(R, W)` of the fragments `p` (one layer): `corner_attrs (F, 3, C)`
    interpolated and shaded by `shader` (with `shade`, its parameters), the background where
    no face is; `[]` without attributes. `rows` are the mesh's `face_rows`, `y (R,)` the
    rows' screen y for a strip of rows (see `planes_at`)."""
    if not corner_attrs.shape[-1]:
        return []
    rgb = interpolate_planes(corner_attrs, p.face, p.bary)
    if shader is not None:
        derivs = ()
        if getattr(shader, "derivatives", 0):  # e.g. the UVs of a mipmapped texture
            k = shader.derivatives
            d = screen_derivatives(corner_attrs[..., :k], p.face, rows, camera, cfg.image_size,
                                   y)  # fmt: skip
            derivs = (jnp.moveaxis(d, (-2, -1), (0, 1)),)  # (k, 2, R, W)
        rgb = list(shader(jnp.stack(rgb), p.triangle, shade, *derivs))  # -1: no face
    bg = background_values(cfg.background, len(rgb), rows.dtype)
    return [jnp.where(p.face >= 0, x, bg[i]) for i, x in enumerate(rgb)]


@functools.partial(jax.jit, static_argnames=("layers",))
def rasterize_planes(mesh: Mesh, camera: Camera, cfg: RasterConfig, layers: int):
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces, mesh.face_mask)
    p = planes_of(mesh, camera, cfg, tris, None if layers == 1 else layers)
    return to_fragments(p, layers > 1)


# With `RasterConfig.strip_pixels=None`, above this many pixels the hard path shades in strips
# of rows (about `STRIP_PIXELS` each) and recomputes each strip's per-pixel planes in the
# backward pass instead of storing them: memory then grows with the strip, not the image (at
# 1024x1024 the stored planes took ~4 MB each, a few hundred MB in all), while at smaller
# sizes one pass is faster.
STRIP_ABOVE = 512 * 512
STRIP_PIXELS = 2**17


@functools.partial(jax.jit, static_argnames=("shader",))
def render_hard(
    mesh: Mesh, camera: Camera, cfg: RasterConfig, corner_attrs, shader=None, shade=(), across=None
):
    """`visibility="hard"`: the z-buffered surface shaded per pixel. Returns the colours
    `(H, W, C)` (the first three antialiased, any auxiliary channels as interpolated), the
    antialiased coverage `(H, W)`, face ids `(H, W)` and depth `(H, W)`. `across`: the mesh's
    `EdgeTopology.across`, or None to build it here."""
    dtype = mesh.verts.dtype
    h, w = cfg.image_size
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces, mesh.face_mask)
    perspective = not camera.orthographic
    triangle = visible_triangles(tris, cfg, perspective, 1, mesh.num_faces)[0]
    edges = silhouette_edges(
        jax.lax.stop_gradient(to_camera(camera, mesh.verts)), mesh.faces, camera.orthographic,
        mesh.face_mask, across)  # fmt: skip

    def pixels(verts, camera, corner_attrs, shade, triangle, y=None, inside=None):
        # `triangle (R, W)`; `y (R,)` and `inside (R,)` (which rows lie in the image) for a
        # strip of rows with one row of its neighbours above and below.
        rows = face_rows(to_camera(camera, verts), mesh.faces, camera.orthographic)
        p = planes_at(rows, triangle, camera, cfg.image_size, y=y)
        some = p.face >= 0
        rgb = shade_planes(p, rows, camera, cfg, corner_attrs, shader, shade, y)
        sil = silhouette_planes(edges, p.face)
        q = p if inside is None else p._replace(face=jnp.where(inside[:, None], p.face, -2))
        colour = antialias_planes([*rgb[:3], some.astype(dtype)], q, sil, rows, camera,
                                  cfg.image_size, y, cfg.antialias_capacity)  # fmt: skip
        out = (colour, rgb[3:], p.face, p.depth)
        return out if inside is None else jax.tree.map(lambda x: x[1:-1], out)

    strip = cfg.strip_pixels or (None if h * w <= STRIP_ABOVE else STRIP_PIXELS)
    if strip is None:
        colour, extra, face, depth = pixels(mesh.verts, camera, corner_attrs, shade, triangle)
    else:
        size = max(1, strip // w)
        count = -(-h // size)
        # Rows -1 .. count * size: each strip reads one row past each end, which the
        # antialiasing of its own rows needs; rows outside the image show nothing.
        padded = jnp.pad(triangle, ((1, count * size - h + 1), (0, 0)), constant_values=-1)
        index = np.arange(-1, count * size + 1)
        ys = jnp.asarray(pixel_axes(cfg.image_size, len(index), 0, first_row=-1)[0], dtype)
        inside = jnp.asarray((index >= 0) & (index < h))

        @jax.checkpoint
        def strip(i):
            cut = functools.partial(jax.lax.dynamic_slice_in_dim, start_index=i * size,
                                    slice_size=size + 2, axis=0)  # fmt: skip
            return pixels(mesh.verts, camera, corner_attrs, shade, cut(padded), cut(ys),
                          cut(inside))  # fmt: skip

        parts = jax.lax.map(strip, jnp.arange(count))

        def join(x):  # (count, size, W) -> (H, W)
            return x.reshape(count * size, w)[:h]

        colour, extra, face, depth = jax.tree.map(join, parts)
    rgb = (
        jnp.stack([*colour[:-1], *extra], axis=-1)
        if corner_attrs.shape[-1]
        else jnp.zeros((*cfg.image_size, 0), dtype)
    )
    return rgb, colour[-1], face, depth
