"""Coverage probabilities and their aggregation into silhouettes and colours.

SoftRas (Liu et al., ICCV 2019, eqs. 1-6): face f covers a pixel with probability
`D_f = sigmoid(dist2_f / sigma)` (dist2 signed, positive inside); the silhouette is
`1 - prod_f (1 - D_f)`; the colour is a softmax over faces and the background with weights
`D_f * exp(zn_f / gamma)` and `exp(eps / gamma)`.

Both reductions are computed in log space: `log(1 - D) = log_sigmoid(-x)` and
`log(D) + zn / gamma` minus a running maximum, so gamma = 1e-6 or sigma = 1e-9 neither overflow
nor lose the silhouette to rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax._numerics import HIGHEST

# The per-pair terms below are shared by the dense reference and the tiled stream, so both
# compute SoftRas's weights from one set of formulas.


def coverage_logits(dist2, sigma):
    """`dist2 / sigma`, as a product with one reciprocal so that every path rounds the same
    way (with no cull, far pixels' logits reach thousands, where one ulp matters)."""
    return dist2 * (1.0 / sigma)


def log1m_coverage(logits, valid):
    """`log(1 - D)` per pair (0 where `valid` is False); `logits = dist2 / sigma`."""
    return jnp.where(valid, jax.nn.log_sigmoid(-logits), 0.0)


def softmax_scale(gamma: float, near, far):
    """`1 / (gamma * (far - near))`: turns a depth difference into a softmax logit."""
    return 1.0 / (gamma * (far - near))


def colour_logits(logits, z, z_ref, scale, valid):
    """`log(D) + (zn - zn_ref) / gamma` per pair, -inf where `valid` is False.

    `zn = (far - z) / (far - near)`; logits are taken relative to a reference depth `z_ref`
    (broadcast against `z`): zn / gamma is ~1e4 at gamma = 1e-4, where float32 rounding alone
    (~6e-4) would perturb the weights, while depth differences keep full precision. The
    softmax is unchanged by this per-pixel constant.
    """
    return jnp.where(valid, jax.nn.log_sigmoid(logits) + (z_ref - z) * scale, -jnp.inf)


def background_logit(z_ref, far, scale, gamma: float, eps: float):
    """The background's logit `(eps - zn_ref) / gamma`, relative to the same `z_ref`."""
    return eps / gamma - (far - z_ref) * scale


def log_transmittance(logits, valid):
    """`sum_f log(1 - D_f)` over the last axis; `logits = dist2 / sigma`, `valid` masks pairs."""
    return jnp.sum(log1m_coverage(logits, valid), axis=-1)


def silhouette_from_log_transmittance(log_t):
    """`1 - prod(1 - D) = -expm1(sum log(1 - D))`, accurate when alpha is tiny."""
    return 0.0 - jnp.expm1(log_t)  # 0 - x, not -x: no -0.0 where nothing covers the pixel


def softmax_colour(logits, z, colours, valid, background, *, near, far, gamma: float, eps: float):
    """SoftRas depth-aware softmax over the face axis.

    Args:
      logits: `(P, F)` coverage logits `dist2 / sigma`.
      z: `(P, F)` view depth of each face at each pixel; the softmax uses
        `zn = (far - z) / (far - near)` (larger is nearer).
      colours: `(C, P, F)` colour of each face at each pixel.
      valid: `(P, F)` (or `(F,)`) pairs that take part.
      background: `(C,)`; near, far: the camera's depths; gamma: temperature;
      eps: the background's `zn`.

    Returns:
      `(P, C)` colour, not premultiplied by alpha.
    """
    # Reference depth: the nearest depth at the pixel (see `colour_logits`).
    z_ref = jnp.min(jnp.where(valid, z, jnp.inf), axis=-1, initial=jnp.inf)
    z_ref = jax.lax.stop_gradient(jnp.where(jnp.isfinite(z_ref), z_ref, far))  # (P,)
    scale = softmax_scale(gamma, near, far)
    log_w = colour_logits(logits, z, z_ref[:, None], scale, valid)
    log_bg = background_logit(z_ref, far, scale, gamma, eps)
    # The shift cancels in the ratio; stop_gradient keeps it out of the backward pass.
    shift = jax.lax.stop_gradient(jnp.maximum(jnp.max(log_w, axis=-1, initial=-jnp.inf), log_bg))
    w = jnp.where(valid, jnp.exp(log_w - shift[:, None]), 0.0)  # (P, F)
    w_bg = jnp.exp(log_bg - shift)  # (P,)
    num = jnp.einsum("pf,cpf->pc", w, colours, precision=HIGHEST) + w_bg[:, None] * background
    return num / (jnp.sum(w, axis=-1) + w_bg)[:, None]
