"""The dense reference of soft visibility: every pixel against every clipped triangle, in
O(pixels x faces) memory. The oracle the tiled stream is tested against, and `method="dense"`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax._src.config import RasterConfig
from softjax._src.geometry.pairs import interpolate_pairs, pair_geometry
from softjax._src.geometry.triangles import geometry_rows, setup
from softjax._src.hard.zbuffer import dense_nearest
from softjax._src.pixels import pixel_centers
from softjax._src.shading.shaders import background_values
from softjax._src.soft import coverage
from softjax._src.soft.batch import shader_derivatives
from softjax._src.soft.colour import hard_background_logit, hard_logits, softmax, softmax_colour
from softjax._src.soft.tconorms import alpha_terms


def dense(cfg, camera, sigma, gamma, p, shader, shade, winner_needed, with_colour, tris,
          corner_colours):  # fmt: skip
    """`aggregate`'s dense reference: every pixel against every clipped triangle in `tris`.
    Returns the silhouette's reduction `(H, W)`, RGB `(H, W, C)` (or None) and, if
    `winner_needed`, the nearest covering triangle of each pixel `(H, W)` (-1 for none)."""
    dtype = tris.xy.dtype
    pix = pixel_centers(cfg.image_size, dtype)
    tri = setup(geometry_rows(tris.xy, tris.z))
    frags = pair_geometry(pix[:, :1], pix[:, 1:], tri, not camera.orthographic)
    ok, (log_d, log_1md) = coverage.pair_coverage(frags, sigma, cfg.model, tris.valid[None, :])
    terms = alpha_terms(log_d, log_1md, ok, p, cfg.alpha)
    if cfg.alpha == "max":
        # The arg-max face takes the gradient (the first, i.e. lowest index, among ties).
        first = jnp.argmax(terms, axis=-1)
        total = jnp.take_along_axis(terms, first[:, None], axis=-1)[:, 0]
    elif cfg.alpha == "hard":
        total = jnp.max(jax.lax.stop_gradient(terms), axis=-1)
    else:
        total = jnp.sum(terms, axis=-1)
    total = total.reshape(cfg.image_size)
    nearest = None
    if winner_needed:
        nearest = dense_nearest(tris, cfg.image_size, not camera.orthographic)[0]
    if not with_colour:
        return total, None, _image(nearest, cfg)
    corner = jnp.transpose(corner_colours, (1, 2, 0))[:, :, None]  # (3, A, 1, F')
    colours = interpolate_pairs(frags.bary, corner)
    if shader is not None:
        # (A, P, F') attributes -> (C, P, F') colours
        derivs = shader_derivatives(shader, frags.bary, frags.z, tri, corner,
                                    not camera.orthographic, cfg.image_size[0])  # fmt: skip
        colours = shader(colours, jnp.arange(tris.valid.shape[0])[None, :], shade, *derivs)
    background = background_values(cfg.background, colours.shape[0], dtype)
    if cfg.color == "hard":
        face = jnp.arange(tris.valid.shape[0])[None, :]
        log_w = hard_logits(face, nearest[:, None], dtype)
        rgb = softmax(log_w, hard_background_logit(nearest, dtype), colours,
                      background)  # fmt: skip
    else:
        rgb = softmax_colour(log_d, frags.z, colours, ok, background, near=camera.near,
                             far=camera.far, gamma=gamma, eps=cfg.eps)  # fmt: skip
    return total, rgb.reshape(*cfg.image_size, -1), _image(nearest, cfg)


def _image(per_pixel, cfg: RasterConfig):
    """`(H * W,)` -> `(H, W)`; None stays None."""
    return None if per_pixel is None else per_pixel.reshape(cfg.image_size)
