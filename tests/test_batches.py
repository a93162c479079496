"""Batches: meshes of different sizes (`face_mask`, `stack_meshes`), joined scenes
(`join_meshes`) and views rendered in parallel (`RasterConfig.parallel_views`)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import softjax as sj
from softjax._src.tiles.views import views_in_parallel

LIGHTS = sj.Lights(0.4, [sj.DirectionalLight((0.3, -1.0, -0.8), intensity=0.6)])
CAM = sj.look_at((0.4, 0.6, 3.2))
# Gouraud shading, so that smooth vertex normals (which sum over faces) take part.
CFG = sj.RasterConfig(image_size=(20, 20), sigma=2e-3, gamma=1e-3, shading="gouraud")


def _coloured(mesh, seed, scale, shift):
    colours = jax.random.uniform(jax.random.key(seed), mesh.verts.shape)
    return sj.Mesh(mesh.verts * scale + jnp.asarray(shift), mesh.faces, colours)


def _sizes():
    """Meshes with 12, 320 and 1,280 faces."""
    v, f = ref.box(size=(1.4, 1.0, 1.2), rotation=ref.rotation_matrix((1.0, 2.0, 0.5), 0.6))
    box = sj.Mesh(np.float32(v), f)
    return [_coloured(box, 0, 1.0, (0.1, 0.0, 0.0)), _coloured(sj.ico_sphere(2), 1, 0.9, 0.0),
            _coloured(sj.ico_sphere(3), 2, 1.1, (-0.1, 0.1, 0.0))]  # fmt: skip


WEIGHTS = jnp.array([0.3, 0.5, 0.7, 1.0])


def _loss(mesh, verts, colours, cfg):
    """A weighted sum of the squared image, and the image."""
    out = sj.render(mesh.replace(verts=verts, colors=colours), CAM, cfg, LIGHTS)
    rgba = out[0] if cfg.aovs else out
    return jnp.sum(rgba**2 * WEIGHTS), out


def _grad(cfg):
    """Gradients with respect to vertices and colours, and the image (one compilation)."""
    return jax.jit(jax.grad(lambda m, v, c: _loss(m, v, c, cfg), (1, 2), has_aux=True))


@pytest.mark.parametrize("method", ["tiled", "dense"])
def test_stacked_meshes_of_different_sizes_render_as_each_alone(method):
    """Each element of a padded batch gives the mesh's own image and gradients; the padding
    vertices get exactly zero gradient."""
    cfg = dataclasses.replace(CFG, method=method)
    meshes = _sizes()
    assert [m.num_faces for m in meshes] == [12, 320, 1280]
    batch = sj.stack_meshes(meshes)
    assert batch.verts.shape == (3, 642, 3) and batch.face_mask.shape == (3, 1280)
    assert batch.faces.shape == (3, 1280, 3) and batch.colors.shape == (3, 642, 3)
    np.testing.assert_array_equal(batch.face_mask.sum(1), [12, 320, 1280])

    grads, images = jax.vmap(_grad(cfg))(batch, batch.verts, batch.colors)
    for b, mesh in enumerate(meshes):
        n = mesh.num_verts
        grads_alone, image = _grad(cfg)(mesh, mesh.verts, mesh.colors)
        assert float(jnp.max(image[..., 3])) > 0.5
        np.testing.assert_allclose(images[b], image, atol=1e-6, rtol=0)
        for got, want in zip(grads, grads_alone, strict=True):
            scale = float(jnp.max(jnp.abs(want)))
            assert scale > 0
            np.testing.assert_allclose(got[b, :n], want, atol=1e-5 * scale, rtol=0)
            assert np.all(np.asarray(got[b, n:]) == 0.0), "padding vertices got a gradient"


def test_masked_faces_render_as_removed_and_get_zero_gradient():
    """Half the faces masked renders what the mesh without them renders (colour, depth,
    normals, face ids), and no gradient reaches a vertex through a masked face."""
    base = _coloured(sj.ico_sphere(2), 3, 1.0, 0.0)
    keep = np.arange(base.num_faces) % 2 == 0
    keep[:40] = True  # a region of whole faces, so that some vertices touch only kept faces
    masked = base.replace(face_mask=keep)
    removed = sj.Mesh(base.verts, base.faces[keep], base.colors)
    cfg = dataclasses.replace(CFG, aovs=("depth", "normals", "face_id"))
    g_m, (rgba_m, out_m) = _grad(cfg)(masked, masked.verts, masked.colors)
    g_r, (rgba_r, out_r) = _grad(cfg)(removed, removed.verts, removed.colors)
    np.testing.assert_allclose(rgba_m, rgba_r, atol=1e-6, rtol=0)
    for name in ("depth", "normals"):
        np.testing.assert_allclose(out_m[name], out_r[name], atol=1e-5, rtol=0)
    kept = np.flatnonzero(keep)
    ids_r = np.asarray(out_r["face_id"])
    assert (ids_r >= 0).sum() > 50
    np.testing.assert_array_equal(out_m["face_id"], np.where(ids_r >= 0, kept[ids_r], -1))

    # Vertices of masked faces only: a gradient there would have come through them.
    only_masked = np.setdiff1d(np.asarray(base.faces)[~keep], np.asarray(base.faces)[keep])
    assert len(only_masked) > 0
    for got, want in zip(g_m, g_r, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.max(jnp.abs(want))), rtol=0)
        assert np.all(np.asarray(got)[only_masked] == 0.0)


def test_textured_meshes_stack():
    """UV textures of one size and atlases of one resolution stack, rendering as alone."""
    sphere = sj.ico_sphere(1)
    small = sj.Mesh(sphere.verts[:12] * 0.8, sphere.faces[:20] % 12)  # not a closed mesh
    uv_meshes, atlas_meshes = [], []
    for i, m in enumerate((small, sphere)):
        key = jax.random.key(10 + i)
        uvs = (m.verts[:, :2] + 1.0) / 2.0
        tex = jax.random.uniform(key, (4, 6, 3))
        uv_meshes.append(sj.Mesh(m.verts, m.faces, uvs=uvs, face_uvs=m.faces, texture=tex))
        atlas = jax.random.uniform(key, (m.num_faces, 2, 2, 3))
        atlas_meshes.append(sj.Mesh(m.verts, m.faces, atlas=atlas))
    cfg = dataclasses.replace(CFG, image_size=(12, 12), shading="flat", method="dense")
    render = jax.vmap(lambda m: sj.render(m, CAM, cfg, LIGHTS))
    for meshes in (uv_meshes, atlas_meshes):
        images = render(sj.stack_meshes(meshes))
        # The small mesh is the padded one (the other one is only stacked).
        np.testing.assert_allclose(images[0], sj.render(meshes[0], CAM, cfg, LIGHTS), atol=1e-6)
        assert float(jnp.max(images[1, ..., 3])) > 0.5


def test_stacking_or_joining_what_cannot_be_padded_says_what_differs():
    sphere, box = sj.ico_sphere(1), _sizes()[0]
    uv = sj.Mesh(sphere.verts, sphere.faces, uvs=sphere.verts[:, :2], face_uvs=sphere.faces,
                 texture=jnp.ones((4, 4, 3)))  # fmt: skip
    uv8 = uv.replace(texture=jnp.ones((8, 4, 3)))
    atlas2 = sj.Mesh(sphere.verts, sphere.faces, atlas=jnp.ones((80, 2, 2, 3)))
    atlas3 = sj.Mesh(sphere.verts, sphere.faces, atlas=jnp.ones((80, 3, 3, 3)))
    cases = [
        ([sphere, box], "mesh 1 has vertex colours, mesh 0 has no colours"),
        ([uv, uv8], r"mesh 1's texture is \(8, 4, 3\), mesh 0's \(4, 4, 3\)"),
        ([atlas2, atlas3], "mesh 1's atlas has 3 x 3 texels per face, mesh 0's 2 x 2"),
        ([uv, uv.replace(texture_wrap="wrap")], "texture_wrap='wrap'"),
        ([uv.replace(colors=sphere.verts), uv], "mesh 1 has no vertex colours, mesh 0 has"),
        ([sphere, sj.Mesh(sphere.verts.astype(jnp.float16), sphere.faces)], "float16"),
        ([], "at least one mesh"),
    ]
    for meshes, message in cases:
        with pytest.raises(ValueError, match=message):
            sj.stack_meshes(meshes)
    with pytest.raises(ValueError, match="already batched"):
        sj.stack_meshes([sj.stack_meshes([sphere, sphere])])
    with pytest.raises(TypeError, match="single Mesh"):
        sj.stack_meshes(sphere)
    with pytest.raises(TypeError, match="item 1 is a ndarray"):
        sj.join_meshes([sphere, np.zeros(3)])
    with pytest.raises(ValueError, match="own UV texture"):
        sj.join_meshes([uv, uv.replace(texture=jnp.zeros((4, 4, 3)))])
    with pytest.raises(ValueError, match="texture atlas"):
        sj.join_meshes([uv, atlas2])
    # Equal texture values join, also after a round trip through a transformation.
    joined = sj.join_meshes(jax.jit(lambda ms: ms)([uv, uv]))
    assert joined.num_faces == 160 and int(joined.face_uvs.max()) == 2 * len(uv.uvs) - 1
    with pytest.raises(ValueError, match="must have dtype bool"):
        sphere.replace(face_mask=np.ones(80, np.int32))
    with pytest.raises(ValueError, match=r"`face_mask` must have shape \(80\)"):
        sphere.replace(face_mask=np.ones(79, bool))


def test_save_obj_leaves_masked_faces_out(tmp_path):
    pytest.importorskip("trimesh")
    sphere = sj.ico_sphere(1)
    keep = np.arange(80) < 30
    path = sj.save_obj(tmp_path / "masked.obj", sphere.replace(face_mask=keep))
    assert sj.load_obj(path).num_faces == 30
    with pytest.raises(ValueError, match="no faces left unmasked"):
        sj.save_obj(tmp_path / "none.obj", sphere.replace(face_mask=np.zeros(80, bool)))


def test_joined_meshes_occlude_each_other_as_ray_casting_shows():
    """`join_meshes` is the concatenation by hand, and in the hard limit the front object
    hides the back one where the ray caster says so, face ids included."""
    vb, fb = ref.box(size=(1.8, 1.3, 0.6), center=(0.0, 0.1, -0.8))
    vl, fl = ref.l_shape(size=1.2, depth=0.4, center=(0.35, -0.2, 0.6))
    back = sj.Mesh(np.float32(vb), fb, np.tile(np.float32([0.9, 0.1, 0.1]), (len(vb), 1)))
    front = sj.Mesh(np.float32(vl), fl)  # no colours: white
    joined = sj.join_meshes([back, front])
    verts = np.concatenate([vb, vl])
    faces = np.concatenate([fb, fl + len(vb)])
    colours = np.concatenate([np.asarray(back.colors), np.ones((len(vl), 3), np.float32)])
    by_hand = sj.Mesh(np.float32(verts), faces, colours)
    np.testing.assert_array_equal(joined.faces, by_hand.faces)
    np.testing.assert_array_equal(joined.colors, by_hand.colors)

    eye, size = (0.8, 0.6, 3.2), (32, 32)
    cam = sj.look_at(eye, fov=50.0, near=0.1, far=100.0)
    cfg = sj.RasterConfig(image_size=size, sigma=1e-9, gamma=1e-6, aovs=("face_id",))
    rgba, out = sj.render(joined, cam, cfg)
    rgba_h, out_h = sj.render(by_hand, cam, cfg)
    np.testing.assert_array_equal(rgba, rgba_h)
    np.testing.assert_array_equal(out["face_id"], out_h["face_id"])

    obj = np.repeat([0, 1], [len(fb), len(fl)])
    cast = ref.raycast(verts, faces, colours, eye, (0, 0, 0), (0, 1, 0), 50.0, 0.1, size)
    ref.assert_matches("joined", np.asarray(rgba), cast, obj)
    back_only = ref.raycast(vb, fb, colours, eye, (0, 0, 0), (0, 1, 0), 50.0, 0.1, size)
    hidden = back_only.mask & (obj[np.maximum(cast.face_id, 0)] == 1) & cast.mask
    hidden &= ~ref.label_boundary(np.where(cast.mask, obj[np.maximum(cast.face_id, 0)], -1))
    assert hidden.sum() >= 20, "the front object must hide part of the back one"
    np.testing.assert_allclose(rgba[hidden, :3], 1.0, atol=0.02)
    ids = np.asarray(out["face_id"])
    assert np.all(obj[ids[hidden]] == 1)


def test_views_in_parallel_groups_divide_the_batch():
    assert views_in_parallel(64, None, "gpu", 1, False) == 64
    assert views_in_parallel(16, None, "cpu", 1, False) == 1
    assert views_in_parallel(16, None, "cpu", 8, False) == 8
    assert views_in_parallel(12, None, "cpu", 8, False) == 6
    assert views_in_parallel(16, None, "cpu", 8, True) == 1
    assert views_in_parallel(10, 4, "cpu", 1, False) == 2
    assert views_in_parallel(3, 64, "tpu", 1, False) == 3
    with pytest.raises(ValueError, match="parallel_views"):
        sj.RasterConfig(parallel_views=0)


def test_views_rendered_in_parallel_equal_one_at_a_time():
    """The vectorised stream (what an accelerator runs) gives each view what the serial one
    gives: colour, silhouette, face ids and gradients."""
    mesh = _coloured(sj.ico_sphere(2), 4, 1.0, 0.0)
    angles = jnp.linspace(0.0, 2 * jnp.pi, 8, endpoint=False)
    eyes = jnp.stack([3 * jnp.sin(angles), 0.4 * jnp.cos(2 * angles), 3 * jnp.cos(angles)], 1)
    cams = jax.vmap(sj.look_at)(eyes)
    target = jax.random.uniform(jax.random.key(5), (8, *CFG.image_size, 4))

    def run(parallel):
        cfg = dataclasses.replace(CFG, parallel_views=parallel, aovs=("face_id",))

        def loss(verts, colours):
            m = mesh.replace(verts=verts, colors=colours)
            rgba, out = jax.vmap(lambda c: sj.render(m, c, cfg, LIGHTS))(cams)
            return jnp.sum((rgba - target) ** 2), (rgba, out["face_id"])

        return jax.jit(jax.grad(loss, (0, 1), has_aux=True))(mesh.verts, mesh.colors)

    # All 8 at once (an accelerator's default); groups of several views run in the sharded
    # test (tests/test_sharding.py).
    (gv, gc), (rgba, ids) = run(1)
    (gv_p, gc_p), (rgba_p, ids_p) = run(8)
    np.testing.assert_allclose(rgba_p, rgba, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(ids_p, ids)
    for got, want in ((gv_p, gv), (gc_p, gc)):
        np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.max(jnp.abs(want))))
