"""Face ids and the inside test: every pixel centre on an edge shared by two faces belongs to
exactly one of them, equal depths go to the lowest face index, and neither depends on the
method, tiles, chunks, rounds or batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scenes

import softjax as sj
from softjax._src.geometry.clip import project
from softjax._src.geometry.pairs import pair_geometry
from softjax._src.geometry.triangles import geometry_rows, setup
from softjax._src.pixels import pixel_centers

HARD = {**scenes.HARD, "aovs": ("face_id",)}
SETTINGS = [
    dict(method="dense"),
    dict(tile_size=1, chunk=1, batch_pairs=7, pair_capacity=13),
    dict(tile_size=3, chunk=5, batch_pairs=200, pair_capacity=40),
]
IDS = ["dense", "tile1-chunk1", "tile3-chunk5"]


def _quad():
    """Two triangles sharing the diagonal x = y, which passes through pixel centres of an
    8 x 8 image exactly."""
    verts = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    return sj.Mesh(verts, [[0, 1, 2], [0, 2, 3]]), sj.look_at((0.0, 0.0, 3.0)), (8, 8)


def _fan(n=6):
    """`n` triangles around a vertex on the optical axis, the centre of a 9 x 9 image."""
    angles = 2 * np.pi * np.arange(n) / n
    rim = np.stack([np.cos(angles), np.sin(angles), np.zeros(n)], 1)
    verts = np.float32(np.concatenate([[[0.0, 0.0, 0.0]], rim]))
    faces = [[0, 1 + k, 1 + (k + 1) % n] for k in range(n)]
    return sj.Mesh(verts, faces), sj.look_at((0.0, 0.0, 3.0)), (9, 9)


def _bumpy(seed=0):
    base = sj.ico_sphere(2)
    rng = np.random.default_rng(seed)
    verts = np.asarray(base.verts) * (1 + 0.15 * rng.standard_normal((base.num_verts, 1)))
    return sj.Mesh(np.float32(verts), base.faces), sj.look_at((0.5, 0.3, 2.6)), (21, 27)


def _face_ids(mesh, cam, size, **settings):
    return np.asarray(sj.render(mesh, cam, sj.RasterConfig(size, **HARD, **settings))[1]["face_id"])


def _inside_count(mesh, cam, size):
    """How many triangles hold each pixel centre, by the rasterizer's own inside test."""
    tris = project(mesh.verts, mesh.faces, cam)
    pix = pixel_centers(size, jnp.float32)
    frags = pair_geometry(pix[:, :1], pix[:, 1:], setup(geometry_rows(tris.xy, tris.z)))
    return np.asarray(jnp.sum(frags.inside & tris.valid, axis=-1)).reshape(size)


@pytest.mark.parametrize("scene", [_quad, _fan])
def test_shared_edges_and_vertices_belong_to_exactly_one_face(scene):
    mesh, cam, size = scene()
    count = _inside_count(mesh, cam, size)
    ids = _face_ids(mesh, cam, size, method="dense")
    covered = ids >= 0
    assert covered.sum() >= 16
    # Inside the shape every centre (on the diagonal, or on the fan's centre vertex) is in
    # exactly one triangle; none is in two.
    assert count.max() == 1
    np.testing.assert_array_equal(count, covered)
    if scene is _quad:
        rows, cols = np.arange(2, 6), 7 - np.arange(2, 6)  # the centres on the diagonal
        assert np.all(ids[rows, cols] >= 0)
        assert np.all(ids[2:6, 2:6] >= 0)  # no holes anywhere in the quad
    else:
        assert ids[4, 4] >= 0


@pytest.mark.parametrize("settings", SETTINGS, ids=IDS)
@pytest.mark.parametrize("scene", [_quad, _fan, _bumpy])
def test_face_ids_do_not_depend_on_method_tiles_chunks_or_rounds(scene, settings):
    mesh, cam, size = scene()
    np.testing.assert_array_equal(_face_ids(mesh, cam, size, **settings),
                                  _face_ids(mesh, cam, size, method="dense"))  # fmt: skip


@pytest.mark.parametrize("settings", SETTINGS, ids=IDS)
def test_equal_depths_go_to_the_lowest_face_index(settings):
    """Every face twice (copies at exactly the same depth everywhere), shuffled: each covered
    pixel shows the lower of the two indices."""
    mesh, cam, size = _bumpy()
    faces = np.asarray(mesh.faces)
    n = len(faces)
    doubled = np.concatenate([faces, faces])
    order = np.random.default_rng(1).permutation(2 * n)
    shuffled = sj.Mesh(mesh.verts, doubled[order])
    ids = _face_ids(shuffled, cam, size, **settings)
    single = _face_ids(mesh, cam, size, method="dense")
    np.testing.assert_array_equal(ids >= 0, single >= 0)
    # Position of face f and of its copy in the shuffled list; the lower one wins.
    where = np.argsort(order)
    expected = np.minimum(where[:n], where[n:])
    np.testing.assert_array_equal(ids[single >= 0], expected[single[single >= 0]])


def test_face_ids_under_vmap_match_single_views():
    mesh, _, size = _bumpy()
    eyes = jnp.array([[0.5, 0.3, 2.6], [-2.0, 0.8, 1.5], [0.1, -2.4, 0.9]])
    cfg = sj.RasterConfig(size, tile_size=4, chunk=4, pair_capacity=60, **HARD)
    batched = jax.vmap(lambda e: sj.render(mesh, sj.look_at(e), cfg)[1]["face_id"])(eyes)
    for i in range(len(eyes)):
        np.testing.assert_array_equal(batched[i], _face_ids(mesh, sj.look_at(eyes[i]), size,
                                                            method="dense"))  # fmt: skip


def test_silhouette_on_a_shared_edge_is_three_quarters():
    """The documented SoftRas behaviour: a centre on an edge shared by two faces is at
    distance 0 from both, each covering it with D = 1/2, so alpha = 1 - (1 - 1/2)^2 = 0.75
    there, and 1 a few sqrt(sigma) away from the edge."""
    mesh, cam, size = _quad()
    for method in ("tiled", "dense"):
        alpha = np.asarray(
            sj.render_silhouette(mesh, cam, sj.RasterConfig(size, sigma=1e-9, method=method))
        )
        rows, cols = np.arange(2, 6), 7 - np.arange(2, 6)
        np.testing.assert_allclose(alpha[rows, cols], 0.75, atol=1e-6)
        off = np.ones((8, 8), bool)
        off[rows, cols] = False
        np.testing.assert_allclose(alpha[2:6, 2:6][off[2:6, 2:6]], 1.0, atol=1e-6)
