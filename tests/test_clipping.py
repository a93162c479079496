"""Geometry at and behind the near plane is clipped in camera space, never culled whole, and
geometry that would leave the floating range never poisons an image."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad
from scenes import HARD, UP

import softjax as sj


def _ground(size=40.0, height=-0.6):
    """A large floor quad (two triangles) reaching far behind the camera, coloured by x and z."""
    s = size / 2
    verts = np.array([[-s, height, -s], [s, height, -s], [s, height, s], [-s, height, s]])
    colours = np.array([[0.9, 0.1, 0.2], [0.1, 0.9, 0.2], [0.2, 0.3, 0.9], [0.9, 0.8, 0.1]])
    return verts, np.array([[0, 2, 1], [0, 3, 2]]), colours


def _room():
    """A closed box seen from inside: every wall passes beside or behind the camera."""
    verts, faces = ref.box(size=(4.0, 3.0, 5.0), center=(0.0, 0.5, 0.0))
    colours = (verts - verts.min(0)) / np.ptp(verts, 0)
    return verts, faces, colours


SCENES = {
    # eye, looking at, near
    "ground": (_ground, (0.0, 0.4, 2.0), (0.0, 0.0, -3.0), 0.1),
    "room": (_room, (0.4, 0.3, 1.0), (1.5, 0.0, -2.0), 0.2),
}


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("scene", list(SCENES))
def test_geometry_crossing_the_near_plane_matches_ray_casting(scene, method):
    build, eye, at, near = SCENES[scene]
    verts, faces, colours = build()
    size = (30, 36)
    # The scene really crosses the near plane: some corners are behind the camera.
    rot = np.asarray(sj.look_at(eye, at).rotation, np.float64)
    depth = (verts - np.asarray(eye)) @ rot[2]
    assert depth.min() < 0 < depth.max()
    out = ref.raycast(verts, faces, colours, eye, at, UP, 60.0, near, size)
    assert out.mask.mean() > 0.4
    cam = sj.look_at(eye, at, UP, fov=60.0, near=near)
    cfg = sj.RasterConfig(size, method=method, **HARD)
    rgba = sj.render(sj.Mesh(np.float32(verts), faces, np.float32(colours)), cam, cfg)
    ref.assert_matches(scene, rgba, out)  # silhouette IoU >= 0.99, interior colour MAE <= 0.02


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_clipped_gradients_are_finite_and_match_finite_differences(method):
    verts, faces, colours = _ground(size=8.0)
    _, eye, at, near = SCENES["ground"]
    size = (12, 14)
    cfg = sj.RasterConfig(size, sigma=1e-3, gamma=1e-2, method=method)
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((*size, 4))

    def loss(v, e=None):
        e = jnp.asarray(eye) if e is None else e
        cam = sj.look_at(e, at, UP, fov=60.0, near=near)
        return jnp.sum(weights * sj.render(sj.Mesh(v, faces, colours), cam, cfg))

    with jax.enable_x64(True):
        grads, grad_eye = jax.grad(loss, argnums=(0, 1))(jnp.asarray(verts), jnp.asarray(eye))
        assert np.all(np.isfinite(grads)) and np.all(np.isfinite(grad_eye))
        # The corners behind the camera steer the clipped edges: they get gradients.
        assert np.abs(np.asarray(grads)[2:]).max() > 1e-3
        check_grad(loss, verts, rng, 6, grad=grads)
        check_grad(lambda e: loss(jnp.asarray(verts), e), np.asarray(eye), rng, 3, grad=grad_eye)


def test_the_cut_moves_continuously_with_the_geometry_behind_the_plane():
    """Moving a corner behind `near` moves the cut points along the plane: small steps make
    small changes."""
    cam = sj.look_at((0.0, 0.0, 2.0), fov=60.0, near=0.5)
    cfg = sj.RasterConfig((16, 16), sigma=1e-3, gamma=1e-2)
    tri = np.array([[-0.6, -0.5, 0.0], [0.6, -0.5, 0.0], [0.0, 0.3, 0.0]], np.float32)

    def image(z):
        v = tri.copy()
        v[2, 2] = z  # view depth 2 - z: the plane is at z = 1.5
        return np.asarray(sj.render(sj.Mesh(v, [[0, 1, 2]]), cam, cfg))

    steps = [image(1.7 + 1e-4 * k) for k in range(3)]
    assert max(np.abs(a - b).max() for a, b in zip(steps, steps[1:], strict=False)) < 2e-3
    assert steps[0][..., 3].max() > 0.9


def test_clipping_keeps_winding_for_backface_culling():
    """Both pieces of a face cut into a quad keep its orientation on screen."""
    verts, faces, colours = _ground()
    _, eye, at, near = SCENES["ground"]
    cam = sj.look_at(eye, at, UP, fov=60.0, near=near)
    cull = sj.RasterConfig((20, 20), cull_backfaces=True, **HARD)
    front = sj.render_silhouette(sj.Mesh(np.float32(verts), faces), cam, cull)
    back = sj.render_silhouette(sj.Mesh(np.float32(verts), faces[:, ::-1]), cam, cull)
    # The floor's faces point up (towards the camera above it).
    assert float(jnp.mean(front > 0.5)) > 0.4 and float(jnp.max(back)) == 0.0


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_a_face_past_the_floating_range_does_not_poison_the_image(method):
    """Just past a tiny `near`, a large face's screen coordinates would exceed float32's
    range: the face is dropped (finite, zero gradient) and the rest renders as without it."""
    good = np.array([[-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -2.0]], np.float32)
    huge = np.array([[-1e3, -1e3, 0.0], [1e3, -1e3, 0.0], [0.0, 1e3, 0.0]], np.float32)
    cam = sj.look_at((0.0, 0.0, 1e-19), (0.0, 0.0, -1.0), near=1e-20)  # `huge` at depth 1e-19
    cfg = sj.RasterConfig((12, 12), method=method, sigma=1e-3, gamma=1e-2)

    def loss(v, faces):
        rgba = sj.render(sj.Mesh(v, faces), cam, cfg, sj.Lights(0.5, [sj.DirectionalLight()]))
        return jnp.sum(rgba), rgba

    both = np.concatenate([good, huge])
    (_, rgba), grads = jax.value_and_grad(loss, has_aux=True)(both, [[0, 1, 2], [3, 4, 5]])
    alone = loss(good, [[0, 1, 2]])[1]
    assert np.all(np.isfinite(rgba)) and np.all(np.isfinite(grads))
    np.testing.assert_allclose(rgba, alone, atol=1e-6)
    np.testing.assert_array_equal(grads[3:], 0.0)
    assert float(rgba[6, 6, 3]) > 0.9


def test_depth_at_a_cut_far_from_its_corners_is_the_plane_depth():
    """Depth at a near-plane cut interpolated from corners 1e15 to either side of the plane
    cancelled in float32 (the depth output went to -3e7 across the image), and the unused
    piece of a face cut next to two corners at nearly equal huge depths weighted them by
    ~1e7, overflowing to inf: zero times that is NaN on the dense path. The cut corners are at
    `near` by construction: the output stays between `near` and `far` (the face recedes past
    `far`, which adds 1e-7) with finite gradients, the same on both paths."""
    near, far, s = 0.0075, 0.6, 0.03
    verts = np.float32([
        [-s, -s, -1e15], [4 * s, -s, 9e14], [-s, 4 * s, 9e14],  # seen from near to 1e15
        [0.5, 0.0, -0.3], [1e30, 0.0, 3e37], [0.0, 1e30, 3.000001e37],  # off screen
    ])  # fmt: skip
    cam = sj.look_at((0.0, 0.0, 0.0), (0.0, 0.0, -1.0), near=near, far=far)
    depths = []
    for method in ("dense", "tiled"):
        cfg = sj.RasterConfig((13, 7), method=method, sigma=0.029, gamma=0.0075, aovs=("depth",))

        def loss(v, faces, cfg=cfg):
            depth = sj.render(sj.Mesh(v, faces), cam, cfg)[1]["depth"]
            return jnp.sum(depth), depth

        (_, depth), grads = jax.value_and_grad(loss, has_aux=True)(verts, [[0, 1, 2], [3, 4, 5]])
        assert np.all(np.isfinite(depth)) and np.all(np.isfinite(grads))
        assert near <= float(depth.min()) < 0.1 and float(depth.max()) <= far + 1e-6
        np.testing.assert_allclose(depth, loss(verts[:3], [[0, 1, 2]])[1], rtol=1e-6)
        depths.append(depth)
    np.testing.assert_allclose(depths[0], depths[1], rtol=1e-5)


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_depth_where_a_cut_face_takes_the_pixel_is_not_below_near(method):
    """Beyond a cut edge a large sigma still shows the face, at `near` itself. The faces'
    share of such a pixel rounds past 1, and the background's `(1 - share) * far` took the
    depth below `near` (0.0455281 for a near of 0.04554 and a far of 100)."""
    verts, faces, _ = _ground(size=10.0, height=-0.02)
    mesh, near = sj.Mesh(np.float32(verts), faces), np.float32(0.04554)
    cfg = sj.RasterConfig((9, 11), method=method, sigma=0.1, gamma=0.01, aovs=("depth",))

    @jax.jit
    def depth(at):
        cam = sj.look_at((0.0, 0.0, 0.0), at, fov=60.0, near=near, far=100.0)
        return sj.render(mesh, cam, cfg)[1]["depth"]

    for pitch in (0.05, 0.1, 0.2):  # views down the floor
        at = jnp.asarray((0.0, -pitch, -1.0))
        assert near <= float(jnp.min(depth(at))) < near * (1 + 1e-6)  # the cut edge, no nearer


def test_clipped_faces_keep_their_face_ids_and_atlas():
    """The pieces of a clipped face are that face for face ids and per-face textures."""
    verts, faces, _ = _ground()
    _, eye, at, near = SCENES["ground"]
    cam = sj.look_at(eye, at, UP, fov=60.0, near=near)
    atlas = np.zeros((2, 1, 1, 3), np.float32)
    atlas[0, ..., 0], atlas[1, ..., 2] = 1.0, 1.0  # face 0 red, face 1 blue
    mesh = sj.Mesh(np.float32(verts), faces, atlas=atlas)
    rgba, out = sj.render(mesh, cam, sj.RasterConfig((20, 20), aovs=("face_id",), **HARD))
    ids = np.asarray(out["face_id"])
    assert set(np.unique(ids)) == {-1, 0, 1}
    np.testing.assert_allclose(np.asarray(rgba)[ids == 0, :3], [[1, 0, 0]] * (ids == 0).sum(),
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(np.asarray(rgba)[ids == 1, :3], [[0, 0, 1]] * (ids == 1).sum(),
                               atol=1e-4)  # fmt: skip
