"""Orthographic and OpenCV cameras: hard-limit renders against ray casting, the OpenCV
pixel convention, round trips, gradients and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad
from scenes import HARD, UP

import softjax as sj


def _scene():
    """A rotated box in front of a torus: occlusion, vertex colours, several depths."""
    vb, fb = ref.box(size=(0.9, 0.7, 0.8), center=(0.2, 0.1, 0.5),
                     rotation=ref.rotation_matrix((1.0, 2.0, 0.5), 0.7))  # fmt: skip
    vt, ft = ref.torus(R=0.9, r=0.3, n_major=20, n_minor=10)
    vt = vt @ ref.rotation_matrix((1.0, 0.0, 0.2), 1.1).T + [0.0, 0.0, -0.6]
    verts = np.concatenate([vb, vt])
    faces = np.concatenate([fb, ft + len(vb)])
    colours = np.clip(0.5 + 0.45 * np.sin(verts * [3.0, 2.0, 4.0]), 0, 1)
    return verts, faces, colours, np.repeat([0, 1], [len(fb), len(ft)])


def _opencv_camera():
    """Intrinsics with fx != fy and an off-centre principal point, for a 26 x 38 image,
    and a pose seen from above-right, as OpenCV would write them."""
    size = (26, 38)
    K = np.array([[30.0, 0.0, 21.3], [0.0, 36.5, 11.2], [0.0, 0.0, 1.0]])
    eye = np.array([1.2, 0.9, 3.4])
    r, u, f = ref.camera_basis(eye, (0.1, 0.0, 0.0), UP)
    R = np.stack([r, -u, f])  # OpenCV rows: x right, y down, z forward
    return K, R, -R @ eye, size


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("size", [(30, 30), (30, 46)])
def test_orthographic_matches_ray_casting(method, size):
    verts, faces, colours, obj = _scene()
    eye, scale = (1.5, 1.0, 3.0), 0.7
    origins, dirs = ref.orthographic_rays(eye, (0, 0, 0), UP, scale, size)
    out = ref.raycast_rays(verts, faces, colours, origins, dirs, near=0.1)
    cam = sj.look_at(eye, projection="orthographic", scale=scale)
    cfg = sj.RasterConfig(size, method=method, **HARD)
    rgba = sj.render(sj.Mesh(np.float32(verts), faces, np.float32(colours)), cam, cfg)
    ref.assert_matches(f"orthographic {size}", rgba, out, obj)


@pytest.mark.parametrize("method", ["tiled", "dense"])
@pytest.mark.parametrize("pixel_center", [0.0, 0.5])
def test_opencv_camera_matches_ray_casting(method, pixel_center):
    verts, faces, colours, obj = _scene()
    K, R, t, size = _opencv_camera()
    origins, dirs = ref.opencv_rays(K, R, t, size, pixel_center)
    out = ref.raycast_rays(verts, faces, colours, origins, dirs, near=0.1)
    cam = sj.Camera.from_opencv(K, R, t, size, pixel_center=pixel_center)
    cfg = sj.RasterConfig(size, method=method, **HARD)
    rgba = sj.render(sj.Mesh(np.float32(verts), faces, np.float32(colours)), cam, cfg)
    ref.assert_matches(f"opencv pc={pixel_center}", rgba, out, obj)


@pytest.mark.parametrize("pixel_center", [0.0, 0.5])
def test_opencv_points_land_where_drawn(pixel_center):
    """Triangles whose corners are projected with K, R, t by hand: a pixel is drawn exactly
    when its centre (u, v) = (j + pixel_center, i + pixel_center) lies inside the projected
    triangle (pixels within 0.01 px of an edge excepted)."""
    K, R, t, (h, w) = _opencv_camera()
    rng = np.random.default_rng(3)
    corners = rng.uniform(-0.9, 0.9, (5, 3, 3)) + [0.1, 0.0, 0.0]
    faces = np.arange(15).reshape(5, 3)
    cfg = sj.RasterConfig((h, w), **HARD)
    with jax.enable_x64(True):
        cam = sj.Camera.from_opencv(K, R, t, (h, w), pixel_center=pixel_center)
        mesh = sj.Mesh(corners.reshape(-1, 3), faces)
        drawn = np.asarray(sj.render_silhouette(mesh, cam, cfg)) > 0.5
    cam_pts = corners @ R.T + t
    uv = cam_pts[..., :2] / cam_pts[..., 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    jj, ii = np.meshgrid(np.arange(w) + pixel_center, np.arange(h) + pixel_center)
    p = np.stack([jj, ii], -1)[:, :, None, None, :]  # (H, W, 1, 1, 2)
    a, b = uv[None, None], np.roll(uv, -1, axis=1)[None, None]  # edges (.., 5, 3, 2)
    cross = (b - a)[..., 0] * (p - a)[..., 1] - (b - a)[..., 1] * (p - a)[..., 0]
    inside = np.any(np.all(cross >= 0, -1) | np.all(cross <= 0, -1), -1)
    e = b - a
    s = np.clip(np.sum((p - a) * e, -1) / np.sum(e * e, -1), 0, 1)[..., None]
    edge_dist = np.linalg.norm(p - a - s * e, axis=-1).min(axis=(-1, -2))
    assert inside.sum() > 50 and (~inside).sum() > 50
    assert np.array_equal(drawn[edge_dist > 0.01], inside[edge_dist > 0.01])


def test_opencv_round_trips():
    K, R, t, size = _opencv_camera()
    for pc in (0.0, 0.5):
        K2, R2, t2 = sj.Camera.from_opencv(K, R, t, size, pixel_center=pc).to_opencv(size, pc)
        np.testing.assert_allclose(K2, K, rtol=1e-6)
        np.testing.assert_allclose(R2, R, atol=1e-6)
        np.testing.assert_allclose(t2, t, atol=1e-5)
    # A look_at camera exported and imported again renders the same image.
    mesh, cfg = sj.ico_sphere(2), sj.RasterConfig((20, 30))
    cam = sj.look_at((0.5, 0.8, 2.5), (0.1, 0.0, 0.0), fov=50.0)
    again = sj.Camera.from_opencv(*cam.to_opencv((20, 30)), (20, 30))
    # float32 rounding of the round trip (~1e-7 in screen units) moves soft edges by ~1e-5.
    np.testing.assert_allclose(sj.render(mesh, again, cfg), sj.render(mesh, cam, cfg), atol=1e-4)
    np.testing.assert_allclose(again.fov, 50.0, rtol=1e-5)
    # The camera is in screen units: the same K scaled with the image shows the same view.
    K2 = np.diag([2.0, 2.0, 1.0]) @ K
    K2[:2, 2] += 0.5  # OpenCV centres: u + 0.5 scales with the image
    big = sj.Camera.from_opencv(K2, R, t, (52, 76))
    small = sj.Camera.from_opencv(K, R, t, size)
    np.testing.assert_allclose(big.focal, small.focal, rtol=1e-6)
    np.testing.assert_allclose(big.center, small.center, atol=1e-6)


def test_cameras_vmap_and_jit():
    K, R, t, size = _opencv_camera()
    Ks = np.stack([K, K * [[1.1], [1.0], [1.0]]])
    cams = jax.vmap(lambda k: sj.Camera.from_opencv(k, R, t, size))(jnp.asarray(Ks, jnp.float32))
    mesh, cfg = sj.ico_sphere(2), sj.RasterConfig(size)
    batch = jax.jit(jax.vmap(sj.render, in_axes=(None, 0, None)))(mesh, cams, cfg)
    for i in range(2):
        one = sj.render(mesh, sj.Camera.from_opencv(np.float32(Ks[i]), R, t, size), cfg)
        np.testing.assert_allclose(batch[i], one, atol=1e-5)
    eyes = jnp.array([[0.0, 0.0, 3.0], [1.0, 1.0, 2.0]])
    ortho = jax.vmap(lambda e: sj.look_at(e, projection="orthographic", scale=0.8))(eyes)
    assert ortho.orthographic and ortho.focal.shape == (2, 2)
    jax.vmap(sj.render_silhouette, in_axes=(None, 0, None))(mesh, ortho, cfg)


def _rodrigues(w):
    """Differentiable rotation matrix of an axis-angle vector `w` (3,), |w| > 0."""
    theta = jnp.linalg.norm(w)
    k = w / theta
    kx = jnp.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return jnp.eye(3) + jnp.sin(theta) * kx + (1 - jnp.cos(theta)) * kx @ kx


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_camera_gradients_match_finite_differences(method):
    """Float64 central differences w.r.t. the intrinsics (fx, fy, cx, cy), the pose (an
    axis-angle rotation and t) and the orthographic scale and eye."""
    base = sj.ico_sphere(1)
    rng = np.random.default_rng(4)
    verts = np.asarray(base.verts, np.float64) * (1 + 0.15 * rng.standard_normal((42, 1)))
    colours = rng.uniform(0.1, 0.9, (42, 3))
    size = (12, 17)
    cfg = sj.RasterConfig(size, sigma=1e-3, gamma=1e-2, method=method)
    K, R, t, _ = _opencv_camera()
    K = K * [[12 / 26], [12 / 26], [1.0]]  # the same view at 12 px tall, roughly
    w0 = np.array([0.3, -0.2, 0.1])
    weights = rng.standard_normal((*size, 4))

    def image_loss(cam):
        return jnp.sum(weights * sj.render(sj.Mesh(verts, base.faces, colours), cam, cfg))

    def from_params(intr=None, w=None, tt=None):
        intr = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]) if intr is None else intr
        z = jnp.zeros_like(intr[0])
        KK = jnp.stack([jnp.stack([intr[0], z, intr[2]]), jnp.stack([z, intr[1], intr[3]]),
                        jnp.array([0.0, 0.0, 1.0])])  # fmt: skip
        RR = _rodrigues(jnp.asarray(w0 if w is None else w)) @ jnp.asarray(R)
        return sj.Camera.from_opencv(KK, RR, jnp.asarray(t if tt is None else tt), size)

    with jax.enable_x64(True):
        # One gradient per camera model for all its parameters (one compilation each), every
        # parameter then checked on its own.
        intr0 = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        grads = jax.grad(lambda i, w, tt: image_loss(from_params(i, w, tt)), argnums=(0, 1, 2))(
            jnp.asarray(intr0), jnp.asarray(w0), jnp.asarray(t, jnp.float64)
        )
        check_grad(lambda p: image_loss(from_params(intr=p)), intr0, rng, 4, grad=grads[0])
        check_grad(lambda p: image_loss(from_params(w=p)), w0, rng, 3, grad=grads[1])
        check_grad(lambda p: image_loss(from_params(tt=p)), t, rng, 3, grad=grads[2])

        def ortho(scale, eye):
            return sj.look_at(eye, (0.0, 0.1, 0.0), projection="orthographic", scale=scale)

        eye0 = np.array([0.7, 0.5, 2.6])
        grads = jax.grad(lambda s, e: image_loss(ortho(s, e)), argnums=(0, 1))(
            jnp.float64(0.8), jnp.asarray(eye0)
        )
        check_grad(lambda s: image_loss(ortho(s, eye0)), np.float64(0.8), rng, 1, grad=grads[0])
        check_grad(lambda e: image_loss(ortho(0.8, e)), eye0, rng, 3, grad=grads[1])


def test_mesh_crossing_the_near_plane_with_an_opencv_camera():
    K, R, t, size = _opencv_camera()
    cam = sj.Camera.from_opencv(K, R, t, size, near=1.5)
    mesh = sj.ico_sphere(2)
    verts = np.asarray(mesh.verts) * 1.5 + np.asarray(cam.eye) * 0.5  # straddles depth 1.5
    cfg = sj.RasterConfig(size)

    def loss(v):
        return jnp.sum(sj.render(sj.Mesh(v, mesh.faces), cam, cfg) ** 2)

    z = (verts - np.asarray(cam.eye)) @ np.asarray(cam.rotation)[2]
    assert z.min() < 1.5 < z.max()
    rgba = sj.render(sj.Mesh(np.float32(verts), mesh.faces), cam, cfg)
    g = jax.grad(loss)(jnp.float32(verts))
    assert np.all(np.isfinite(rgba)) and np.all(np.isfinite(g)) and float(rgba[..., 3].max()) > 0.5


SKEW = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda K, R, t: sj.Camera.from_opencv(K + SKEW, R, t, (26, 38)), "skew"),
        (lambda K, R, t: sj.Camera.from_opencv(K * [[-1], [1], [1]], R, t, (26, 38)), "fx and fy"),
        (lambda K, R, t: sj.Camera.from_opencv(K, 2 * R, t, (26, 38)), "rotation"),
        (lambda K, R, t: sj.Camera.from_opencv(K, -R, t, (26, 38)), "rotation"),
        (lambda K, R, t: sj.Camera.from_opencv(K, R, t[:2], (26, 38)), "`t`"),
        (lambda K, R, t: sj.Camera.from_opencv(K, R, t, (0, 38)), "image_size"),
        (lambda K, R, t: sj.Camera.from_opencv(K, R, t, (26, 38), near=2.0, far=1.0), "near"),
        (lambda K, R, t: sj.look_at((0.0, 0.0, 3.0), projection="fisheye"), "projection"),
        (lambda K, R, t: sj.look_at((0.0, 0.0, 3.0), projection="orthographic", scale=0.0),
         "scale"),
        (lambda K, R, t: sj.look_at((0.0, 0.0, 3.0), projection="orthographic").to_opencv(
            (8, 8)), "orthographic"),
        (lambda K, R, t: sj.Camera((0.0, 0.0, 3.0), np.eye(3), (1.0, -1.0)), "focal"),
    ],
)  # fmt: skip
def test_bad_camera_input_raises(build, match):
    K, R, t, _ = _opencv_camera()
    with pytest.raises(ValueError, match=match):
        build(K, R, t)
