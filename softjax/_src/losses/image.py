"""Image losses: masked MSE and L1, and SoftRas's soft silhouette IoU."""

from __future__ import annotations

import jax.numpy as jnp

from softjax._src.checks import check_shape
from softjax._src.losses.checks import check_broadcasts_to, real_array
from softjax._src.numerics import safe_div


def _masked_mean(err, mask):
    """Mean of `err`, or its `mask`-weighted mean; 0 with zero gradient for an empty mask."""
    if mask is None:
        return jnp.mean(err)
    mask = real_array(mask, "mask", err.dtype)
    check_broadcasts_to(mask, err.shape, "mask")
    weights = jnp.broadcast_to(mask, err.shape)
    return safe_div(jnp.sum(weights * err), jnp.sum(weights))


def _image_pred(pred):
    pred = real_array(pred, "pred")
    if not jnp.issubdtype(pred.dtype, jnp.floating):
        pred = pred.astype(jnp.result_type(float))
    return pred


def _image_pair(pred, target):
    pred = _image_pred(pred)
    target = real_array(target, "target", pred.dtype)
    check_broadcasts_to(target, pred.shape, "target")
    return pred, jnp.broadcast_to(target, pred.shape)


def mse(pred, target, mask=None):
    """Mean squared error between images, optionally over a mask.

    Without a mask, `mean((pred - target)^2)` over all elements of `pred` (every pixel,
    channel and batch entry). With a mask, the weighted mean over the masked elements,
    `sum(m * (pred - target)^2) / sum(m)`, where `m` is `mask` broadcast to `pred.shape`: a
    channel counts as its own element, so an `(H, W, 1)` mask on an `(H, W, 3)` image gives the
    mean over the selected pixels' channels. An empty mask (`sum(m) == 0`) gives 0 with zero
    gradient. Same as `torch.nn.functional.mse_loss(reduction="mean")` without a mask.

    Args:
      pred: `(...)` float array, e.g. an `(H, W)` silhouette or depth map, an `(H, W, C)` image
        or a batch `(B, H, W, C)`.
      target: the shape of `pred`, or one that broadcasts to exactly `pred.shape` (e.g. a
        scalar, or `(H, W, 1)` for an `(H, W, C)` image).
      mask: None, or bool or non-negative float weights whose shape broadcasts to exactly
        `pred.shape` under NumPy rules: trailing axes are aligned, and each mask axis is either
        `pred`'s size or 1; missing leading axes repeat the mask. So `(H, W)` serves `(H, W)`
        and `(B, H, W)` images; for channels-last `(H, W, C)` images pass `(H, W, 1)` (e.g.
        `mask[..., None]`), or `(H, W, C)` for per-channel weights. A mask with more
        dimensions than `pred`, or one that would enlarge it, is rejected.

    Returns:
      A scalar.

    Raises:
      ValueError: `target` or `mask` does not broadcast to exactly `pred.shape`, or an argument
        is complex.
      TypeError: an argument is not numeric.
    """
    pred, target = _image_pair(pred, target)
    return _masked_mean(jnp.square(pred - target), mask)


def l1(pred, target, mask=None):
    """Mean absolute error between images, optionally over a mask.

    `mean(|pred - target|)`, or with a mask `sum(m * |pred - target|) / sum(m)` with `m` the mask
    broadcast to `pred.shape`; 0 with zero gradient for an empty mask. Arguments, shapes and
    mask rules as in `mse`. Same as `torch.nn.functional.l1_loss(reduction="mean")` without a
    mask; the gradient of `|x|` at 0 is taken as 0. Raises as `mse`.
    """
    pred, target = _image_pair(pred, target)
    return _masked_mean(jnp.abs(pred - target), mask)


def silhouette_iou_loss(pred, target, eps: float = 1e-6):
    """Soft IoU loss of SoftRas (Liu et al., ICCV 2019, `soft_renderer/losses.py`).

    `1 - sum(p * t) / (sum(p + t - p * t) + eps)`, sums over the last two (image) axes, then the
    mean over any leading batch axes.

    Args:
      pred, target: `(..., H, W)` silhouettes in [0, 1] (soft or hard), same shape (no
        broadcasting: the sums would silently count a stretched image several times).
      eps: keeps the ratio finite when both images are empty; that case gives a loss of 1 with
        zero gradients, as in SoftRas.

    Returns:
      A scalar in [0, 1].

    Raises:
      ValueError: `pred` has fewer than two dimensions, `target` a different shape, or either
        is complex.
      TypeError: either is not numeric.
    """
    pred = _image_pred(pred)
    target = real_array(target, "target", pred.dtype)
    if pred.ndim < 2:
        raise ValueError(f"`pred` must have shape (..., H, W), got {tuple(pred.shape)}")
    check_shape(target, pred.shape, "target")
    intersect = jnp.sum(pred * target, axis=(-2, -1))
    union = jnp.sum(pred + target - pred * target, axis=(-2, -1))
    return jnp.mean(1.0 - intersect / (union + eps))
