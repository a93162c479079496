"""softjax.losses: values against hand computations, empty masks, float64 finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_grad

from softjax import losses

mse = jax.jit(losses.mse)
l1 = jax.jit(losses.l1)


def _compiled_once(f):
    """`f` for `check_grad` with a single compilation: its values and its gradient both come
    from one jitted `jax.value_and_grad(f)`."""
    value_and_grad = jax.jit(jax.value_and_grad(f))

    @jax.custom_vjp
    def fun(x):
        return value_and_grad(x)[0]

    def fwd(x):
        return value_and_grad(x)

    def bwd(grad, g):
        return (g * grad,)

    fun.defvjp(fwd, bwd)
    return fun


# --- image losses -------------------------------------------------------------------------------


def test_mse_l1_without_mask_are_plain_means():
    rng = np.random.default_rng(0)
    pred, target = rng.random((2, 5, 6, 3))
    np.testing.assert_allclose(mse(pred, target), np.mean((pred - target) ** 2), rtol=1e-6)
    np.testing.assert_allclose(l1(pred, target), np.mean(np.abs(pred - target)), rtol=1e-6)
    # A broadcast target: the mean is still over pred's elements.
    np.testing.assert_allclose(mse(pred, 0.5), np.mean((pred - 0.5) ** 2), rtol=1e-6)


def test_mse_l1_with_masks():
    rng = np.random.default_rng(1)
    pred, target = rng.random((2, 5, 6, 3))
    mask = rng.random((5, 6)) < 0.4
    sel = (pred - target)[mask]  # (n, 3): the masked pixels' channels
    got = mse(pred, target, mask[..., None])
    np.testing.assert_allclose(got, np.mean(sel**2), rtol=1e-6)
    np.testing.assert_allclose(l1(pred, target, mask[..., None]), np.mean(np.abs(sel)), rtol=1e-6)
    # An (H, W) mask on (H, W) maps, and on a batch of them.
    d, t = pred[..., 0], target[..., 0]
    np.testing.assert_allclose(mse(d, t, mask), np.mean((d - t)[mask] ** 2), rtol=1e-6)
    batch = np.stack([d, t])
    np.testing.assert_allclose(l1(batch, 0.0, mask), np.mean(np.abs(batch[:, mask])), rtol=1e-6)
    # Float weights: a weighted mean.
    w = rng.random((5, 6))
    np.testing.assert_allclose(mse(d, t, w), np.sum(w * (d - t) ** 2) / np.sum(w), rtol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        mse(pred, target, mask)  # (5, 6) does not broadcast to (5, 6, 3)
    with pytest.raises(ValueError, match="target"):
        l1(pred, target[:, :2])


@pytest.mark.parametrize("loss", [mse, l1])
def test_empty_mask_gives_zero_with_zero_gradient(loss):
    pred = jnp.asarray(np.random.default_rng(2).random((4, 4, 3)), jnp.float32)
    empty = jnp.zeros((4, 4, 1), bool)
    value, grad = jax.jit(jax.value_and_grad(lambda p: loss(p, 0.25, empty)))(pred)
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_image_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    target = rng.random((4, 5))
    mask = rng.random((4, 5)) < 0.6
    with jax.enable_x64(True):
        for loss in (mse, l1):
            fun = _compiled_once(lambda p, loss=loss: loss(p, target, mask))
            # Stay away from |pred - target| = 0, where l1 has a kink.
            check_grad(fun, target + rng.choice([-1, 1], (4, 5)) * rng.uniform(0.1, 1, (4, 5)),
                       rng, 6)  # fmt: skip


def test_silhouette_iou_loss_hand_values():
    a = np.zeros((4, 4))
    a[:2] = 1
    b = np.zeros((4, 4))
    b[:, :2] = 1
    np.testing.assert_allclose(losses.silhouette_iou_loss(a, a), 0.0, atol=1e-6)
    np.testing.assert_allclose(losses.silhouette_iou_loss(a, 1 - a), 1.0, atol=1e-6)
    # Intersection 4, union 12.
    np.testing.assert_allclose(losses.silhouette_iou_loss(a, b), 1 - 4 / 12, atol=1e-6)
