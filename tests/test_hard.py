"""Hard rasterization: fragments against the ray caster, layers, interpolation, analytic
antialiasing and its gradients, and `visibility="hard"` in `render`."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from gradcheck import check_grad
from scenes import UP

import softjax as sj


def _scene():
    """A sphere, a torus and a box that passes through the torus: occlusion at several
    depths, interpenetration, vertex colours. Returns verts, faces, colours, object labels."""
    sphere = sj.ico_sphere(2)
    vs = np.asarray(sphere.verts, np.float64) * 0.45 + [-0.9, 0.35, 0.3]
    fs = np.asarray(sphere.faces)
    vt, ft = ref.torus(R=0.7, r=0.25, n_major=16, n_minor=8)
    vt = vt @ ref.rotation_matrix((1.0, 0.0, 0.2), 1.1).T + [0.5, -0.1, -0.2]
    vb, fb = ref.box(size=(0.5, 1.0, 0.4), center=(0.75, 0.0, -0.1),
                     rotation=ref.rotation_matrix((0.3, 1.0, 0.2), 0.6))  # fmt: skip
    parts = [(vs, fs), (vt, ft), (vb, fb)]
    verts, faces, offset = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    verts, faces = np.concatenate(verts), np.concatenate(faces)
    colours = np.clip(0.5 + 0.45 * np.sin(verts * [3.0, 2.0, 4.0]), 0, 1)
    labels = np.repeat(np.arange(3), [len(f) for _, f in parts])
    return verts, faces, colours, labels


def _camera(kind):
    """A softjax camera and its rays (origins, directions) for the ray caster."""
    eye = np.array([0.6, 0.8, 3.2])
    if kind == "perspective":
        size = (26, 38)
        origins, dirs = eye, ref.camera_rays(eye, (0, 0, 0), UP, 50.0, size)
        return sj.look_at(eye, fov=50.0), origins, dirs, size
    if kind == "orthographic":
        size = (24, 24)
        origins, dirs = ref.orthographic_rays(eye, (0, 0, 0), UP, 0.6, size)
        return sj.look_at(eye, projection="orthographic", scale=0.6), origins, dirs, size
    size = (22, 30)
    K = np.array([[26.0, 0.0, 16.3], [0.0, 28.5, 10.2], [0.0, 0.0, 1.0]])
    r, u, f = ref.camera_basis(eye, (0.1, 0.0, 0.0), UP)
    R = np.stack([r, -u, f])
    t = -R @ eye
    origins, dirs = ref.opencv_rays(K, R, t, size)
    return sj.Camera.from_opencv(K, R, t, size), origins, dirs, size


@pytest.mark.parametrize(
    "kind, method",
    [("perspective", "tiled"), ("orthographic", "tiled"), ("opencv", "tiled"),
     ("perspective", "dense")],
)  # fmt: skip
def test_fragments_match_ray_casting(kind, method):
    """Three layers of face ids, depths, barycentrics and interpolated colours at the pixel
    centres equal the ray caster's first three hits, away from exact ties (a centre within
    1e-4 of an edge, or two hits within 1e-4 in depth)."""
    verts, faces, colours, _ = _scene()
    cam, origins, dirs, size = _camera(kind)
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    cfg = sj.RasterConfig(size, method=method)
    frags = sj.rasterize(mesh, cam, cfg, layers=3)
    assert frags.face_id.shape == (*size, 3) and frags.face_id.dtype == jnp.int32
    assert frags.bary.shape == (*size, 3, 3) and frags.depth.shape == (*size, 3)
    fid, depth, bary, edge = ref.raycast_layers(verts, faces, origins, dirs, cam.near, 3)
    finite = np.where(np.isfinite(depth), depth, 1e9)
    gaps = np.diff(np.concatenate([np.zeros((*size, 1)), finite], -1), axis=-1)
    clear, steeps = np.ones(size, bool), []
    for k in range(3):
        near_tie = (edge[..., k] < 1e-4) | ((fid[..., k] >= 0) & (gaps[..., k] < 1e-4))
        clear &= ~near_tie  # a tie in layer k can reorder the later ones
        ok = clear
        assert ok.mean() > 0.85, f"layer {k}: too many ties to compare ({ok.mean():.2f})"
        got = np.asarray(frags.face_id[..., k])
        assert np.array_equal(got[ok], fid[..., k][ok]), f"layer {k}: face ids differ"
        hit = ok & (fid[..., k] >= 0)
        assert hit.sum() >= 15, f"layer {k} has too few hits to compare"
        np.testing.assert_allclose(np.asarray(frags.depth[..., k])[hit], depth[..., k][hit],
                                   atol=1e-5, rtol=0)  # fmt: skip
        # Barycentrics of a face seen nearly edge-on are ill-conditioned in float32 (they
        # divide by its small screen area): 1e-5 where the ray meets the face at more than
        # about 10 degrees, 1e-4 at grazing angles.
        tri = verts[faces[np.maximum(fid[..., k], 0)]]
        normal = np.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
        cosine = np.abs(np.sum(normal * dirs, -1)) / (np.linalg.norm(normal, axis=-1)
                                                      * np.linalg.norm(dirs, axis=-1))  # fmt: skip
        got_bary = np.asarray(frags.bary[..., k, :])
        steep = hit & (cosine > 0.17)
        assert steep.sum() > 0.8 * hit.sum()
        np.testing.assert_allclose(got_bary[steep], bary[..., k, :][steep], atol=1e-5)
        np.testing.assert_allclose(got_bary[hit], bary[..., k, :][hit], atol=1e-4)
        steeps.append(steep)
        np.testing.assert_array_equal(np.asarray(frags.depth[..., k])[fid[..., k] < 0], cam.far)
    rgb = np.asarray(sj.interpolate(mesh.colors, frags, mesh))  # (H, W, 3, 3)
    want = np.einsum("hwkc,hwkcd->hwkd", bary, colours[faces[np.maximum(fid, 0)]])
    hit = clear[..., None] & (fid >= 0)
    np.testing.assert_allclose(rgb[hit], want[hit], atol=1e-4)
    steep = hit & np.stack(steeps, -1)
    np.testing.assert_allclose(rgb[steep], want[steep], atol=1e-5)
    assert np.all(rgb[fid < 0] == 0)
    # One layer is the first of three; tiles, chunks and binning rounds change nothing.
    one = sj.rasterize(mesh, cam, cfg)
    assert one.face_id.shape == size and one.bary.shape == (*size, 3)
    np.testing.assert_array_equal(one.face_id, frags.face_id[..., 0])
    np.testing.assert_array_equal(one.bary, frags.bary[..., 0, :])
    if kind == "perspective" and method == "tiled":
        small = sj.RasterConfig(size, tile_size=3, chunk=5, batch_pairs=200, pair_capacity=40)
        again = sj.rasterize(mesh, cam, small, layers=3)
        np.testing.assert_array_equal(again.face_id, frags.face_id)
        np.testing.assert_allclose(again.depth, frags.depth, atol=1e-6)


def _occluded_sphere(dtype=np.float64):
    """An ico-sphere with a box in front of part of it: silhouette and occlusion edges."""
    sphere = sj.ico_sphere(2)
    rng = np.random.default_rng(3)
    vs = np.asarray(sphere.verts, np.float64) * (1 + 0.03 * rng.standard_normal((162, 1)))
    vb, fb = ref.box(size=(0.4, 0.5, 0.3), center=(0.55, 0.3, 1.2),
                     rotation=ref.rotation_matrix((0.2, 1.0, 0.4), 0.5))  # fmt: skip
    verts = np.concatenate([vs, vb]).astype(dtype)
    faces = np.concatenate([np.asarray(sphere.faces), fb + 162])
    colours = rng.uniform(0.1, 0.9, (len(verts), 3)).astype(dtype)
    return verts, faces, colours


def _shaded(mesh, cam, cfg, antialias=True):
    """The hard pipeline by hand: rasterize, interpolate colours, background, antialias."""
    frags = sj.rasterize(mesh, cam, cfg)
    some = (frags.face_id >= 0)[..., None]
    rgba = jnp.concatenate([sj.interpolate(mesh.colors, frags, mesh), some], -1)
    return sj.antialias(rgba, frags, mesh, cam) if antialias else rgba


def test_antialiased_gradients_match_finite_differences():
    """The antialiased image's gradients w.r.t. vertices near silhouette and occlusion edges,
    colours and the camera agree with float64 central differences (<= 1e-3 relative), and
    vertices away from the silhouettes get the gradients of plain interpolation."""
    verts, faces, colours = _occluded_sphere()
    size = (20, 27)
    cfg = sj.RasterConfig(size, visibility="hard")
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((*size, 4))
    eye0 = np.array([0.4, 0.5, 3.0])

    # Jitted: one compilation per argument shape serves the few dozen differences below.
    @functools.partial(jax.jit, static_argnames="antialias")
    def loss(v, c, eye, antialias=True):
        cam = sj.look_at(eye, fov=45.0)
        return jnp.sum(weights * _shaded(sj.Mesh(v, faces, c), cam, cfg, antialias))

    with jax.enable_x64(True):
        grads = jax.grad(loss, argnums=(0, 1, 2))(verts, colours, eye0)
        plain = jax.grad(lambda v: loss(v, colours, eye0, False))(verts)
        # The render path gives the same image and gradients as the pipeline by hand.
        mesh, cam = sj.Mesh(verts, faces, colours), sj.look_at(eye0, fov=45.0)

        @jax.jit
        def render_and_by_hand(v):
            image, vjp = jax.vjp(lambda v: sj.render(sj.Mesh(v, faces, colours), cam, cfg), v)
            return image, _shaded(sj.Mesh(v, faces, colours), cam, cfg), vjp(weights)[0]

        image, by_hand, g_render = render_and_by_hand(verts)
        np.testing.assert_allclose(image, by_hand, atol=1e-12)
        np.testing.assert_allclose(g_render, grads[0], rtol=1e-9, atol=1e-12)

        frags = sj.rasterize(mesh, cam, cfg)
        fid = np.asarray(frags.face_id)
        # Faces seen next to a pixel of the other object or of the background.
        label = np.where(fid >= 0, fid >= 320, -1)
        edge = np.zeros_like(fid, bool)
        for axis in (0, 1):
            diff = np.diff(label, axis=axis) != 0
            pad = [(0, 0), (0, 0)]
            pad[axis] = (0, 1)
            edge |= np.pad(diff, pad)
            pad[axis] = (1, 0)
            edge |= np.pad(diff, pad)
        touched = np.zeros(len(verts), bool)
        touched[faces[np.unique(fid[edge & (fid >= 0)])].ravel()] = True
        moved = np.abs(grads[0] - plain).max(axis=1) > 1e-9
        assert moved.sum() >= 6, "antialiasing must move some vertices' gradients"
        assert not np.any(moved & ~touched), "only vertices of faces on edges change"
        inner = ~touched & (np.abs(plain).max(axis=1) > 1e-3)
        assert inner.sum() >= 5
        np.testing.assert_allclose(grads[0][inner], plain[inner], rtol=1e-12, atol=1e-14)

        near = np.flatnonzero(np.repeat(moved, 3))  # coordinates of vertices near edges
        picked = rng.choice(near, size=min(8, near.size), replace=False)

        def along_coords(v):
            return loss(v, colours, eye0)

        x = verts.ravel()
        grad = np.asarray(grads[0]).ravel()
        for i in picked:
            d = np.zeros_like(x)
            d[i] = 1.0
            step = 1e-6
            fd = (along_coords((x + step * d).reshape(verts.shape))
                  - along_coords((x - step * d).reshape(verts.shape))) / (2 * step)  # fmt: skip
            err = abs(grad[i] - fd) / max(abs(fd), 1e-2 * np.abs(grad).max())
            assert err <= 1e-3, f"vertex coordinate {i}: analytic {grad[i]}, fd {fd}"
        check_grad(along_coords, verts, rng, 0, tol=1e-3, grad=grads[0])  # a random direction
        check_grad(lambda c: loss(verts, c, eye0), colours, rng, 4, tol=1e-3, grad=grads[1])
        check_grad(lambda e: loss(verts, colours, e), eye0, rng, 3, tol=1e-3, grad=grads[2])


def test_listed_pairs_blend_like_every_pair():
    """The antialiasing computes only the listed pairs that may blend, in rounds
    (`RasterConfig.antialias_capacity`): the image and its gradients are those of computing
    every pair as planes (float64), with one round or many, on a scene with silhouettes,
    occlusions and interpenetration."""
    from softjax._src import topology
    from softjax._src.camera import to_camera
    from softjax._src.hard import antialias
    from softjax._src.hard.fragments import silhouette_planes

    verts, faces, colours, _ = _scene()
    cam = sj.look_at(np.array([0.6, 0.8, 3.2]), fov=50.0, up=UP)
    size = (26, 38)
    cfg = sj.RasterConfig(size, visibility="hard")
    weights = np.random.default_rng(1).standard_normal((*size, 4))

    def run(capacity):
        cfg_c = sj.RasterConfig(size, visibility="hard", antialias_capacity=capacity)
        with jax.enable_x64(True):

            def loss(v, c, eye):
                mesh = sj.Mesh(v, jnp.asarray(faces), c)
                return jnp.sum(weights * sj.render(mesh, sj.look_at(eye, fov=50.0, up=UP), cfg_c))

            def image_and_grads(v, c, eye):
                image = sj.render(sj.Mesh(v, jnp.asarray(faces), c), cam, cfg_c)
                return image, jax.grad(loss, argnums=(0, 1, 2))(v, c, eye)

            args = (jnp.asarray(verts), jnp.asarray(colours), jnp.asarray([0.6, 0.8, 3.2]))
            return jax.jit(image_and_grads)(*args)

    default = antialias.blend_capacity(size)
    mesh = sj.Mesh(verts, faces, colours)
    face = sj.rasterize(mesh, cam, cfg).face_id
    edges = topology.silhouette_edges(to_camera(cam, mesh.verts), mesh.faces, False)
    counts = antialias._candidates(face, silhouette_planes(edges, face))
    counts = counts.sum(axis=1).tolist()
    assert min(counts) > 3 * 8, f"each kind of pair must take several rounds: {counts}"
    every, listed, rounds = run(0), run(None), run(8)
    assert default > 3 * 8
    img = np.asarray(every[0])
    assert ((img[..., 3] > 0) & (img[..., 3] < 1)).sum() >= 10, "the scene must blend"
    for other in (listed, rounds):
        np.testing.assert_allclose(other[0], every[0], rtol=0, atol=1e-13)
        for a, b in zip(other[1], every[1], strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


def test_hard_render_matches_ray_casting_and_shades_like_the_soft_limit():
    """`visibility="hard"` draws what the ray caster sees, shades textures like the soft
    path's hard limit, returns its auxiliary outputs from the z-buffer, and batches."""
    verts, faces, colours, labels = _scene()
    cam, origins, dirs, size = _camera("perspective")
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    cfg = sj.RasterConfig(size, visibility="hard", aovs=("depth", "face_id"))
    rgba, aux = sj.render(mesh, cam, cfg)
    out = ref.raycast_rays(verts, faces, colours, origins, dirs, cam.near)
    ref.assert_matches("hard", rgba, out, labels)
    frags = sj.rasterize(mesh, cam, cfg)
    np.testing.assert_array_equal(aux["face_id"], frags.face_id)
    np.testing.assert_array_equal(aux["depth"], frags.depth)
    np.testing.assert_array_equal(sj.render_silhouette(mesh, cam, cfg), rgba[..., 3])

    # A UV texture, lit per fragment: the hard path equals the soft one in its hard limit
    # away from edges.
    uvs = np.float32(np.stack([0.5 + 0.5 * np.arctan2(verts[:, 2], verts[:, 0]) / np.pi,
                               0.5 + 0.4 * verts[:, 1]], -1))  # fmt: skip
    texture = np.float32(np.random.default_rng(1).uniform(0, 1, (8, 8, 3)))
    textured = sj.Mesh(np.float32(verts), faces, uvs=uvs, face_uvs=faces, texture=texture)
    lights = sj.Lights(ambient=0.4, directional=[sj.DirectionalLight(direction=(0, -1, -1))])
    hard_cfg = sj.RasterConfig(size, shading="phong", visibility="hard")
    soft_cfg = sj.RasterConfig(size, shading="phong", sigma=1e-9, gamma=1e-6)
    hard_img = np.asarray(sj.render(textured, cam, hard_cfg, lights))
    soft_img = np.asarray(sj.render(textured, cam, soft_cfg, lights))
    labels_px = np.where(out.mask, labels[np.maximum(out.face_id, 0)], -1)
    inner = out.mask & ~ref.label_boundary(labels_px)
    assert inner.sum() > 50
    np.testing.assert_allclose(hard_img[inner], soft_img[inner], atol=1e-4)

    # A batch of views under vmap is each view alone.
    eyes = jnp.asarray([[0.6, 0.8, 3.2], [-0.5, 0.3, 3.0]], jnp.float32)
    plain = sj.RasterConfig(size, visibility="hard")
    batch = jax.vmap(lambda e: sj.render(mesh, sj.look_at(e, fov=50.0), plain))(eyes)
    for i in range(2):
        alone = sj.render(mesh, sj.look_at(eyes[i], fov=50.0), plain)
        np.testing.assert_allclose(batch[i], alone, atol=1e-6)


