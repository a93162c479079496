"""`sj.texture`'s filters (nearest, linear, trilinear, anisotropic) and `sj.mipmaps` against a
float64 NumPy transcription of their documented rules (`mipref.py`), and their gradients
against central differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_grad
from mipref import np_aniso, np_level, np_mipmaps, np_texture

import softjax as sj


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _jacobians(rng, n, size):
    """`(n, 2, 2)` UV Jacobians of every kind: random directions with footprints from a
    twentieth of a texel (magnification) to 4x the texture (past the last level), rank one
    (a grazing view), isotropic (the ellipse a circle), and zero."""
    scale = np.exp(rng.uniform(np.log(0.05), np.log(4.0 * size), n)) / size
    jac = rng.standard_normal((n, 2, 2)) * scale[:, None, None]
    k = n // 5
    jac[:k] = np.einsum("ni,nj->nij", rng.standard_normal((k, 2)), rng.standard_normal((k, 2)))
    jac[:k] *= scale[:k, None, None]
    a, b = rng.standard_normal((2, k)) * scale[k : 2 * k]  # rotation and scale: isotropic
    jac[k : 2 * k] = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)
    jac[2 * k : 2 * k + 3] = 0.0
    return jac


@pytest.mark.parametrize("shape", [(8, 4, 2), (6, 4, 1), (8, 2, 3), (1, 1, 2), (5, 7, 1)])
def test_mipmaps_match_the_transcription(shape):
    tex = np.random.default_rng(0).uniform(0, 1, shape)
    levels = sj.mipmaps(tex)
    expected = np_mipmaps(tex)
    assert [x.shape for x in levels] == [x.shape for x in expected]
    for got, want in zip(levels, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("wrap", ["clamp", "wrap"])
def test_filters_match_the_transcription(wrap):
    """Nearest, bilinear and trilinear at random UVs (in and well outside [0, 1]) with
    Jacobians from magnification to minification past the last level, degenerate ones
    included; a non-square texture and a custom pyramid."""
    rng = np.random.default_rng(1)
    tex = rng.uniform(0, 1, (16, 32, 3))
    n = 200
    uv = rng.uniform(-0.5, 1.5, (n, 2))
    jac = _jacobians(rng, n, 32)
    lam = np.array([np_level(j, 32, 16) for j in jac])
    levels = len(np_mipmaps(tex))
    assert np.sum(lam < 0) > 10 and np.sum(lam > levels - 1) > 10  # both clamps are reached
    assert np.sum((lam > 0.5) & (lam < levels - 1.5)) > 50
    custom = [rng.uniform(0, 1, s) for s in [(16, 32, 3), (4, 4, 3), (1, 3, 3)]]
    sample = jax.jit(
        lambda t, u, j, m: [sj.texture(t, u, filter="nearest", wrap=wrap),
                            sj.texture(t, u, filter="linear", wrap=wrap),
                            sj.texture(t, u, j, filter="trilinear", wrap=wrap),
                            sj.texture(t, u, j, filter="trilinear", wrap=wrap, mips=m),
                            sj.texture(t, u, j, filter="anisotropic", wrap=wrap),
                            sj.texture(t, u, j, filter="anisotropic", wrap=wrap, max_aniso=3),
                            sj.texture(t, u, j, filter="anisotropic", wrap=wrap, mips=m)]
    )  # fmt: skip
    got = sample(tex, uv, jac, custom)
    cases = [("nearest", None, 8), ("linear", None, 8), ("trilinear", None, 8),
             ("trilinear", custom, 8), ("anisotropic", None, 8), ("anisotropic", None, 3),
             ("anisotropic", custom, 8)]  # fmt: skip
    for out, (filt, lv, most) in zip(got, cases, strict=True):
        want = np_texture(tex, uv, jac, filter=filt, wrap=wrap, levels=lv, max_aniso=most)
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-5, err_msg=f"{filt} {most}")
    taps = np.array([np_aniso(j, 32, 16, 8)[0] for j in jac])
    assert {1, 8} <= set(taps) and np.sum((taps > 1) & (taps < 8)) > 20  # every tap count
    # The linear filter is the renderer's bilinear sampler; trilinear with zero Jacobians is
    # bilinear in the texture itself.
    np.testing.assert_array_equal(got[2][2 * (n // 5) : 2 * (n // 5) + 3],
                                  got[1][2 * (n // 5) : 2 * (n // 5) + 3])  # fmt: skip


def _check_filter_gradients(filt, tex, uv, jac, rng):
    """`sj.texture(..., filter=filt)`'s gradients with respect to the texture, the UVs and
    the Jacobian against central differences of a random weighting of its samples."""
    weights = rng.standard_normal((uv.shape[0], tex.shape[-1]))

    def loss(t, u, j):
        return jnp.sum(weights * sj.texture(t, u, j, filter=filt))

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(tex, uv, jac)
    f = jax.jit(loss)
    check_grad(lambda t: f(t, uv, jac), tex, rng, 6, grad=grads[0])
    check_grad(lambda u: f(tex, u, jac), uv, rng, 6, grad=grads[1])
    check_grad(lambda j: f(tex, uv, j), jac, rng, 6, grad=grads[2])


def test_trilinear_gradients_match_central_differences():
    """With respect to the texture (through the pyramid), the UVs and the Jacobian, at
    samples whose level of detail lies between two levels (away from the clamps and from
    integer levels, where the blend has kinks)."""
    rng = np.random.default_rng(2)
    tex = rng.uniform(0, 1, (16, 16, 2))
    n = 12
    uv = rng.uniform(0.1, 0.9, (n, 2))
    target = rng.uniform(0.4, 3.6, n)  # lambda of each sample
    frac = target - np.floor(target)
    target = np.where(np.abs(frac - 0.5) > 0.35, np.floor(target) + 0.5, target)
    jac = np.stack([np.eye(2)] * n) + 0.3 * rng.standard_normal((n, 2, 2))
    lam = np.array([np_level(j, 16, 16) for j in jac])
    jac *= (2.0 ** (target - lam))[:, None, None]
    assert np.allclose([np_level(j, 16, 16) for j in jac], target)
    _check_filter_gradients("trilinear", tex, uv, jac, rng)
    # Every level reaches the texture: the texels of the 1 x 1 level's mean all get some.
    big = np.full((1, 2, 2), 100.0)
    g = jax.grad(lambda t: jnp.sum(sj.texture(t, uv[:1], big, filter="trilinear")))(tex)
    np.testing.assert_allclose(g, 1.0 / 256.0, rtol=1e-12)


def test_anisotropic_gradients_match_central_differences():
    """As for trilinear, at footprints 2.5, 5.5 and 12 texels long and 1.3 wide along random
    directions: 2, 5 and (capped by `max_aniso`) 8 taps, levels between 0 and 1."""
    rng = np.random.default_rng(4)
    tex = rng.uniform(0, 1, (16, 16, 2))
    n = 9
    uv = rng.uniform(0.2, 0.8, (n, 2))
    angle = rng.uniform(0, np.pi, n)
    major = np.array([2.5, 5.5, 12.0] * 3)
    axes = np.stack([np.cos(angle), np.sin(angle)], -1)
    jac = np.stack([major[:, None] * axes, np.stack([-axes[:, 1], axes[:, 0]], -1) * 1.3],
                   -1) / 16  # fmt: skip
    taps = [np_aniso(j, 16, 16, 8) for j in jac]
    assert [t[0] for t in taps] == [2, 5, 8] * 3
    assert all(0.1 < t[1] % 1 < 0.9 for t in taps)
    _check_filter_gradients("anisotropic", tex, uv, jac, rng)


def test_gradients_are_finite_at_degenerate_jacobians():
    """Zero, rank-one and isotropic Jacobians (the square roots' kinks) and a custom pyramid
    whose levels get the gradient."""
    rng = np.random.default_rng(3)
    tex = rng.uniform(0, 1, (8, 8, 1))
    jac = np.stack([np.zeros((2, 2)), np.eye(2) * 0.3, np.outer([1.0, 2.0], [0.5, 0.1]),
                    np.array([[0.2, -0.1], [0.1, 0.2]])])  # fmt: skip
    uv = rng.uniform(0, 1, (4, 2))
    mips = list(sj.mipmaps(tex))

    for filt in ("trilinear", "anisotropic"):

        def loss(t, u, j, m, filt=filt):
            return jnp.sum(sj.texture(t, u, j, filter=filt, mips=m) ** 2)

        grads = jax.grad(loss, argnums=(1, 2, 3))(tex, uv, jac, mips)
        for g in jax.tree.leaves(grads):
            assert np.all(np.isfinite(np.asarray(g))), filt
        assert np.abs(np.asarray(grads[2][1])).sum() > 0, filt  # the second level is sampled


def test_bad_input_is_rejected():
    tex, uv = np.ones((4, 4, 3)), np.full((5, 2), 0.5)
    with pytest.raises(ValueError, match="needs `uv_jacobian`"):
        sj.texture(tex, uv, filter="trilinear")
    with pytest.raises(ValueError, match="must have shape \\(5, 2, 2\\)"):
        sj.texture(tex, uv, np.zeros((5, 2)), filter="trilinear")
    with pytest.raises(ValueError, match="filter"):
        sj.texture(tex, uv, filter="cubic")
    with pytest.raises(ValueError, match="mips\\[0\\]"):
        sj.texture(tex, uv, np.zeros((5, 2, 2)), filter="trilinear", mips=[np.ones((2, 2, 3))])
    with pytest.raises(ValueError, match="channels"):
        sj.texture(tex, uv, np.zeros((5, 2, 2)), filter="trilinear",
                   mips=[tex, np.ones((2, 2, 1))])  # fmt: skip
    with pytest.raises(ValueError, match="max_aniso"):
        sj.texture(tex, uv, np.zeros((5, 2, 2)), filter="anisotropic", max_aniso=0)
    with pytest.raises(ValueError, match="floating"):
        sj.mipmaps(np.ones((4, 4, 3), np.int32))


def _opencv_camera():
    k = np.array([[60.0, 0.0, 33.0], [0.0, 55.0, 22.0], [0.0, 0.0, 1.0]])
    return sj.Camera.from_opencv(k, np.eye(3), np.array([0.1, -0.05, 3.2]), (48, 64))


CAMERAS = {
    "perspective": lambda: sj.look_at(np.array([0.4, 0.5, 2.8]), fov=45.0),
    "orthographic": lambda: sj.look_at(
        np.array([0.4, 0.5, 2.8]), projection="orthographic", scale=1.3
    ),  # fmt: skip
    "opencv": _opencv_camera,
}


@pytest.mark.parametrize("camera", list(CAMERAS))
def test_interpolated_derivatives_match_neighbouring_pixels(camera):
    """`sj.interpolate(..., camera)`'s per-pixel derivatives of smooth attributes on an
    ellipsoid, against the attributes at the neighbouring pixels of the same face: central
    differences (second-order accurate) and, tighter, Simpson's rule, `a[j + 1] - a[j - 1] =
    (d[j - 1] + 4 d[j] + d[j + 1]) / 3` up to the fifth derivative. Layers give the same."""
    base = sj.ico_sphere(1)
    verts = np.asarray(base.verts, np.float64) * np.array([1.0, 0.8, 0.9])
    mesh = sj.Mesh(verts, base.faces)
    values = np.stack([np.sin(2 * verts[:, 0]) + verts[:, 1], verts[:, 2] * verts[:, 0]], -1)
    cam = CAMERAS[camera]()
    cfg = sj.RasterConfig((48, 64), visibility="hard")
    frags = sj.rasterize(mesh, cam, cfg)
    a, d = (np.asarray(x) for x in sj.interpolate(values, frags, mesh, cam))
    face = np.asarray(frags.face_id)
    assert d.shape == (48, 64, 2, 2)
    assert np.all(d[face < 0] == 0)
    scale = np.abs(d).max()
    for axis in (0, 1):  # columns, then rows
        f, v, g = (np.moveaxis(x, 1 - axis, 0) for x in (face, a, d[..., axis]))
        same = (f[1:-1] >= 0) & (f[1:-1] == f[:-2]) & (f[1:-1] == f[2:])
        assert same.sum() > 300
        central = np.abs((v[2:] - v[:-2]) / 2 - g[1:-1])[same]
        simpson = np.abs(v[2:] - v[:-2] - (g[:-2] + 4 * g[1:-1] + g[2:]) / 3)[same]
        assert central.max() <= 1e-3 * scale, (axis, central.max(), scale)
        assert simpson.max() <= 1e-5 * scale, (axis, simpson.max(), scale)
    layered = sj.rasterize(mesh, cam, cfg, layers=2)
    a2, d2 = sj.interpolate(values, layered, mesh, cam)
    assert d2.shape == (48, 64, 2, 2, 2)
    np.testing.assert_allclose(d2[:, :, 0], d, rtol=0, atol=1e-12)
    # The derivatives of UVs drive the mipmapped filters.
    uv = (a - a.min()) / np.ptp(a)
    tex = np.random.default_rng(5).uniform(0, 1, (64, 64, 3))
    rgb = sj.texture(tex, uv, d / np.ptp(a), filter="trilinear")
    assert rgb.shape == (48, 64, 3) and np.all(np.isfinite(np.asarray(rgb)))

    # Gradients reach the vertices through the UVs and their derivatives, finite.
    def loss(v):
        m = sj.Mesh(v, base.faces)
        uv, duv = sj.interpolate(values / 4 + 0.5, sj.rasterize(m, cam, cfg), m, cam)
        return jnp.sum(sj.texture(tex, uv, duv, filter="anisotropic"))

    g = np.asarray(jax.grad(loss)(verts))
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
