"""Property-based tests over random triangle soups, cameras (inside and outside the soup, so
faces cross the near plane) and blur values from sharp to very soft.

Shapes and static settings are fixed, so each property compiles once and the examples vary
only values. `HYPOTHESIS_PROFILE=thorough` (tests/conftest.py) runs many more examples.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import reference
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softjax as sj

F = 7  # faces in a soup
SIZE = (9, 11)
CFG = sj.RasterConfig(SIZE, tile_size=4, chunk=3, batch_pairs=96, pair_capacity=23,
                      aovs=("depth", "face_id"))  # fmt: skip
DENSE = dataclasses.replace(CFG, method="dense")

coords = st.floats(-1.5, 1.5, width=32, allow_subnormal=False)
soups = hnp.arrays(np.float32, (3 * F, 3), elements=coords)
colours = hnp.arrays(np.float32, (3 * F, 3), elements=st.floats(0, 1, width=32))
# Log-uniform blur: from nearly hard edges to a blur wider than the image.
sigmas = st.floats(-7.0, -1.0).map(lambda e: np.float32(10.0**e))
gammas = st.floats(-5.0, 0.0).map(lambda e: np.float32(10.0**e))


@st.composite
def cameras(draw):
    """An eye at distance 0.3 (inside the soup) to 6 looking near the origin, and `near`."""
    theta = draw(st.floats(0.0, 2 * np.pi))
    phi = draw(st.floats(-1.4, 1.4))
    dist = draw(st.floats(0.3, 6.0))
    eye = dist * np.array([np.cos(phi) * np.sin(theta), np.sin(phi), np.cos(phi) * np.cos(theta)])
    at = draw(hnp.arrays(np.float32, (3,), elements=st.floats(-0.25, 0.25, width=32)))
    assume(np.linalg.norm(eye - at) > 1e-2)
    near = draw(st.sampled_from([1e-3, 0.1, 0.5]))
    return np.float32(eye), at, np.float32(near)


FACES = np.arange(3 * F).reshape(F, 3)


def _camera(cam):
    eye, at, near = cam
    return sj.look_at(eye, at, near=near, fov=55.0)


@jax.jit
def _render_and_grads(verts, cols, eye, at, near, sigma, gamma):
    def loss(v, c, e):
        mesh = sj.Mesh(v, FACES, c)
        rgba, out = sj.render(mesh, sj.look_at(e, at, near=near, fov=55.0), CFG, sigma=sigma,
                              gamma=gamma)  # fmt: skip
        return jnp.sum(rgba * jnp.arange(4.0)) + 1e-2 * jnp.sum(out["depth"]), (rgba, out)

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(verts, cols, eye)


@jax.jit
def _images(verts, cols, eye, at, near, sigma, gamma, faces):
    mesh, cam = sj.Mesh(verts, faces, cols), sj.look_at(eye, at, near=near, fov=55.0)
    tiled = sj.render(mesh, cam, CFG, sigma=sigma, gamma=gamma)
    dense = sj.render(mesh, cam, DENSE, sigma=sigma, gamma=gamma)
    return tiled, dense


@given(soups, colours, cameras(), sigmas, gammas)
def test_outputs_and_gradients_are_finite_and_in_range(verts, cols, cam, sigma, gamma):
    (_, (rgba, out)), grads = _render_and_grads(verts, cols, *cam, sigma, gamma)
    rgba = np.asarray(rgba)
    assert np.all(np.isfinite(rgba)) and np.all(np.isfinite(out["depth"]))
    assert np.all(rgba >= -1e-6) and np.all(rgba <= 1 + 1e-6)
    ids = np.asarray(out["face_id"])
    assert np.all((ids >= -1) & (ids < F))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))


def _repeated_face():
    """Face 4 repeated as face 6 with its corners in another order, seen head-on."""
    verts = np.zeros((3 * F, 3), np.float32)
    verts[[12, 18]], verts[[14, 19]] = (1, 0, 0), (0, 1, 0)
    cam = (np.float32([0, 0, 1]), np.float32([0, 0, 0]), np.float32(1e-3))
    return verts, np.zeros_like(verts), cam, np.float32(0.1), np.float32(1.0)


@given(soups, colours, cameras(), sigmas, gammas)
@example(*_repeated_face())
def test_tiled_equals_dense(verts, cols, cam, sigma, gamma):
    (rgba_t, out_t), (rgba_d, out_d) = _images(verts, cols, *cam, sigma, gamma, FACES)
    np.testing.assert_allclose(rgba_t, rgba_d, atol=2e-5, rtol=0)
    np.testing.assert_allclose(out_t["depth"], out_d["depth"], rtol=1e-4)
    ids_t, ids_d = np.asarray(out_t["face_id"]), np.asarray(out_d["face_id"])
    np.testing.assert_array_equal(ids_t >= 0, ids_d >= 0)
    # Exactly equal depths go to the lower index in both methods; two faces whose depths at
    # a pixel differ only by rounding (coplanar overlaps, a face repeated with its corners in
    # another order) may be ordered differently by the two compiled programs. Every pixel
    # where the ids differ must be such a tie: both planes at the same depth along its ray.
    rows, cols_ = np.nonzero(ids_t != ids_d)
    if len(rows):
        depths = _plane_depths(verts, cam)  # (H, W, F)
        z_t = depths[rows, cols_, ids_t[rows, cols_]]
        z_d = depths[rows, cols_, ids_d[rows, cols_]]
        np.testing.assert_allclose(z_t, z_d, rtol=1e-5)


def _plane_depths(verts, cam):
    """View depth `(H, W, F)` (float64) of each face's plane along each pixel's ray."""
    eye = np.asarray(cam[0], np.float64)
    right, down, forward = np.asarray(_camera(cam).rotation, np.float64)
    # The pixel rays of the reference (`reference.camera_rays`), in this camera's frame.
    dirs = reference.camera_rays(eye, eye + forward, -down, 55.0, SIZE)
    tri = np.asarray(verts, np.float64)[FACES]  # (F, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    num = np.einsum("fk,fk->f", n, tri[:, 0] - eye)
    den = np.einsum("hwk,fk->hwf", dirs, n)
    return num / np.where(den == 0, np.inf, den)


@given(soups, colours, cameras(), sigmas, gammas, st.randoms(use_true_random=False))
def test_permuting_faces_permutes_nothing_but_the_ids(verts, cols, cam, sigma, gamma, rnd):
    order = np.array(rnd.sample(range(F), F))
    (rgba, out), _ = _images(verts, cols, *cam, sigma, gamma, FACES)
    (rgba_p, out_p), _ = _images(verts, cols, *cam, sigma, gamma, FACES[order])
    np.testing.assert_allclose(rgba_p, rgba, atol=2e-5, rtol=0)
    ids, ids_p = np.asarray(out["face_id"]), np.asarray(out_p["face_id"])
    # Where no two faces are at the same depth, the pixel shows the same face.
    shown = np.where(ids_p >= 0, order[np.maximum(ids_p, 0)], -1)
    np.testing.assert_array_equal(shown >= 0, ids >= 0)
    agree = np.mean(shown == ids)
    assert agree >= 0.97


@given(soups, colours, cameras(), sigmas, gammas)
def test_flipping_the_winding_changes_nothing_without_culling(verts, cols, cam, sigma, gamma):
    (rgba, out), _ = _images(verts, cols, *cam, sigma, gamma, FACES)
    (rgba_f, out_f), _ = _images(verts, cols, *cam, sigma, gamma, FACES[:, ::-1])
    np.testing.assert_allclose(rgba_f, rgba, atol=2e-5, rtol=0)
    ids, ids_f = np.asarray(out["face_id"]), np.asarray(out_f["face_id"])
    # The inside test ignores the winding exactly; which of two overlapping faces is nearer
    # may follow rounding where their depths (computed from reordered corners) tie.
    np.testing.assert_array_equal(ids_f >= 0, ids >= 0)
    assert np.mean(ids_f == ids) >= 0.95


rotations = st.tuples(st.floats(-np.pi, np.pi), st.floats(-1.0, 1.0), st.floats(-1.0, 1.0))
shifts = hnp.arrays(np.float32, (3,), elements=st.floats(-3.0, 3.0, width=32))


@given(soups, colours, cameras(), sigmas, gammas, rotations, shifts)
def test_moving_mesh_and_camera_together_changes_nothing(verts, cols, cam, sigma, gamma, rot,
                                                         shift):  # fmt: skip
    eye, at, near = cam
    # Near-degenerate corners (a face edge-on to the camera) can flip by rounding alone.
    a, b, c = (float(x) for x in rot)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    r = rz @ rx @ ry

    def move(p):
        return np.float32(np.asarray(p, np.float64) @ r.T + shift)

    cam_moved = sj.look_at(move(eye), move(at), up=np.float32(r[:, 1]), near=near, fov=55.0)
    cam_here = sj.look_at(eye, at, near=near, fov=55.0)
    # Both cameras must have the same orientation (look_at picks another up near the pole).
    here = np.asarray(cam_here.rotation, np.float64) @ r.T
    assume(np.abs(here - np.asarray(cam_moved.rotation)).max() < 1e-4)
    mesh, moved = sj.Mesh(verts, FACES, cols), sj.Mesh(move(verts), FACES, cols)
    cfg = dataclasses.replace(CFG, aovs=())
    a_img = np.asarray(sj.render(mesh, cam_here, cfg, sigma=sigma, gamma=gamma))
    b_img = np.asarray(sj.render(moved, cam_moved, cfg, sigma=sigma, gamma=gamma))
    # Moving the vertices rounds them: compare where the image does not hinge on rounding
    # (a soft blur amplifies a 1e-7 move by up to 1 / sqrt(sigma)).
    tol = 2e-4 + 2e-6 / float(np.sqrt(sigma))
    assert np.mean(np.abs(a_img - b_img) <= tol) >= 0.98
