"""The tiled, streamed rasterizer reproduces the dense all-pairs reference."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scenes import SMALL, layers_scene

import softjax as sj


def _bumpy_sphere(seed=1):
    rng = np.random.default_rng(seed)
    s = sj.ico_sphere(2)
    verts = np.asarray(s.verts) * (1.0 + 0.2 * rng.standard_normal((s.num_verts, 1)))
    return verts, np.asarray(s.faces), rng.uniform(0, 1, verts.shape)


SCENES = {
    "layers": (layers_scene, (0.2, 0.1, 3.0)),
    "bumpy_sphere": (_bumpy_sphere, (0.8, 0.6, 2.4)),
}


def _render(scene, size, method, lights=None, dtype=np.float32, **kw):
    build, eye = SCENES[scene]
    verts, faces, colours = build()
    cfg = sj.RasterConfig(image_size=size, method=method, **kw)
    mesh = sj.Mesh(verts.astype(dtype), faces, colours.astype(dtype))
    cam = sj.look_at(np.asarray(eye, dtype))
    return sj.render(mesh, cam, cfg, lights=lights), sj.render_silhouette(mesh, cam, cfg)


def test_layers_scene_really_has_many_layers():
    verts, faces, _ = layers_scene()
    hard = sj.RasterConfig((16, 16), sigma=1e-9, method="dense")
    counts = sum(
        np.asarray(sj.render_silhouette(sj.Mesh(np.float32(verts), faces[i : i + 1]),
                                        sj.look_at((0.2, 0.1, 3.0)), hard)) > 0.5
        for i in range(len(faces))
    )  # fmt: skip
    assert counts.max() >= 10


@pytest.mark.parametrize("scene", list(SCENES))
@pytest.mark.parametrize("size", [(24, 24), (20, 36), (37, 18)])
@pytest.mark.parametrize("settings", [{}, SMALL], ids=["default", "small"])
def test_images_match_dense(scene, size, settings):
    lights = sj.Lights(0.3, [sj.DirectionalLight((0.3, -1.0, -0.5), intensity=0.7)])
    rgba_t, sil_t = _render(scene, size, "tiled", lights, **settings)
    rgba_d, sil_d = _render(scene, size, "dense", lights)
    np.testing.assert_allclose(rgba_t, rgba_d, atol=1e-5, rtol=0)
    np.testing.assert_allclose(sil_t, sil_d, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(rgba_t[..., 3], sil_t)


@pytest.mark.parametrize("settings", [dict(sigma=1e-9, gamma=1e-6), dict(sigma=3e-3, gamma=1e-2),
                                      dict(dist_eps=0.0), dict(cull_backfaces=True),
                                      dict(background=(0.2, 0.5, 1.0), eps=0.05)])  # fmt: skip
def test_settings_match_dense(settings):
    rgba_t, _ = _render("bumpy_sphere", (20, 28), "tiled", **settings, **SMALL)
    rgba_d, _ = _render("bumpy_sphere", (20, 28), "dense", **settings)
    np.testing.assert_allclose(rgba_t, rgba_d, atol=1e-5, rtol=0)


@pytest.mark.parametrize("capacity", [None, 7])
def test_every_face_in_every_tile_is_exact(capacity):
    """The worst case for binning: with dist_eps = 0 no face is ever culled, so every tile
    lists every face (16 tiles x 24 faces). With a capacity of 7 pairs that takes 55 rounds;
    nothing is dropped."""
    kw = dict(dist_eps=0.0, tile_size=4, chunk=4, pair_capacity=capacity)
    rgba_t, _ = _render("layers", (16, 16), "tiled", **kw)
    rgba_d, _ = _render("layers", (16, 16), "dense", dist_eps=0.0)
    np.testing.assert_allclose(rgba_t, rgba_d, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(24, 24), (20, 36), (37, 18)])
def test_binning_lists_every_pair_that_counts_once(size):
    """Every (pixel, face) pair within the cull distance is listed in its tile exactly once,
    over all rounds, and each round's items cover its pairs exactly once."""
    from softjax._src.geometry.clip import project
    from softjax._src.geometry.pairs import pair_geometry
    from softjax._src.geometry.triangles import geometry_rows, setup
    from softjax._src.pixels import pixel_centers
    from softjax._src.tiles import bins as tiled
    from softjax._src.tiles.bins import face_data

    verts, faces, _ = _bumpy_sphere()
    cfg = sj.RasterConfig(size, sigma=3e-4, tile_size=4, chunk=4, pair_capacity=300)
    tris = project(jnp.float32(verts), jnp.asarray(faces), sj.look_at((0.8, 0.6, 2.4)), False)
    faces, valid = face_data(tris, jnp.zeros((len(tris.valid), 3, 0)))
    st = tiled.static_settings(cfg, len(tris.valid))
    bins = tiled.bin_faces(faces, valid, st, cfg.cull_dist2)
    rounds = int(tiled._num_rounds(bins, 0, st))
    assert rounds >= 3
    listed = []  # (tile, face) from the items of every round
    for r in range(rounds):
        work = tiled.schedule(bins, 0, r, st)
        n = int(work.num_items)
        items = zip(*(np.asarray(x)[:n] for x in work[1:4]), strict=True)
        for t, a, b in items:
            assert a < b  # no empty items
            listed += [(int(t), int(f)) for f in np.asarray(work.face)[a : min(b, a + cfg.chunk)]]
    assert len(listed) == len(set(listed)) == int(tiled.num_pairs(bins)[0])

    # Brute force: the pairs the dense path keeps, mapped to their tiles.
    pix = pixel_centers(size, jnp.float32)
    frags = pair_geometry(pix[:, :1], pix[:, 1:], setup(geometry_rows(tris.xy, tris.z)))
    keep = np.asarray(tris.valid[None, :] & (frags.dist2 >= -cfg.cull_dist2))  # (H * W, F)
    rows, cols = np.divmod(np.arange(size[0] * size[1]), size[1])
    tile_of_pixel = (rows // 4) * (-(-size[1] // 4)) + cols // 4
    needed = {(int(tile_of_pixel[p]), int(f)) for p, f in zip(*np.nonzero(keep), strict=True)}
    assert needed and needed <= set(listed)


@pytest.mark.parametrize("scene", list(SCENES))
def test_gradients_match_dense(scene):
    """Gradients w.r.t. vertices, colours, camera eye and light direction, in float64 so that
    the comparison measures the algorithm, not float32 summation order."""
    build, eye = SCENES[scene]
    verts, faces, colours = build()
    size = (20, 28)
    target = np.random.default_rng(2).uniform(0, 1, (*size, 4))

    def grads(method, **kw):
        cfg = sj.RasterConfig(image_size=size, method=method, sigma=1e-4, gamma=1e-3, **kw)

        def loss(v, c, e, d):
            mesh, cam = sj.Mesh(v, faces, c), sj.look_at(e)
            rgba = sj.render(
                mesh, cam, cfg, lights=sj.Lights(0.5, [sj.DirectionalLight(d, intensity=0.5)])
            )
            sil = sj.render_silhouette(mesh, cam, cfg)
            return jnp.sum((rgba - target) ** 2) + jnp.sum(sil * target[..., 0])

        args = (verts, colours, np.asarray(eye), np.array([0.3, -1.0, -0.5]))
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(*args)

    with jax.enable_x64(True):
        dense = grads("dense")
        for kw in ({}, SMALL):
            for g_t, g_d in zip(grads("tiled", **kw), dense, strict=True):
                scale = np.abs(g_d).max()
                assert scale > 0
                np.testing.assert_allclose(g_t, g_d, atol=1e-4 * scale, rtol=1e-4)


def test_vmap_over_views_matches_loop():
    verts, faces, colours = _bumpy_sphere()
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    cfg = sj.RasterConfig((20, 28), **SMALL)
    eyes = jnp.array([[0.0, 0.0, 3.0], [3.0, 0.5, 0.0], [-2.0, 1.0, -2.0]])
    batch = jax.vmap(sj.render, in_axes=(None, 0, None))(mesh, jax.vmap(sj.look_at)(eyes), cfg)
    for i, eye in enumerate(eyes):
        np.testing.assert_allclose(batch[i], sj.render(mesh, sj.look_at(eye), cfg), atol=1e-5)


def test_empty_views_and_culled_meshes():
    """No face on screen (or every face behind the camera): background, zero gradients."""
    verts, faces, colours = _bumpy_sphere()
    cfg = sj.RasterConfig((12, 12), background=(0.1, 0.2, 0.3))

    def loss(v, eye):
        return jnp.sum(sj.render(sj.Mesh(v, faces), sj.look_at(eye, (0.0, 0.0, 10.0)), cfg))

    v = np.float32(verts)
    for eye in [(0.0, 0.0, 5.0), (0.0, 0.0, 0.0)]:  # sphere behind the camera / around it
        rgba = sj.render(sj.Mesh(v, faces), sj.look_at(eye, (0.0, 0.0, 10.0)), cfg)
        g = jax.grad(loss)(v, jnp.array(eye))
        assert np.all(np.isfinite(rgba)) and np.all(np.isfinite(g))
    rgba = sj.render(sj.Mesh(v, faces), sj.look_at((0.0, 0.0, 5.0), (0.0, 0.0, 10.0)), cfg)
    np.testing.assert_allclose(rgba, np.broadcast_to([0.1, 0.2, 0.3, 0.0], rgba.shape), atol=1e-7)


def test_camera_scalar_gradients_match_dense():
    """fov, near and far reach the image through the projection and the depth softmax."""
    verts, faces, colours = _bumpy_sphere()

    def grads(method):
        cfg = sj.RasterConfig((16, 20), method=method, sigma=1e-4, gamma=1e-2, **(
            SMALL if method == "tiled" else {}))  # fmt: skip

        def loss(fov, near, far):
            cam = sj.look_at(jnp.array([0.8, 0.6, 2.4]), fov=fov, near=near, far=far)
            return jnp.sum(sj.render(sj.Mesh(verts, faces, colours), cam, cfg) ** 2)

        return jax.grad(loss, argnums=(0, 1, 2))(55.0, 0.5, 6.0)

    with jax.enable_x64(True):
        tiled, dense = grads("tiled"), grads("dense")
    for t, d in zip(tiled, dense, strict=True):
        assert abs(float(d)) > 0
        np.testing.assert_allclose(t, d, rtol=1e-6)


def test_partial_and_nested_vmap_match_loops():
    verts, faces, colours = _bumpy_sphere()
    cfg = sj.RasterConfig((12, 16), **SMALL)
    cams = jax.vmap(sj.look_at)(jnp.array([[0.0, 0.0, 3.0], [2.0, 1.0, 2.0]]))
    palettes = jnp.stack(
        [jnp.float32(colours), 1.0 - jnp.float32(colours), 0.5 * jnp.ones_like(colours)]
    )
    v = jnp.float32(verts)

    def one(c, cam):
        return sj.render(sj.Mesh(v, faces, c), cam, cfg)

    # Only the colours batched (geometry shared), then colours x cameras nested.
    only_colours = jax.vmap(one, in_axes=(0, None))(palettes, jax.tree.map(lambda x: x[0], cams))
    nested = jax.vmap(lambda c: jax.vmap(one, in_axes=(None, 0))(c, cams))(palettes)
    for i in range(3):
        first = jax.tree.map(lambda x: x[0], cams)
        np.testing.assert_allclose(only_colours[i], one(palettes[i], first), atol=1e-6)
        for j in range(2):
            cam = jax.tree.map(lambda x, j=j: x[j], cams)
            np.testing.assert_allclose(nested[i, j], one(palettes[i], cam), atol=1e-6)

    # grad of a vmapped loss with an unbatched mesh equals the sum of per-view gradients.
    def loss(vv):
        return jnp.sum(jax.vmap(lambda cam: sj.render(sj.Mesh(vv, faces), cam, cfg))(cams) ** 2)

    def view_loss(vv, j):
        cam = jax.tree.map(lambda x: x[j], cams)
        return jnp.sum(sj.render(sj.Mesh(vv, faces), cam, cfg) ** 2)

    per_view = sum(jax.grad(view_loss)(v, j) for j in range(2))
    np.testing.assert_allclose(jax.grad(loss)(v), per_view, atol=1e-4 * np.abs(per_view).max())


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_mesh_without_faces_renders_background(method):
    mesh = sj.Mesh(np.zeros((3, 3), np.float32), np.zeros((0, 3), np.int32))
    cfg = sj.RasterConfig((8, 8), background=(0.3, 0.2, 0.1), method=method)
    rgba = sj.render(mesh, sj.look_at((0.0, 0.0, 3.0)), cfg)
    np.testing.assert_allclose(rgba, np.broadcast_to([0.3, 0.2, 0.1, 0.0], (8, 8, 4)), atol=1e-7)
    assert float(sj.render_silhouette(mesh, sj.look_at((0.0, 0.0, 3.0)), cfg).max()) == 0.0


def test_fit_pair_capacity_gives_one_round_and_the_same_image():
    from softjax._src.tiles import bins as tiled

    verts, faces, colours = _bumpy_sphere()
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    cams = jax.vmap(sj.look_at)(jnp.array([[0.0, 0.0, 3.0], [0.5, 0.2, 1.8]]))
    small = sj.RasterConfig((20, 28), tile_size=4, pair_capacity=10)
    fitted = sj.fit_pair_capacity(mesh, cams, small)
    assert fitted.pair_capacity > small.pair_capacity
    assert fitted == dataclasses.replace(small, pair_capacity=fitted.pair_capacity)
    for j in range(2):
        cam = jax.tree.map(lambda x, j=j: x[j], cams)
        assert sj.fit_pair_capacity(mesh, cam, small, margin=1.0).pair_capacity <= (
            fitted.pair_capacity
        )
        np.testing.assert_allclose(
            sj.render(mesh, cam, fitted), sj.render(mesh, cam, small), atol=1e-6
        )
    # One round: the fitted capacity holds every pair of the closer view.
    from softjax._src.geometry.clip import project
    from softjax._src.tiles.bins import face_data

    cam = jax.tree.map(lambda x: x[1], cams)
    tris = project(mesh.verts, mesh.faces, cam, False)
    faces, valid = face_data(tris, jnp.zeros((len(tris.valid), 3, 0)))
    st = tiled.static_settings(fitted, len(valid) - 1)
    bins = tiled.bin_faces(faces, valid, st, fitted.cull_dist2)
    assert int(tiled._num_rounds(bins, 0, st)) == 1


def test_fit_pair_capacity_rejects_traced_inputs_and_bad_margins():
    mesh, cam, cfg = sj.ico_sphere(1), sj.look_at((0.0, 0.0, 3.0)), sj.RasterConfig((8, 8))
    with pytest.raises(ValueError, match="outside jit"):
        jax.jit(lambda v: sj.fit_pair_capacity(sj.Mesh(v, mesh.faces), cam, cfg))(mesh.verts)
    for margin in (0.5, float("nan")):
        with pytest.raises(ValueError, match="margin"):
            sj.fit_pair_capacity(mesh, cam, cfg, margin=margin)
    with pytest.raises(ValueError, match="pair_capacity"):
        sj.RasterConfig((8, 8), pair_capacity=0)


def _textured_sphere(kind):
    """A bumpy level-1 sphere with each kind of surface colour."""
    rng = np.random.default_rng(4)
    s = sj.ico_sphere(1)
    verts = np.float32(np.asarray(s.verts) * (1 + 0.1 * rng.standard_normal((s.num_verts, 1))))
    faces = np.asarray(s.faces)
    if kind == "white":
        return sj.Mesh(verts, faces)
    if kind == "colours":
        return sj.Mesh(verts, faces, np.float32(rng.uniform(0, 1, verts.shape)))
    if kind == "atlas":
        return sj.Mesh(verts, faces, atlas=np.float32(rng.uniform(0, 1, (len(faces), 3, 3, 3))))
    uvs = np.float32(rng.uniform(-0.3, 1.3, (len(verts), 2)))
    texture = np.float32(rng.uniform(0, 1, (5, 4, 3)))
    return sj.Mesh(verts, faces, uvs=uvs, face_uvs=faces, texture=texture,
                   texture_wrap=kind.split("-")[1])  # fmt: skip


TINY = {"tile1": dict(tile_size=1, chunk=1, batch_pairs=5, pair_capacity=11),
        "tile3": dict(tile_size=3, chunk=5, batch_pairs=90, pair_capacity=40)}  # fmt: skip


# Every kind of surface colour and every shader (colours lit per corner, sampled colours with
# per-corner light terms, per-pixel Phong), each with tiny tiles, chunks, batches and binning
# rounds (the pairs are spread over many work items and rounds).
@pytest.mark.parametrize("kind, shading, settings", [
    ("white", "flat", "tile1"), ("colours", "gouraud", "tile3"), ("colours", "phong", "tile1"),
    ("uv-clamp", "phong", "tile3"), ("uv-wrap", "gouraud", "tile1"), ("atlas", "flat", "tile3"),
    ("atlas", "phong", "tile1"),
])  # fmt: skip
def test_every_shading_input_matches_dense_with_small_tiles(kind, shading, settings):
    mesh = _textured_sphere(kind)
    cam = sj.look_at((0.6, 0.4, 2.5), fov=50.0)
    lights = sj.Lights(0.3, [sj.DirectionalLight((0.3, -1.0, -0.5), intensity=0.6)],
                       point=[sj.PointLight((1.0, 1.5, 2.0), intensity=0.5)])  # fmt: skip
    material = sj.Material(specular=0.5, shininess=10.0)
    settings = TINY[settings]
    cfg = sj.RasterConfig((10, 13), sigma=2e-4, gamma=1e-2, shading=shading,
                          aovs=("depth", "normals"))  # fmt: skip
    rgba_d, out_d = sj.render(mesh, cam, dataclasses.replace(cfg, method="dense"), lights,
                              material)  # fmt: skip
    rgba_t, out_t = sj.render(mesh, cam, dataclasses.replace(cfg, **settings), lights,
                              material)  # fmt: skip
    np.testing.assert_allclose(rgba_t, rgba_d, atol=1e-5, rtol=0, err_msg=shading)
    np.testing.assert_allclose(out_t["normals"], out_d["normals"], atol=1e-5, rtol=0)
    # Depth = blended depth + (1 - faces' share) * far: float32 rounding of the share
    # (1e-7) comes back times far = 100.
    np.testing.assert_allclose(out_t["depth"], out_d["depth"], rtol=1e-5, atol=1e-4)


def test_atlas_texels_outside_an_edge_do_not_depend_on_rounding():
    """Pixels just outside edge a-b are clamped onto it, where the lower and upper half-cells
    of the atlas meet; which texel they read must not follow the last bit of w0 + w1."""
    rng = np.random.default_rng(0)
    verts = np.float32([[-1, -1, 0], [1, -1, 0], [0, 1, 0]])
    mesh = sj.Mesh(verts, [[0, 1, 2]], atlas=np.float32(rng.uniform(0, 1, (1, 2, 2, 3))))
    cam = sj.look_at((0.0, 0.0, 3.0))
    tiled = sj.render(mesh, cam, sj.RasterConfig((12, 12), tile_size=1, chunk=1))
    dense = sj.render(mesh, cam, sj.RasterConfig((12, 12), method="dense"))
    np.testing.assert_allclose(tiled, dense, atol=1e-5, rtol=0)


def test_images_whose_tiles_times_faces_pass_int32_bin_in_blocks():
    """4096 x 4096 with 8,192 faces is 2.1e9 (tile, face) slots, past int32, though few pairs
    exist: the faces are binned in blocks whose pairs each fit, and blocks give the same
    image as one bin."""
    from softjax._src.geometry.clip import PIECES
    from softjax._src.pipeline import soft
    from softjax._src.tiles import bins

    st = bins.static_settings(sj.RasterConfig(4096), PIECES * 8192)
    assert 1 <= st.block < PIECES * 8192 + 1
    assert st.block * 512 * 512 + st.capacity < 2**31

    verts, faces, colours = _bumpy_sphere()
    cam = sj.look_at((0.8, 0.6, 2.4))
    cfg = sj.RasterConfig((20, 24), tile_size=4, chunk=4, pair_capacity=64, sigma=3e-4)

    def image_and_grad(c):
        def loss(v):
            rgba = sj.render(sj.Mesh(v, faces, np.float32(colours)), cam, c)
            return jnp.sum(rgba * jnp.arange(1.0, 5.0)), rgba

        return jax.grad(loss, has_aux=True)(jnp.float32(verts))

    g_dense, expected = image_and_grad(dataclasses.replace(cfg, method="dense"))
    original = soft.static_settings  # as the soft pipeline reads it
    jax.clear_caches()  # compile anew with the patched settings
    try:  # blocks of 37 faces: 18 blocks, some with several rounds
        soft.static_settings = lambda *a, **k: original(*a, **k)._replace(block=37)
        g_blocked, blocked = image_and_grad(cfg)
    finally:
        soft.static_settings = original
        jax.clear_caches()
    np.testing.assert_allclose(blocked, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(g_blocked, g_dense, atol=1e-3 * float(jnp.abs(g_dense).max()))
