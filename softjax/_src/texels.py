"""Texel coverage: how much each texel of a UV texture is seen by a set of views, the
weights with which the renderer samples it, so that a user fitting a texture can see where
the views leave it undersampled (texels that get no gradient)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from softjax._src.camera import Camera
from softjax._src.config import RasterConfig
from softjax._src.mesh import Mesh
from softjax._src.render import render


def texel_coverage(mesh: Mesh, cameras: Camera, cfg: RasterConfig) -> jax.Array:
    """How much the views `cameras` see each texel of `mesh.texture`, `(Ht, Wt)`.

    The sum over views and pixels of the weight each texel has in the pixel's colour as
    `render` samples the texture under `cfg` (its `texture_filter`, `visibility` and blur):
    the filter's weights (through every mip level to the base texels, for a mipmapped
    filter) times the pixel's share of the surface point (the softmax weight under soft
    visibility, the antialiasing's blend under hard). Lighting and auxiliary outputs play no
    part. It is the gradient a fit's loss can give the texel, up to the loss's own factor:
    where it is 0, no pixel of these views depends on the texel and the texel keeps its
    initial value.

    Args:
      mesh: a UV-textured mesh.
      cameras: one camera, or a batch of them (fields with a leading view axis, e.g.
        `jax.vmap(sj.look_at)(eyes)`).
      cfg: the settings the views are rendered with.

    Returns:
      `(Ht, Wt)` non-negative weights, in pixels (a texel that alone colours one pixel
      fully has 1 from it).
    """
    if not isinstance(mesh, Mesh) or mesh.texture is None:
        raise ValueError("`texel_coverage` needs a mesh with a UV texture (`uvs`, `face_uvs`, "
                         "`texture`)")  # fmt: skip
    if not isinstance(cameras, Camera):
        raise TypeError(f"`cameras` must be a softjax Camera, got {type(cameras).__name__}")
    unlit = dataclasses.replace(cfg, shading="flat", aovs=())
    batched = jnp.ndim(cameras.eye) == 2

    def seen(tex):
        m = mesh.replace(texture=tex)

        def one(cam):
            return jnp.sum(render(m, cam, unlit)[..., 0])

        return jnp.sum(jax.vmap(one)(cameras)) if batched else one(cameras)

    return jax.grad(seen)(mesh.texture)[..., 0]
