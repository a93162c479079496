"""Public conventions: shapes, dtypes, orientation, limits, culling, pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import softjax as sj


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_ico_sphere_counts_norms_and_outward_faces(level):
    mesh = sj.ico_sphere(level)
    assert mesh.verts.shape == (10 * 4**level + 2, 3)
    assert mesh.faces.shape == (20 * 4**level, 3)
    assert mesh.faces.dtype == jnp.int32
    assert mesh.verts.dtype == jnp.float32
    np.testing.assert_allclose(jnp.linalg.norm(mesh.verts, axis=1), 1.0, atol=1e-6)
    tri = np.asarray(mesh.verts)[np.asarray(mesh.faces)]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.sum(normal * tri.mean(1), 1) > 0)
    assert mesh.colors is None  # no colours given: none stored (it renders white)


def _small_triangle(center):
    c = np.asarray(center, np.float32)
    verts = np.stack([c + [-0.1, -0.1, 0], c + [0.1, -0.1, 0], c + [0.0, 0.1, 0]])
    return sj.Mesh(verts, [[0, 1, 2]])


def test_image_orientation():
    """eye (0, 0, 3), up +y: world +x goes to column W-1, world +y to row 0."""
    cfg = sj.RasterConfig(image_size=(24, 32), sigma=1e-6)
    cam = sj.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    right = np.asarray(sj.render_silhouette(_small_triangle((1.0, 0.0, 0.0)), cam, cfg))
    top = np.asarray(sj.render_silhouette(_small_triangle((0.0, 1.0, 0.0)), cam, cfg))
    rows, cols = np.nonzero(right > 0.5)
    assert cols.min() > 32 * 0.6 and abs(rows.mean() - 11.5) < 1.5
    rows, cols = np.nonzero(top > 0.5)
    assert rows.max() < 24 * 0.4 and abs(cols.mean() - 15.5) < 1.5


def test_pixel_centres_and_square_pixels():
    """A point on the optical axis at NDC (x, y) = (0, 0) lies between the central pixels; a
    square in the world stays square on a non-square image (x spans W/H times y)."""
    cfg = sj.RasterConfig(image_size=(20, 40), sigma=1e-7)
    cam = sj.look_at((0.0, 0.0, 2.0), fov=90.0)  # half-height of the image plane at z=2 is 2
    half = 1.0  # a world square of half-size 1 covers NDC-y [-0.5, 0.5] and 10 of 20 rows
    verts = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]])
    mesh = sj.Mesh(np.float32(verts), [[0, 1, 2], [0, 2, 3]])
    mask = np.asarray(sj.render_silhouette(mesh, cam, cfg)) > 0.5
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max()) == (5, 14)
    assert (cols.min(), cols.max()) == (15, 24)


def test_sigma_limit_is_pixel_centre_coverage():
    """As sigma -> 0 the silhouette is 1 exactly where a ray through the pixel centre hits the
    mesh (the ray caster) and 0 elsewhere; a large sigma blurs a band around the outline."""
    cam = sj.look_at((0.0, 0.0, 3.0))
    mesh = sj.ico_sphere(2)
    soft = np.asarray(sj.render_silhouette(mesh, cam, sj.RasterConfig((16, 16), sigma=1e-2)))
    hard = np.asarray(sj.render_silhouette(mesh, cam, sj.RasterConfig((16, 16), sigma=1e-10)))
    out = ref.raycast(mesh.verts, mesh.faces, np.ones((mesh.num_verts, 3)), (0.0, 0.0, 3.0),
                      (0.0, 0.0, 0.0), (0.0, 1.0, 0.0), 60.0, 0.1, (16, 16))  # fmt: skip
    np.testing.assert_array_equal(hard > 0.5, out.mask)
    assert np.all((hard < 1e-3) | (hard > 1 - 1e-3))  # no soft pixels left
    band = (soft > 0.05) & (soft < 0.95)
    assert band.mean() > 0.1
    # Covered centres are at least half covered, and the blur stays near the outline: every
    # soft pixel is within two pixels of a covered one.
    assert np.all(soft[out.mask] > 0.5)
    near = np.pad(out.mask, 2)
    near = np.any([np.roll(np.roll(near, i, 0), j, 1) for i in range(-2, 3)
                   for j in range(-2, 3)], axis=0)[2:-2, 2:-2]  # fmt: skip
    assert np.all(near[band]) and not np.all(near)


def test_background_where_nothing_is_near_and_dtype():
    cfg = sj.RasterConfig((16, 16), background=(0.2, 0.4, 0.6))
    mesh = sj.Mesh(sj.ico_sphere(2).verts * 0.5, sj.ico_sphere(2).faces)
    rgba = sj.render(mesh, sj.look_at((0.0, 0.0, 3.0)), cfg)
    assert rgba.dtype == jnp.float32
    np.testing.assert_array_equal(rgba[0, 0], np.float32([0.2, 0.4, 0.6, 0.0]))
    np.testing.assert_allclose(rgba[8, 8, :3], [1.0, 1.0, 1.0], atol=1e-5)
    assert float(rgba[8, 8, 3]) > 0.9


def test_gamma_limit_shows_nearest_surface():
    """Two overlapping quads of different colours: the nearer wins whatever the face order."""
    quad = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    verts = np.concatenate([quad + [0, 0, 0.5], quad + [0.3, 0, -0.5]])
    colours = np.array([[1, 0, 0]] * 4 + [[0, 0, 1]] * 4, np.float32)
    cfg = sj.RasterConfig((16, 16), sigma=1e-6, gamma=1e-5)
    cam = sj.look_at((0.0, 0.0, 4.0))
    for faces in ([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]],
                  [[4, 5, 6], [4, 6, 7], [0, 1, 2], [0, 2, 3]]):  # fmt: skip
        rgba = sj.render(sj.Mesh(verts, faces, colours), cam, cfg)
        np.testing.assert_allclose(rgba[8, 8, :3], [1, 0, 0], atol=1e-3)


def test_both_windings_render_and_backface_culling():
    cam = sj.look_at((0.0, 0.0, 1.0))
    ccw = _small_triangle((0.0, 0.0, 0.0))
    cw = sj.Mesh(ccw.verts, ccw.faces[:, ::-1])
    cfg = sj.RasterConfig((16, 16), sigma=1e-6)
    cull = sj.RasterConfig((16, 16), sigma=1e-6, cull_backfaces=True)
    np.testing.assert_allclose(sj.render(ccw, cam, cfg), sj.render(cw, cam, cfg), atol=1e-6)
    assert float(sj.render_silhouette(ccw, cam, cull).max()) > 0.99
    assert float(sj.render_silhouette(cw, cam, cull).max()) == 0.0


def test_pytrees_flatten_and_config_is_static():
    mesh, cam, lights = (
        sj.ico_sphere(0),
        sj.look_at((0.0, 0.0, 3.0)),
        sj.Lights(0.5, [sj.DirectionalLight((0.0, -1.0, -1.0), intensity=0.5)]),
    )
    assert len(jax.tree.leaves(mesh)) == 2  # verts, faces (no colours given)
    assert len(jax.tree.leaves(cam)) == 6  # eye, rotation, focal, center, near, far
    # ambient, ambient_color, one directional light (3 fields), no point lights (3 fields)
    assert len(jax.tree.leaves(lights)) == 8
    assert jax.tree.leaves(sj.RasterConfig()) == []
    doubled = jax.tree.map(lambda x: x * 2, cam)
    assert isinstance(doubled, sj.Camera)
    np.testing.assert_allclose(doubled.eye, [0.0, 0.0, 6.0])


def test_look_at_frame_is_a_proper_rotation():
    cam = sj.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    # Rows right, down, forward (OpenCV's camera frame).
    np.testing.assert_allclose(cam.rotation, [[1, 0, 0], [0, -1, 0], [0, 0, -1]], atol=1e-6)
    cam = sj.look_at((2.0, 1.0, -1.0), (0.5, 0.0, 0.3))
    np.testing.assert_allclose(cam.rotation @ cam.rotation.T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(np.asarray(cam.rotation)), 1.0, atol=1e-5)
    # OpenCV's R is the camera's rotation itself, both ways.
    K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    R, t = np.asarray(cam.rotation, np.float64), np.array([0.1, -0.2, 3.0])
    cv = sj.Camera.from_opencv(K, R, t, (24, 32))
    np.testing.assert_allclose(cv.rotation, R, atol=1e-6)
    np.testing.assert_allclose(cv.to_opencv((24, 32))[1], R, atol=1e-6)


def _tinted(frag, params):
    return frag["color"] * params["tint"]


@pytest.mark.parametrize("visibility", ["soft", "hard", "user shader"])
def test_an_eager_render_is_a_few_compiled_programs(visibility):
    """Called eagerly, `render` runs its stages (shading preparation, visibility, assembly of
    the outputs) as a handful of compiled programs, not one per array operation, and a second
    call with the same shapes and settings compiles nothing."""
    import jax.monitoring

    compiled = []

    def listen(event, duration, **kw):
        if event.endswith("backend_compile_duration"):
            compiled.append(kw.get("fun_name"))

    s = sj.ico_sphere(1)
    mesh = sj.Mesh(s.verts, s.faces, (s.verts + 1) / 2)
    cam = sj.look_at((0.3, 0.4, 2.5))
    lights = sj.Lights(0.3, [sj.DirectionalLight((0.3, -1.0, -0.5), intensity=0.7)])
    if visibility == "user shader":
        cfg = sj.RasterConfig((13, 11), aovs=("depth", "normals", "face_id"))
        kw = dict(shader=_tinted, shader_params={"tint": jnp.array([1.0, 0.5, 0.25])})
    else:
        cfg = sj.RasterConfig((13, 11), shading="phong", aovs=("depth", "normals", "face_id"),
                              visibility=visibility)  # fmt: skip
        kw = dict(lights=lights)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        first = jax.block_until_ready(sj.render(mesh, cam, cfg, **kw))
        count = len(compiled)
        second = jax.block_until_ready(sj.render(mesh, cam, cfg, **kw))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    # 54 programs for the soft path when the preparation ran operation by operation.
    assert 1 <= count <= 8, compiled
    assert len(compiled) == count, compiled[count:]
    np.testing.assert_array_equal(first[0], second[0])
