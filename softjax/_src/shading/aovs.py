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


def aov_outputs(extra, aovs, far, depth=None) -> dict:
    """Depth `(H, W)` and normals `(H, W, 3)` by name, from the channels `extra (H, W, K)`
    that `aov_attributes` made, or `depth` where the visibility mode found it directly."""
    outputs = {}
    if "depth" in aovs:
        # Channel 0 blends the faces' depths with a zero background; the last one blends 1,
        # so one minus it is the background's share, which sits at `far`.
        if depth is None:
            depth = extra[..., 0] + (1.0 - extra[..., -1]) * far
        outputs["depth"] = depth
    if "normals" in aovs:
        start = 1 if "depth" in aovs else 0
        outputs["normals"] = extra[..., start : start + 3]
    return outputs
