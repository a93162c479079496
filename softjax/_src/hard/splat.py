"""Rasterize-then-splat (Cole et al. 2021, "Differentiable Surface Rendering via
Non-Differentiable Sampling"): the layers of a hard raster, shaded, are each splatted back onto
the pixel grid with a small Gaussian at their own surface point's screen position, and the
splats composited front to back.

The surface point is the one the pixel centre sees, so in the forward pass every splat sits
on its own pixel's centre; its position is rebuilt from the vertices and the camera with the
barycentrics held constant, so it moves with them and the image's gradient reaches the
geometry across silhouette and occlusion edges without a derivative written by hand.

Per pixel p and layer l with a face, a 3x3 splat: the tap at the neighbouring centre q
weighs `COEF exp(-|q - s|^2 / (2 VARIANCE))` (pixels), with `s` the splat's position and
`COEF = (1 + EPSILON) / sum of the kernel over the 3x3 offsets`, so a fully covered interior
collects 1 + EPSILON and is normalised, while an edge against the background collects less
and is not. Each tap of p's layer l goes to one of three buffers at q by depth. The surface
that p and q share is the pair closest in depth of (q's nearest layer, p's layer k), giving
the index k >= 0 (p's layers before k lie in front of it), and (p's nearest layer, q's layer
k), giving -k (p's nearest surface lies behind q's nearest; ties go to the first pair): the
tap goes to the foreground buffer when that index is greater than l, to the surface buffer
when equal, to the background buffer when less. Each buffer (channels and weight) is
scaled by `1 / max(weight, 1)`, and the three composited with premultiplied "over",
foreground first.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from softjax._src.numerics import smax
from softjax._src.pixels import shifted

# Variance of the splat's Gaussian, in pixels squared, and the extra weight a fully covered
# pixel collects (the paper's choices).
VARIANCE = 0.25
EPSILON = 0.05
_TAPS = tuple((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1))
COEF = (1.0 + EPSILON) / sum(math.exp(-(di * di + dj * dj) / (2 * VARIANCE)) for di, dj in _TAPS)


def _nearest_match(z_a, z_b0):
    """Index and distance of the layer of `z_a (K, H, W)` closest in depth to `z_b0 (H, W)`
    (the lowest index of equal distances)."""
    d = jnp.abs(z_a - z_b0[None])
    return jnp.argmin(d, axis=0).astype(jnp.int32), jnp.min(d, axis=0)


def splat_planes(colours, face, depth, offset, background=None):
    """Splats layers of shaded pixels and composites them.

    Args:
      colours: C planes `(K, H, W)`, the shaded colour of each pixel's layer (any value
        where there is no face).
      face: `(K, H, W)` int32, the face of each layer (-1: none).
      depth: `(K, H, W)` view depth of each layer (the camera's far plane where none); only
        compared, not differentiated.
      offset: `(ox, oy)` planes `(K, H, W)`: the vector in pixels (columns, rows) from each
        splat's position to its own pixel's centre (0 in value, not in derivative).
      background: None, or C values to composite the result over.

    Returns:
      C planes `(H, W)` of composited colour (premultiplied by coverage, or over
      `background`), and the coverage `(H, W)`.
    """
    layers = face.shape[0]
    z = jax.lax.stop_gradient(depth)
    covered = face >= 0
    channels = len(colours)
    zero = jnp.zeros(face.shape[1:], offset[0].dtype)
    acc = [[zero] * (channels + 1) for _ in range(3)]  # fg, surface, bg: channels, weight
    for di, dj in _TAPS:  # pixel p splats onto q = p + (di, dj); at q, p is (-di, -dj) away

        def source(x, fill, di=di, dj=dj):
            return shifted(x, -di, -dj, fill)

        z_p = source(z, 0.0)
        at_p, at_p_dist = _nearest_match(z_p, z[0])  # p's layers against q's nearest
        at_q, at_q_dist = _nearest_match(z, z_p[0])  # q's layers against p's nearest
        surface = jnp.where(at_q_dist < at_p_dist, -at_q, at_p)
        for layer in range(layers):
            dx = dj + source(offset[0][layer], 0.0)
            dy = di + source(offset[1][layer], 0.0)
            tap = COEF * jnp.exp(-(dx * dx + dy * dy) / (2 * VARIANCE))
            w = jnp.where(source(covered[layer], False), tap, 0.0)
            # Colours where a layer has no face are not read (a shader may leave NaN there).
            values = [source(jnp.where(covered[layer], c[layer], 0.0), 0.0) for c in colours]
            for b, routed in enumerate((surface > layer, surface == layer, surface < layer)):
                wb = jnp.where(routed, w, 0.0)
                sums = zip(acc[b][:channels], values, strict=True)
                acc[b] = [a + wb * v for a, v in sums] + [acc[b][channels] + wb]
    out = None
    for buffer in reversed(acc):  # background first, then "over" it
        scale = 1.0 / smax(buffer[channels], 1.0)
        layer = [x * scale for x in buffer]
        if out is not None:
            layer = [f + (1.0 - layer[-1]) * o for f, o in zip(layer, out, strict=True)]
        out = layer
    colour, alpha = out[:channels], out[channels]
    if background is not None:
        colour = [x + (1.0 - alpha) * background[c] for c, x in enumerate(colour)]
    return colour, alpha
