"""Auxiliary outputs that ride the shader's channels, by name: view depth and normals are
interpolated and blended like the colour (passed through the shader after it), then decoded
here; face ids come from the visibility mode itself."""

from __future__ import annotations

import jax.numpy as jnp

from softjax._src.camera import Camera, to_camera
from softjax._src.mesh import Mesh
from softjax._src.shading.lights import corner_normals


def aov_attributes(mesh: Mesh, camera: Camera, aovs, shading: str):
    """`(F, 3, K)` corner attributes passed through the shader for depth and normals (view
    depth, normals, then a constant 1 whose blend is the faces' share), or None."""
    parts = []
    if "depth" in aovs:
        parts.append(to_camera(camera, mesh.verts)[mesh.faces][..., 2:3])
    if "normals" in aovs:
        parts.append(corner_normals(mesh.verts, mesh.faces, shading, mesh.face_mask)[0])
    if not parts:
        return None
    if "depth" in aovs:
        parts.append(jnp.ones_like(parts[0][..., :1]))
    return jnp.concatenate(parts, axis=-1)


def aov_outputs(extra, aovs, near, far, depth=None) -> dict:
    """Depth `(H, W)` and normals `(H, W, 3)` by name, from the channels `extra (H, W, K)`
    that `aov_attributes` made, or `depth` where the visibility mode found it directly; the
    camera's `near` and `far` planes."""
    outputs = {}
    if "depth" in aovs:
        # Channel 0 blends the faces' depths with a zero background; the last one blends 1,
        # so one minus it is the background's share, which sits at `far`.
        if depth is None:
            depth = extra[..., 0] + (1.0 - extra[..., -1]) * far
            # A convex combination (softmax weights) of fragment depths, each one convex
            # barycentrics of corner depths >= near (cut corners at near exactly, see
            # `clip_depths`), and of `far` > near: at least `near`. Its rounding is not: the
            # faces' share rounds past 1 (by 2^-23 or more, in many ordinary pixels), and
            # where a face at `near` takes a pixel, `(1 - share) * far` takes ~1.2e-5 off at
            # far = 100 (0.0455285 for a near of 0.04554; clipped faces with a large sigma).
            # Clamped to that bound only: every value at or above it, and NaN, stays as is.
            depth = jnp.where(depth < near, near, depth)
        outputs["depth"] = depth
    if "normals" in aovs:
        start = 1 if "depth" in aovs else 0
        outputs["normals"] = extra[..., start : start + 3]
    return outputs
