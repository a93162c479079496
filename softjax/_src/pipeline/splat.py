"""Rasterize-then-splat's program: the z-buffer's layers shaded per pixel as the hard path
shades them, each pixel's surface point placed on the screen from the vertices and the camera,
then splatted and composited (`hard.splat`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera, to_camera
from softjax._src.config import RasterConfig
from softjax._src.geometry.clip import project
from softjax._src.hard.fragments import face_rows, gather_planes, planes_at
from softjax._src.hard.splat import splat_planes
from softjax._src.hard.zbuffer import visible_triangles
from softjax._src.mesh import Mesh
from softjax._src.pipeline.hard import shade_planes
from softjax._src.pixels import pixel_axes
from softjax._src.shading.shaders import background_values


def splat_offsets(cam_verts, faces, face, bary, camera: Camera, image_size):
    """`(ox, oy)`, each shaped like `face (..., H, W)`: the vector in pixels (columns, rows)
    from the screen position of each fragment's surface point to its pixel's centre. The
    point is `sum_k b_k v_k` over the corners of its face (`cam_verts (V, 3)` in camera
    space, `faces (F, 3)`) with the barycentrics `bary` (3 planes) held constant: in value it
    lies on the pixel's centre (the offsets are 0 but for rounding), and it moves with the
    vertices and the camera. 0 where `face` is -1 (or the point is not in front of the
    camera)."""
    corners = cam_verts[faces].reshape(faces.shape[0], 9)
    g = gather_planes(corners, face)  # corner k, axis a at 3 k + a
    b = [jax.lax.stop_gradient(x) for x in bary]
    px, py, pz = (sum(b[k] * g[3 * k + a] for k in range(3)) for a in range(3))
    some = face >= 0
    if not camera.orthographic:
        some = some & (pz > 0)  # barycentrics are 0 at a degenerate face's pixels
        inv = 1.0 / jnp.where(some, pz, 1.0)
        px, py = px * inv, py * inv
    sx = px * camera.focal[0] + camera.center[0]
    sy = -py * camera.focal[1] + camera.center[1]
    h, w = image_size
    ys, xs = pixel_axes(image_size, h, w)
    cx, cy = jnp.asarray(xs, sx.dtype), jnp.asarray(ys, sx.dtype)[:, None]
    half = h / 2  # screen units per pixel: 2 / H along both axes
    return (jnp.where(some, (cx - sx) * half, 0.0), jnp.where(some, (sy - cy) * half, 0.0))


@functools.partial(jax.jit, static_argnames=("shader",))
def render_splat(mesh: Mesh, camera: Camera, cfg: RasterConfig, corner_attrs, shader=None,
                 shade=()):  # fmt: skip
    """`visibility="splat"`: `cfg.splat_layers` layers of the z-buffer shaded per pixel, the
    first three channels splatted and composited over the background, any further
    (auxiliary) channels as interpolated on the nearest layer. Returns the colours `(H, W,
    C)`, the splatted coverage `(H, W)`, and the nearest layer's face ids and depth `(H, W)`.
    """
    dtype = mesh.verts.dtype
    layers = cfg.splat_layers
    tris = project(mesh.verts, mesh.faces, camera, cfg.cull_backfaces, mesh.face_mask)
    triangle = visible_triangles(tris, cfg, not camera.orthographic, layers, mesh.num_faces)
    cam_verts = to_camera(camera, mesh.verts)
    rows = face_rows(cam_verts, mesh.faces, camera.orthographic)
    planes = [planes_at(rows, triangle[k], camera, cfg.image_size) for k in range(layers)]
    shaded = [shade_planes(p, rows, camera, cfg, corner_attrs, shader, shade) for p in planes]
    face = jnp.stack([p.face for p in planes])
    depth = jnp.stack([p.depth for p in planes])
    bary = tuple(jnp.stack([p.bary[k] for p in planes]) for k in range(3))
    offset = splat_offsets(cam_verts, mesh.faces, face, bary, camera, cfg.image_size)
    channels = len(shaded[0])
    colours = [jnp.stack([s[c] for s in shaded]) for c in range(min(channels, 3))]
    bg = background_values(cfg.background, len(colours), dtype) if channels else None
    out, alpha = splat_planes(colours, face, depth, offset, bg)
    if not channels:
        return jnp.zeros((*cfg.image_size, 0), dtype), alpha, face[0], depth[0]
    return jnp.stack([*out, *shaded[0][3:]], axis=-1), alpha, face[0], depth[0]
