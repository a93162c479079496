"""The colour aggregation of soft visibility: SoftRas's depth softmax over faces and the
background (Liu et al., ICCV 2019, eqs. 5-6), or the nearest face's colour (`color="hard"`).

Weights `D_f * exp(zn_f / gamma)` and `exp(eps / gamma)` for the background, computed in log
space relative to a reference depth, so that gamma = 1e-6 does not overflow."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from softjax._src.numerics import HIGHEST

COLOURS = ("softmax", "hard")


def softmax_scale(gamma: float, near, far):
    """`1 / (gamma * (far - near))`: turns a depth difference into a softmax logit."""
    return 1.0 / (gamma * (far - near))


def colour_logits(log_d, z, z_ref, scale, valid):
    """`log(D) + (zn - zn_ref) / gamma` per pair, -inf where `valid` is False.

    `zn = (far - z) / (far - near)`; logits are taken relative to a reference depth `z_ref`
    (broadcast against `z`): zn / gamma is ~1e4 at gamma = 1e-4, where float32 rounding alone
    (~6e-4) would perturb the weights, while depth differences keep full precision. The
    softmax is unchanged by this per-pixel constant.
    """
    return jnp.where(valid, log_d + (z_ref - z) * scale, -jnp.inf)


def background_logit(z_ref, far, scale, gamma: float, eps: float):
    """The background's logit `(eps - zn_ref) / gamma`, relative to the same `z_ref`."""
    return eps / gamma - (far - z_ref) * scale


def hard_logits(face, winner, dtype):
    """The colour logits of `color="hard"` in `dtype`: 0 for the pixel's nearest covering
    face `winner` (-1 for none), -inf for the others (`face` and `winner` broadcast)."""
    return jnp.where(face == winner, 0.0, -jnp.inf).astype(dtype)


def hard_background_logit(winner, dtype):
    """The background's logit under `color="hard"`: 0 where no face holds the pixel centre,
    else the lowest finite number (not -inf, so that running maxima stay finite)."""
    return jnp.where(winner < 0, 0.0, float(jnp.finfo(dtype).min)).astype(dtype)


def softmax(log_w, log_bg, colours, background):
    """The colour of weights `exp(log_w) (P, F)` over `colours (C, P, F)` and `exp(log_bg)
    (P,)` over `background (C,)`: `(P, C)`, not premultiplied by alpha."""
    # The shift cancels in the ratio; stop_gradient keeps it out of the backward pass.
    shift = jax.lax.stop_gradient(jnp.maximum(jnp.max(log_w, axis=-1, initial=-jnp.inf), log_bg))
    w = jnp.exp(log_w - shift[:, None])  # (P, F); 0 where log_w = -inf
    w_bg = jnp.exp(log_bg - shift)  # (P,)
    num = jnp.einsum("pf,cpf->pc", w, colours, precision=HIGHEST) + w_bg[:, None] * background
    return num / (jnp.sum(w, axis=-1) + w_bg)[:, None]


def softmax_colour(log_d, z, colours, valid, background, *, near, far, gamma, eps: float):
    """SoftRas depth-aware softmax over the face axis.

    Args:
      log_d: `(P, F)` log coverage of each pair.
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
    log_w = colour_logits(log_d, z, z_ref[:, None], scale, valid)
    return softmax(log_w, background_logit(z_ref, far, scale, gamma, eps), colours, background)
