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


def log_transmittance(logits, valid):
    """`sum_f log(1 - D_f)` over the last axis; `logits = dist2 / sigma`, `valid` masks pairs."""
    return jnp.sum(jnp.where(valid, jax.nn.log_sigmoid(-logits), 0.0), axis=-1)


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
    # zn / gamma is ~1e4 at gamma = 1e-4, where float32 rounding alone (~6e-4) would perturb
    # the weights. The softmax is unchanged by a per-pixel constant, so work relative to the
    # nearest depth at the pixel: depth differences keep full precision.
    z_ref = jnp.min(jnp.where(valid, z, jnp.inf), axis=-1, initial=jnp.inf)
    z_ref = jax.lax.stop_gradient(jnp.where(jnp.isfinite(z_ref), z_ref, far))  # (P,)
    scale = 1.0 / (gamma * (far - near))
    log_w = jnp.where(valid, jax.nn.log_sigmoid(logits) + (z_ref[:, None] - z) * scale, -jnp.inf)
    log_bg = eps / gamma - (far - z_ref) * scale  # (eps - zn_ref) / gamma
    # The shift cancels in the ratio; stop_gradient keeps it out of the backward pass.
    shift = jax.lax.stop_gradient(jnp.maximum(jnp.max(log_w, axis=-1, initial=-jnp.inf), log_bg))
    w = jnp.where(valid, jnp.exp(log_w - shift[:, None]), 0.0)  # (P, F)
    w_bg = jnp.exp(log_bg - shift)  # (P,)
    num = jnp.einsum("pf,cpf->pc", w, colours) + w_bg[:, None] * background
    return num / (jnp.sum(w, axis=-1) + w_bg)[:, None]
