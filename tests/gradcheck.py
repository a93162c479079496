"""Central finite differences against jax.grad, in float64 (call inside jax.enable_x64)."""

import jax
import jax.numpy as jnp
import numpy as np

STEP = 1e-6
TOL = 1e-4


def check_grad(fun, x, rng, n_coords, step=STEP, tol=TOL, grad=None):
    """Compares `jax.grad(fun)` at `x` with central differences along `n_coords` random
    coordinate axes and one random direction; the loss must depend on `x`. `grad`, when
    given, is that gradient already computed (one `jax.grad` over several arguments compiles
    once where a call per argument compiles each)."""
    x = np.asarray(x, np.float64)
    grad = np.asarray(jax.grad(fun)(jnp.asarray(x)) if grad is None else grad)
    assert grad.shape == x.shape
    assert np.all(np.isfinite(grad))
    flat = x.ravel()
    idx = rng.choice(flat.size, size=min(n_coords, flat.size), replace=False)
    directions = [np.eye(flat.size)[i] for i in idx] + [rng.standard_normal(flat.size)]
    errors = []
    for d in directions:
        d = d.reshape(x.shape)
        fd = (fun(jnp.asarray(x + step * d)) - fun(jnp.asarray(x - step * d))) / (2 * step)
        ad = np.sum(grad * d)
        errors.append(abs(ad - fd) / max(abs(fd), 1e-2 * np.abs(grad).max()))
    assert max(errors) <= tol, f"max relative error {max(errors):.2e}"
    assert np.abs(grad).max() > 1e-3, "the loss must depend on this argument"