def test_hard_settings_are_checked():
    mesh = sj.ico_sphere(1)
    cam = sj.look_at((0.0, 0.0, 3.0))
    with pytest.raises(ValueError, match="visibility"):
        sj.RasterConfig(visibility="sharp")
    cfg = sj.RasterConfig((8, 8))
    with pytest.raises(ValueError, match="layers"):
        sj.rasterize(mesh, cam, cfg, layers=0)
    frags = sj.rasterize(mesh, cam, cfg)
    with pytest.raises(ValueError, match="per-vertex"):
        sj.interpolate(jnp.ones((5, 3)), frags, mesh)
    with pytest.raises(TypeError, match="Fragments"):
        sj.interpolate(jnp.ones((42, 3)), frags.face_id, mesh)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        sj.antialias(jnp.ones((9, 8, 3)), frags, mesh, cam)
    with pytest.raises(TypeError, match="reverse-mode"):
        hard_cfg = sj.RasterConfig((8, 8), visibility="hard", method="dense")
        jax.jvp(lambda v: sj.render_silhouette(sj.Mesh(v, mesh.faces), cam, hard_cfg),
                (mesh.verts,), (jnp.ones_like(mesh.verts),))  # fmt: skip
    empty = sj.rasterize(sj.Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), int)), cam, cfg)
    assert np.all(np.asarray(empty.face_id) == -1)


