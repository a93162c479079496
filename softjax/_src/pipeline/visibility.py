"""Visibility modes behind one contract: each turns a prepared scene into a `Rendered` record,
and `VISIBILITY` maps `RasterConfig.visibility` to its implementation.

A mode is a function `(mesh, camera, cfg, blur, shading, *, face_ids, across) -> Rendered`:
`blur = (sigma, gamma, t_conorm_p)` are traced scalars, `shading` the per-corner attributes
and the shader that turns their interpolations into channels (`shaders.Shading`), `face_ids`
whether the nearest face of each pixel is wanted, `across` the mesh's edge adjacency when it
was built beforehand (`sj.edge_topology`). A new mode adds one function and one entry here;
`render` and `render_silhouette` do not change.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from softjax._src.errors import TILED_REVERSE_ONLY, reverse_only
from softjax._src.pipeline.hard import render_hard
from softjax._src.pipeline.soft import aggregate
from softjax._src.pipeline.splat import render_splat


class Rendered(NamedTuple):
    """What every visibility mode returns.

    alpha: `(H, W)` coverage.
    channels: `(H, W, C)` the shader's channels (colours, then any auxiliary channels), or
      None when nothing was shaded (silhouettes).
    face_id: `(H, W)` int32 nearest face whose interior holds each pixel centre (-1 where
      none), or None when not asked for and not a by-product.
    depth: `(H, W)` the nearest surface's view depth where the mode finds it directly (the
      z-buffer), else None: then the "depth" output rides `channels` (see `render`).
    """

    alpha: jax.Array
    channels: jax.Array | None
    face_id: jax.Array | None
    depth: jax.Array | None


def soft(mesh, camera, cfg, blur, shading, *, face_ids: bool, across=None) -> Rendered:
    """SoftRas's coverage and depth softmax (`pipeline.soft`); `across` plays no part."""
    attrs, shader, shade = shading.attrs, shading.shader, shading.params
    cfg = cfg.for_stage("soft" if attrs.shape[-1] else "silhouette")
    why = TILED_REVERSE_ONLY if cfg.method == "tiled" else None
    alpha, rgb, nearest = reverse_only(aggregate, mesh, camera, cfg, blur, attrs, shader, shade,
                                       face_ids=face_ids, depth=shading.depth, why=why)  # fmt: skip
    return Rendered(alpha, rgb, nearest, None)


def hard(mesh, camera, cfg, blur, shading, *, face_ids: bool, across=None) -> Rendered:
    """The z-buffer shaded per pixel and antialiased (`pipeline.hard`); `blur` plays no part
    and the face ids and depth come with every call."""
    attrs, shader, shade = shading.attrs, shading.shader, shading.params
    cfg = cfg.for_stage("hard")
    rgb, alpha, face, depth = reverse_only(render_hard, mesh, camera, cfg, attrs, shader, shade,
                                           across)  # fmt: skip
    return Rendered(alpha, rgb if attrs.shape[-1] else None, face, depth)


def splat(mesh, camera, cfg, blur, shading, *, face_ids: bool, across=None) -> Rendered:
    """Rasterize-then-splat (`pipeline.splat`); `blur` and `across` play no part, and the
    nearest layer's face ids and depth come with every call. Plain autodiff: forward and
    reverse mode."""
    attrs, shader, shade = shading.attrs, shading.shader, shading.params
    cfg = cfg.for_stage("splat")
    rgb, alpha, face, depth = render_splat(mesh, camera, cfg, attrs, shader, shade)
    return Rendered(alpha, rgb if attrs.shape[-1] else None, face, depth)


VISIBILITY = {"soft": soft, "hard": hard, "splat": splat}