def test_row_strips_match_one_pass():
    """Large images shade in strips of rows, recomputed in the backward pass: the image, face
    ids, depth and gradients are those of one pass (float64), also with an uneven last
    strip and antialiasing across the strips' seams."""
    verts, faces, colours, _ = _scene()
    size = (41, 36)

    def run(strip_pixels=None):
        cfg = sj.RasterConfig(size, visibility="hard", aovs=("depth", "face_id"),
                              strip_pixels=strip_pixels)  # fmt: skip
        with jax.enable_x64(True):
            cam = sj.look_at(np.array([0.2, 0.6, 3.0]), fov=55.0, up=UP)
            weights = jax.random.normal(jax.random.PRNGKey(3), (*size, 4), jnp.float64)

            def loss(v, c):
                img, aux = sj.render(sj.Mesh(v, jnp.asarray(faces), c), cam, cfg)
                return jnp.sum(weights * img) + 0.1 * jnp.sum(aux["depth"]), (img, aux)

            grad = jax.grad(loss, argnums=(0, 1), has_aux=True)
            (g_v, g_c), (img, aux) = grad(jnp.asarray(verts), jnp.asarray(colours))
            return img, aux, g_v, g_c

    one = run()
    strips = run(6 * size[1])  # 7 strips, the last of 5 rows
    assert np.array_equal(one[1]["face_id"], strips[1]["face_id"])
    img = np.asarray(one[0])
    assert ((img[..., 3] > 0) & (img[..., 3] < 1)).sum() > 0, "the scene must be antialiased"
    np.testing.assert_allclose(strips[0], one[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(strips[1]["depth"], one[1]["depth"], rtol=0, atol=1e-12)
    for a, b in zip(strips[2:], one[2:], strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * np.abs(b).max())


def test_edge_neighbours_by_packed_keys_match_the_general_sort():
    """The packed-key neighbour search (one sorted array) finds the same faces across each
    edge as the general (key, key, index) sort: closed and open meshes, an edge shared by
    three faces, a face mask."""
    from softjax._src.topology import neighbours

    rng = np.random.default_rng(0)
    mesh = sj.ico_sphere(2)
    closed = np.asarray(mesh.faces)
    holed = np.concatenate([closed[5:], closed[9:10]])  # a hole and a three-face edge
    for faces in (closed, holed):
        mask = jnp.asarray(rng.uniform(size=len(faces)) > 0.2)
        for m in (None, mask):
            packed = neighbours(jnp.asarray(faces), m, mesh.verts.shape[0])
            general = neighbours(jnp.asarray(faces), m)
            assert np.array_equal(packed, general)
    assert (np.asarray(neighbours(jnp.asarray(closed), None, 642)) >= 0).all()
    assert (np.asarray(neighbours(jnp.asarray(holed), None, 642)) < 0).sum() > 0


def test_edge_topology_built_once_gives_the_same_images_and_gradients():
    """`sj.edge_topology(mesh)` passed to `render`, `render_silhouette` and `antialias` gives
    what they compute when they build it themselves, images and gradients; it checks what it
    is given."""
    verts, faces, colours, _ = _scene()
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    topology = sj.edge_topology(mesh)
    assert topology.across.shape == (len(faces), 3) and topology.across.dtype == jnp.int32
    assert int((topology.across >= 0).sum()) > 0
    cam = sj.look_at(np.array([0.6, 0.8, 3.2]), fov=50.0, up=UP)
    cfg = sj.RasterConfig((18, 22), visibility="hard")
    weights = np.random.default_rng(2).standard_normal((18, 22, 4)).astype(np.float32)

    @jax.jit
    def images_and_grad(v, topo):
        def loss(v):
            m = sj.Mesh(v, faces, np.float32(colours))
            frags = sj.rasterize(m, cam, cfg)
            shaded = jnp.concatenate([sj.interpolate(m.colors, frags, m), frags.bary[..., :1]], -1)
            images = (sj.render(m, cam, cfg, topology=topo),
                      sj.render_silhouette(m, cam, cfg, topology=topo),
                      sj.antialias(shaded, frags, m, cam, topology=topo))  # fmt: skip
            total = sum(jnp.sum(weights[..., : x.shape[-1]] * x) for x in images[::2])
            return total + jnp.sum(weights[..., 0] * images[1]), images

        return jax.grad(loss, has_aux=True)(v)

    grad, images = images_and_grad(mesh.verts, topology)
    assert float(jnp.abs(grad).max()) > 0
    for a, b in zip(
        (grad, *images), jax.tree.leaves(images_and_grad(mesh.verts, None)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # It is what the hard path reads: with no neighbours every edge is a silhouette edge,
    # and interior edges between differently coloured faces blend too.
    isolated = sj.EdgeTopology(jnp.full_like(topology.across, -1))
    assert not np.array_equal(images_and_grad(mesh.verts, isolated)[1][0], images[0])
    with pytest.raises(TypeError, match="edge_topology"):
        sj.render(mesh, cam, cfg, topology=topology.across)
    other = sj.edge_topology(sj.ico_sphere(1))
    with pytest.raises(ValueError, match="faces"):
        sj.antialias(jnp.zeros((18, 22)), sj.rasterize(mesh, cam, cfg), mesh, cam, topology=other)
