"""softjax.losses: values against hand computations and independent numpy formulas, invariances,
finite gradients on degenerate meshes, jit / vmap, and float64 finite differences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gradcheck import check_grad

import softjax as sj
from softjax import losses

# Jitted entry points: one compilation per test instead of one per eager operation and shape.
cot_delta = jax.jit(
    losses.cotangent_laplacian_delta, static_argnames=("method", "stop_weight_gradient")
)
cot_loss = jax.jit(
    losses.cotangent_laplacian_loss, static_argnames=("method", "stop_weight_gradient")
)
edge_loss = jax.jit(losses.edge_length_loss)
normal_loss = jax.jit(losses.normal_consistency_loss)
flatten = jax.jit(losses.flatten_loss)
mse = jax.jit(losses.mse)
l1 = jax.jit(losses.l1)

# --- small meshes -------------------------------------------------------------------------------

# A unit square in the z = 0 plane, two counter-clockwise triangles sharing the diagonal (0, 2).
SQUARE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64)
SQUARE_F = np.array([[0, 1, 2], [0, 2, 3]])

# A regular tetrahedron, outward counter-clockwise faces.
TET_V = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float64)
TET_F = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])


def _sphere(level=1, noise=0.05, seed=0):
    mesh = sj.ico_sphere(level)
    rng = np.random.default_rng(seed)
    verts = np.asarray(mesh.verts, np.float64)
    return verts + noise * rng.standard_normal(verts.shape), np.asarray(mesh.faces)


def _jittered_grid(n=5, jitter=0.2, seed=0):
    """A planar n x n grid in z = 0, vertices moved randomly inside their cells, with each cell
    split along a random diagonal: an irregular planar triangulation."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64))
    verts = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], 1)
    interior = (x.ravel() > 0) & (x.ravel() < n - 1) & (y.ravel() > 0) & (y.ravel() < n - 1)
    verts[interior, :2] += rng.uniform(-jitter, jitter, (interior.sum(), 2))
    faces = []
    for i, j in itertools.product(range(n - 1), range(n - 1)):
        a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j + 1, (i + 1) * n + j
        faces += [[a, b, c], [a, c, d]] if rng.random() < 0.5 else [[a, b, d], [b, c, d]]
    return verts, np.array(faces), interior


def _degenerate_mesh():
    """A tetrahedron plus a collinear (zero-area) face, faces with two coincident corners, a
    face whose three corners coincide and a nearly flat sliver (angle 1e-12 rad)."""
    verts = np.concatenate([TET_V, [[0, 0, 0], [2, 0, 0], [4, 0, 0], [3, 3, 3], [3, 3, 3]]])
    verts = np.concatenate([verts, [[5, 5, 5], [5, 5, 5], [5, 5, 5]]])
    verts = np.concatenate([verts, [[0, 0, 2], [1, 0, 2], [2, 1e-12, 2]]])
    faces = np.concatenate(
        [TET_F, [[4, 5, 6], [4, 7, 8], [0, 7, 8], [9, 10, 11], [0, 9, 10], [12, 13, 14]]]
    )
    return verts, faces


# --- independent numpy references ----------------------------------------------------------------


def _np_cot_laplacian(verts, faces):
    """PyTorch3D's `cot_laplacian` written densely: side lengths, Heron's area,
    cot a = (B^2 + C^2 - A^2) / (4 area), L[i, j] = cot alpha_ij + cot beta_ij; and A_i."""
    n = len(verts)
    lap = np.zeros((n, n))
    area_sum = np.zeros(n)
    for f in faces:
        p = verts[f]
        sides = [np.linalg.norm(p[(k + 1) % 3] - p[(k + 2) % 3]) for k in range(3)]  # opposite k
        s = 0.5 * sum(sides)
        area = np.sqrt(s * (s - sides[0]) * (s - sides[1]) * (s - sides[2]))
        for k in range(3):
            cot = (sides[(k + 1) % 3] ** 2 + sides[(k + 2) % 3] ** 2 - sides[k] ** 2) / (4 * area)
            i, j = f[(k + 1) % 3], f[(k + 2) % 3]
            lap[i, j] += cot
            lap[j, i] += cot
        area_sum[f] += area
    return lap, area_sum


def _np_cot_delta(verts, faces, method):
    lap, area = _np_cot_laplacian(verts, faces)
    row = lap.sum(1, keepdims=True)
    if method == "cot":
        return lap @ verts / row - verts
    return (lap @ verts - row * verts) * 0.25 / area[:, None]


def _edge_opposites(faces):
    """{sorted edge: [third vertex of each face on it, in face order]}."""
    table = {}
    for f in faces:
        for k in range(3):
            i, j = sorted((int(f[k]), int(f[(k + 1) % 3])))
            table.setdefault((i, j), []).append(int(f[(k + 2) % 3]))
    return table


def _np_normal_consistency(verts, faces):
    """PyTorch3D's `mesh_normal_consistency` for one mesh, loop by loop."""
    terms = []
    for (i, j), opp in _edge_opposites(faces).items():
        e = verts[j] - verts[i]
        for k, m in itertools.combinations(opp, 2):
            n0 = np.cross(e, verts[k] - verts[i])
            n1 = -np.cross(e, verts[m] - verts[i])
            terms.append(1 - n0 @ n1 / (np.linalg.norm(n0) * np.linalg.norm(n1)))
    return np.mean(terms)


def _np_softras_flatten(verts, faces):
    """SoftRas's `FlattenLoss` (without its eps), averaged: the components of the two opposite
    vertices orthogonal to the shared edge give the dihedral angle theta; (cos theta + 1)^2."""
    terms = []
    for (i, j), opp in _edge_opposites(faces).items():
        if len(opp) != 2:
            continue
        a = verts[j] - verts[i]
        perp = [verts[o] - verts[i] - a * ((verts[o] - verts[i]) @ a) / (a @ a) for o in opp]
        cos = perp[0] @ perp[1] / (np.linalg.norm(perp[0]) * np.linalg.norm(perp[1]))
        terms.append((cos + 1) ** 2)
    return np.mean(terms)


def _np_regularisers(verts, faces):
    """The seven values of `_regularisers` below, from the numpy references."""
    edges = losses.mesh_edges(faces)
    lengths = np.linalg.norm(verts[edges[:, 1]] - verts[edges[:, 0]], axis=1)
    neighbours = [set() for _ in verts]
    for i, j in edges:
        neighbours[i].add(j)
        neighbours[j].add(i)
    umbrella = np.array(
        [v - verts[list(n)].mean(0) for v, n in zip(verts, neighbours, strict=True)]
    )
    return np.array([
        np.mean(np.linalg.norm(_np_cot_delta(verts, faces, "cot"), axis=1)),
        np.mean(np.linalg.norm(_np_cot_delta(verts, faces, "cotcurv"), axis=1)),
        np.mean(lengths**2),
        np.mean((lengths - 0.3) ** 2),
        _np_normal_consistency(verts, faces),
        _np_softras_flatten(verts, faces),
        np.mean(np.sum(umbrella**2, axis=1)),
    ])  # fmt: skip


def _compiled_once(f):
    """`f` for `check_grad` with a single compilation: its values and its gradient both come
    from one jitted `jax.value_and_grad(f)`."""
    value_and_grad = jax.jit(jax.value_and_grad(f))

    @jax.custom_vjp
    def fun(x):
        return value_and_grad(x)[0]

    def fwd(x):
        return value_and_grad(x)

    def bwd(grad, g):
        return (g * grad,)

    fun.defvjp(fwd, bwd)
    return fun


# --- image losses -------------------------------------------------------------------------------


def test_mse_l1_without_mask_are_plain_means():
    rng = np.random.default_rng(0)
    pred, target = rng.random((2, 5, 6, 3))
    np.testing.assert_allclose(mse(pred, target), np.mean((pred - target) ** 2), rtol=1e-6)
    np.testing.assert_allclose(l1(pred, target), np.mean(np.abs(pred - target)), rtol=1e-6)
    # A broadcast target: the mean is still over pred's elements.
    np.testing.assert_allclose(mse(pred, 0.5), np.mean((pred - 0.5) ** 2), rtol=1e-6)


def test_mse_l1_with_masks():
    rng = np.random.default_rng(1)
    pred, target = rng.random((2, 5, 6, 3))
    mask = rng.random((5, 6)) < 0.4
    sel = (pred - target)[mask]  # (n, 3): the masked pixels' channels
    got = mse(pred, target, mask[..., None])
    np.testing.assert_allclose(got, np.mean(sel**2), rtol=1e-6)
    np.testing.assert_allclose(l1(pred, target, mask[..., None]), np.mean(np.abs(sel)), rtol=1e-6)
    # An (H, W) mask on (H, W) maps, and on a batch of them.
    d, t = pred[..., 0], target[..., 0]
    np.testing.assert_allclose(mse(d, t, mask), np.mean((d - t)[mask] ** 2), rtol=1e-6)
    batch = np.stack([d, t])
    np.testing.assert_allclose(l1(batch, 0.0, mask), np.mean(np.abs(batch[:, mask])), rtol=1e-6)
    # Float weights: a weighted mean.
    w = rng.random((5, 6))
    np.testing.assert_allclose(mse(d, t, w), np.sum(w * (d - t) ** 2) / np.sum(w), rtol=1e-6)
    with pytest.raises(ValueError, match="mask"):
        mse(pred, target, mask)  # (5, 6) does not broadcast to (5, 6, 3)
    with pytest.raises(ValueError, match="target"):
        l1(pred, target[:, :2])


@pytest.mark.parametrize("loss", [mse, l1])
def test_empty_mask_gives_zero_with_zero_gradient(loss):
    pred = jnp.asarray(np.random.default_rng(2).random((4, 4, 3)), jnp.float32)
    empty = jnp.zeros((4, 4, 1), bool)
    value, grad = jax.jit(jax.value_and_grad(lambda p: loss(p, 0.25, empty)))(pred)
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_image_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    target = rng.random((4, 5))
    mask = rng.random((4, 5)) < 0.6
    with jax.enable_x64(True):
        for loss in (mse, l1):
            fun = _compiled_once(lambda p, loss=loss: loss(p, target, mask))
            # Stay away from |pred - target| = 0, where l1 has a kink.
            check_grad(fun, target + rng.choice([-1, 1], (4, 5)) * rng.uniform(0.1, 1, (4, 5)),
                       rng, 6)  # fmt: skip


def test_silhouette_iou_loss_hand_values():
    a = np.zeros((4, 4))
    a[:2] = 1
    b = np.zeros((4, 4))
    b[:, :2] = 1
    np.testing.assert_allclose(losses.silhouette_iou_loss(a, a), 0.0, atol=1e-6)
    np.testing.assert_allclose(losses.silhouette_iou_loss(a, 1 - a), 1.0, atol=1e-6)
    # Intersection 4, union 12.
    np.testing.assert_allclose(losses.silhouette_iou_loss(a, b), 1 - 4 / 12, atol=1e-6)


# --- cotangent Laplacian ------------------------------------------------------------------------


def test_cotangent_laplacian_topology():
    lap = losses.cotangent_laplacian(SQUARE_F, 5)  # vertex 4 is in no face
    assert lap.corners.shape == (5, 2) and lap.corners.dtype == np.int32
    flat = SQUARE_F.reshape(-1)
    for v in range(4):
        real = lap.corners[v][lap.corners[v] < 6]
        assert sorted(real.tolist()) == np.flatnonzero(flat == v).tolist()
    assert np.all(lap.corners[4] == 6)
    with pytest.raises(ValueError):
        losses.cotangent_laplacian(SQUARE_F, 3)
    with pytest.raises(ValueError):
        losses.cotangent_laplacian(SQUARE_F[:, :2], 4)


def test_cotangent_laplacian_right_triangle_by_hand():
    # Angles 90, 45, 45 degrees: cot = 0, 1, 1. Vertex 0's edges are opposite the 45-degree
    # corners (weights 1, 1); vertex 1's edge to 0 is opposite corner 2 (1), its edge to 2 is
    # opposite the right angle (0). Vertex 3 is in no face: its delta is 0 and it still counts
    # in the mean.
    verts = jnp.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [7, 7, 7]])
    lap = losses.cotangent_laplacian([[0, 1, 2]], 4)
    delta = cot_delta(verts, lap)
    np.testing.assert_allclose(delta, [[0.5, 0.5, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 0]],
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(cot_loss(verts, lap), (0.5**0.5 + 2) / 4, rtol=1e-6)
    # cotcurv: sum_j (cot a + cot b)(v_j - v_i) / (4 A_i), every A_i = 1/2.
    curv = cot_delta(verts, lap, "cotcurv")
    np.testing.assert_allclose(curv, [[0.5, 0.5, 0], [-0.5, 0, 0], [0, -0.5, 0], [0, 0, 0]],
                               atol=1e-6)  # fmt: skip


def test_cotangent_laplacian_is_zero_inside_planar_meshes():
    # A regular hexagonal fan: the centre is the mean of its ring.
    ring = [[np.cos(t), np.sin(t), 0.0] for t in np.arange(6) * np.pi / 3]
    fan_v = np.array([[0.0, 0, 0]] + ring)
    fan_f = np.array([[0, 1 + k, 1 + (k + 1) % 6] for k in range(6)])
    fan_interior = np.arange(7) == 0
    # Linear precision: any planar triangulation, irregular and with obtuse angles. Both
    # meshes in one vertex array (one compilation), the grid in another plane.
    grid_v, grid_f, grid_interior = _jittered_grid()
    verts = np.concatenate([fan_v, grid_v])
    faces = np.concatenate([fan_f, grid_f + 7])
    interior = np.concatenate([fan_interior, grid_interior])
    delta = np.asarray(cot_delta(verts, losses.cotangent_laplacian(faces, len(verts))))
    np.testing.assert_allclose(delta[interior], 0.0, atol=1e-5)
    np.testing.assert_allclose(delta[:, 2], 0.0, atol=1e-6)  # in the plane
    assert np.all(np.linalg.norm(delta[~interior], axis=1) > 1e-2)


@pytest.mark.parametrize("method", ["cot", "cotcurv"])
def test_cotangent_laplacian_matches_pytorch3d_formulas(method):
    with jax.enable_x64(True):
        verts, faces = _sphere()
        lap = losses.cotangent_laplacian(faces, len(verts))
        expect = _np_cot_delta(verts, faces, method)
        got = cot_delta(jnp.asarray(verts), lap, method)
        np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-12)


def test_cotangent_laplacian_curvature_of_the_unit_sphere():
    # "cotcurv" estimates -H n / 3: inward, about 1/3 on the unit sphere.
    unit = np.asarray(sj.ico_sphere(3).verts)
    lap3 = losses.cotangent_laplacian(np.asarray(sj.ico_sphere(3).faces), len(unit))
    delta = np.asarray(cot_delta(unit, lap3, "cotcurv"))
    norms = np.linalg.norm(delta, axis=1)
    assert np.all((norms > 0.32) & (norms < 0.39))
    np.testing.assert_allclose(np.mean(norms), 1 / 3, rtol=0.02)
    assert np.all(np.sum(delta * unit, axis=1) < -0.99 * norms)


def test_cotangent_laplacian_stop_weight_gradient_is_pytorch3d_gradient():
    # With the weights held constant the loss is mean_i |L x / rowsum - x| for a fixed matrix.
    verts, faces = _sphere(seed=6)
    lap = losses.cotangent_laplacian(faces, len(verts))
    with jax.enable_x64(True):
        mat, _ = _np_cot_laplacian(verts, faces)
        norm = jnp.asarray(mat / mat.sum(1, keepdims=True))

        def fixed(v):
            return jnp.mean(jnp.linalg.norm(jnp.matmul(norm, v, precision="highest") - v, axis=1))

        both = jax.jit(lambda v: (jax.grad(lambda u: cot_loss(u, lap, "cot", True))(v),
                                  jax.grad(fixed)(v)))  # fmt: skip
        got, expect = both(jnp.asarray(verts))
        np.testing.assert_allclose(got, expect, rtol=1e-8)


# --- edge length --------------------------------------------------------------------------------


def test_edge_length_loss_values():
    edges = losses.mesh_edges(TET_F)
    assert len(edges) == 6
    side = 8**0.5
    np.testing.assert_allclose(edge_loss(TET_V, edges), 8.0, rtol=1e-6)
    np.testing.assert_allclose(edge_loss(TET_V, edges, side), 0.0, atol=1e-6)
    np.testing.assert_allclose(edge_loss(TET_V, edges, 1.0), (side - 1) ** 2,
                               rtol=1e-6)  # fmt: skip
    # Square: four sides of 1 and a diagonal of sqrt(2).
    sq_edges = losses.mesh_edges(SQUARE_F)
    np.testing.assert_allclose(edge_loss(SQUARE_V, sq_edges, 1.0), (2**0.5 - 1) ** 2 / 5, rtol=1e-6)
    assert float(edge_loss(TET_V, np.zeros((0, 2), np.int32))) == 0.0


# --- normal consistency and flatten -------------------------------------------------------------


def test_dihedral_quads():
    np.testing.assert_array_equal(losses.dihedral_quads(SQUARE_F), [[0, 2, 1, 3]])
    assert losses.dihedral_quads(TET_F).shape == (6, 4)
    # Three faces on the edge (0, 1): three pairs; repeated-index faces are skipped.
    fin = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4], [5, 5, 6]])
    quads = losses.dihedral_quads(fin)
    np.testing.assert_array_equal(quads, [[0, 1, 2, 3], [0, 1, 2, 4], [0, 1, 3, 4]])
    assert losses.dihedral_quads(np.zeros((0, 3), int)).shape == (0, 4)


def test_normal_consistency_hand_values():
    quads = losses.dihedral_quads(SQUARE_F)
    np.testing.assert_allclose(normal_loss(SQUARE_V, quads), 0.0, atol=1e-7)
    # Winding does not matter: both faces flipped, or one.
    flipped = losses.dihedral_quads(SQUARE_F[:, ::-1])
    np.testing.assert_allclose(normal_loss(SQUARE_V, flipped), 0.0, atol=1e-7)
    mixed = np.array([[0, 1, 2], [0, 3, 2]])
    np.testing.assert_allclose(normal_loss(SQUARE_V, losses.dihedral_quads(mixed)), 0.0, atol=1e-7)
    # Fold vertex 3 up to a right angle about the diagonal: 1 - cos(90) = 1.
    mid = np.array([0.5, 0.5, 0.0])
    fold = SQUARE_V.copy()
    fold[3] = mid + np.array([0, 0, np.linalg.norm(SQUARE_V[3] - mid)])
    np.testing.assert_allclose(normal_loss(fold, quads), 1.0, rtol=1e-6)
    # Folded onto itself: 2.
    fold[3] = SQUARE_V[1]
    np.testing.assert_allclose(normal_loss(fold, quads), 2.0, rtol=1e-6)
    # A regular tetrahedron: every dihedral angle is arccos(1/3), normals at arccos(-1/3).
    np.testing.assert_allclose(normal_loss(TET_V, losses.dihedral_quads(TET_F)), 4 / 3, rtol=1e-6)
    assert float(normal_loss(TET_V, np.zeros((0, 4), np.int32))) == 0.0


def test_normal_consistency_matches_references():
    verts, faces = _sphere()
    quads = losses.dihedral_quads(faces)
    got = float(normal_loss(verts, quads))
    np.testing.assert_allclose(got, _np_normal_consistency(verts, faces), rtol=1e-5)
    # Consistently wound faces: the mean of 1 - n_a . n_b over face_pairs.
    tri = verts[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    pairs = losses.face_pairs(faces)
    cos = np.sum(normals[pairs[:, 0]] * normals[pairs[:, 1]], axis=1)
    np.testing.assert_allclose(got, np.mean(1 - cos), rtol=1e-5)
    # A non-manifold edge counts every pair, as in PyTorch3D.
    fin_v = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0.2], [0.5, -1, 0.1], [0.4, 0.1, 1.0]])
    fin_f = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    np.testing.assert_allclose(
        normal_loss(fin_v, losses.dihedral_quads(fin_f)),
        _np_normal_consistency(fin_v, fin_f),
        rtol=1e-5,
    )


def test_flatten_loss_matches_softras_and_hand_values():
    pairs = losses.face_pairs(SQUARE_F)
    np.testing.assert_allclose(flatten(SQUARE_V, SQUARE_F, pairs), 0.0, atol=1e-7)
    mid = np.array([0.5, 0.5, 0.0])
    fold = SQUARE_V.copy()
    fold[3] = mid + np.array([0, 0, np.linalg.norm(SQUARE_V[3] - mid)])
    np.testing.assert_allclose(flatten(fold, SQUARE_F, pairs), 1.0, rtol=1e-6)
    verts, faces = _sphere()
    np.testing.assert_allclose(
        flatten(verts, faces, losses.face_pairs(faces)),
        _np_softras_flatten(verts, faces),
        rtol=1e-5,
    )


# --- all mesh regularisers ---------------------------------------------------------------------


def _regularisers(faces, num_verts):
    """Every mesh regulariser of one mesh as a function `(V, 3) -> (7,)`, topology built once."""
    lap = losses.cotangent_laplacian(faces, num_verts)
    ulap = losses.uniform_laplacian(faces, num_verts)
    edges, quads = losses.mesh_edges(faces), losses.dihedral_quads(faces)
    pairs = losses.face_pairs(faces)

    def all_losses(v):
        return jnp.stack([
            losses.cotangent_laplacian_loss(v, lap),
            losses.cotangent_laplacian_loss(v, lap, "cotcurv"),
            losses.edge_length_loss(v, edges),
            losses.edge_length_loss(v, edges, 0.3),
            losses.normal_consistency_loss(v, quads),
            losses.flatten_loss(v, faces, pairs),
            losses.laplacian_loss(v, ulap),
        ])  # fmt: skip

    return all_losses


def test_regularisers_jit_vmap_and_invariances():
    verts, faces = _sphere()
    all_losses = _regularisers(faces, len(verts))
    batch = jnp.asarray(np.stack([verts, 2.0 * verts, verts + [3.0, -2.0, 5.0]]), jnp.float32)
    got = np.asarray(jax.jit(jax.vmap(all_losses))(batch))
    expect = np.stack([_np_regularisers(np.asarray(v, np.float64), faces) for v in batch])
    np.testing.assert_allclose(got, expect, rtol=2e-5)
    base, scaled, moved = got
    np.testing.assert_allclose(moved, base, rtol=1e-4)  # translation invariant
    # Scaling by 2: cot x2, cotcurv x1/2, squared lengths and uniform Laplacian x4, angles x1.
    keep = [0, 1, 2, 4, 5, 6]
    np.testing.assert_allclose(scaled[keep], base[keep] * [2, 0.5, 4, 1, 1, 4], rtol=1e-5)


def test_regularisers_gradients_match_finite_differences():
    """All regularisers in one sum (one compilation): a wrong gradient in any term shows."""
    verts, faces = _sphere(seed=4)
    all_losses = _regularisers(faces, len(verts))
    with jax.enable_x64(True):
        fun = _compiled_once(lambda v: jnp.sum(all_losses(v)))
        check_grad(fun, verts, np.random.default_rng(5), 10)


def test_regularisers_are_finite_on_degenerate_meshes():
    """Zero-area, sliver and collapsed faces, and every vertex at one point: finite values
    and gradients. A non-finite value or gradient of any term makes the sum's non-finite. (With
    `stop_weight_gradient=True` the gradient only drops the terms through the weights.)"""
    verts, faces = _degenerate_mesh()
    all_losses = _regularisers(faces, len(verts))
    value_and_grad = jax.jit(jax.value_and_grad(lambda v: jnp.sum(all_losses(v))))
    for v in (verts, np.zeros_like(verts)):
        value, grad = value_and_grad(jnp.asarray(v, jnp.float32))
        assert np.isfinite(value) and np.all(np.isfinite(grad))


# --- argument checks ----------------------------------------------------------------------------

# Structures of the 12-vertex icosahedron, and wrong vertex arrays for them.
ICO = sj.ico_sphere(0)
ICO_V, ICO_F = np.asarray(ICO.verts, np.float32), np.asarray(ICO.faces)
ICO_ULAP = losses.uniform_laplacian(ICO_F, 12)
ICO_CLAP = losses.cotangent_laplacian(ICO_F, 12)
ICO_EDGES, ICO_QUADS = losses.mesh_edges(ICO_F), losses.dihedral_quads(ICO_F)
ICO_PAIRS = losses.face_pairs(ICO_F)
V10, V42 = ICO_V[:10], np.asarray(sj.ico_sphere(1).verts, np.float32)
V2D, VINT, VBATCH = ICO_V[:, :2], ICO_V.astype(np.int32), np.stack([ICO_V, ICO_V])
F4 = np.concatenate([ICO_F, ICO_F[:, :1]], 1)  # quads, not triangles
F_OUT = ICO_F.copy()
F_OUT[0, 0] = 99
F_NEG = ICO_F.copy()
F_NEG[0, 0] = -1
IMG = np.zeros((8, 8), np.float32)
RGBA = np.zeros((8, 8, 4), np.float32)

BUILT_FOR_12 = r"`verts` must have shape \(12, 3\), got \({}, 3\) \(`lap` was built for 12 vertices"
NEEDS_XYZ = r"`verts` must have shape \(N, 3\), got \(12, 2\)"
FLOAT_VERTS = r"`verts` must have a floating dtype, got int32"
FACES_RANGE = (
    r"`faces` indices must lie in \[0, 11\] \(`num_verts` is 12\), got values in \[0, 99\]"
)
FACES_SHAPE = r"`faces` must have shape \(N, 3\), got \(20, 4\)"
FACES_NEG = r"`faces` indices must be non-negative, got a minimum of -1"
FACES_INT = r"`faces` must have an integer dtype, got float64"

BAD_CALLS = {
    # Image losses: `target` and `mask` stretch to `pred.shape`, never past it.
    "mse-target-channels": (
        lambda: losses.mse(RGBA, RGBA[..., :3]),
        r"`target` must have the shape of `pred` \(8, 8, 4\) or broadcast to it, got \(8, 8, 3\)",
    ),
    "mse-target-bigger": (
        lambda: losses.mse(RGBA, np.stack([RGBA, RGBA])),
        r"`target` must have the shape of `pred` \(8, 8, 4\) or broadcast to it, got "
        r"\(2, 8, 8, 4\)",
    ),
    "mse-mask-size": (
        lambda: losses.mse(IMG, IMG, np.ones((4, 4))),
        r"`mask` must have the shape of `pred` \(8, 8\) or broadcast to it, got \(4, 4\)",
    ),
    "l1-mask-bigger": (
        lambda: losses.l1(IMG, IMG, np.ones((2, 8, 8))),
        r"`mask` must have the shape of `pred` \(8, 8\) or broadcast to it, got \(2, 8, 8\)",
    ),
    "mse-mask-per-pixel-on-rgba": (
        lambda: losses.mse(RGBA, RGBA, np.ones((8, 8))),
        r"`mask` .* got \(8, 8\) \(for an \(H, W, C\) image pass .*`mask\[\.\.\., None\]`",
    ),
    "l1-complex-pred": (
        lambda: losses.l1(IMG.astype(np.complex64), IMG),
        r"`pred` must be real \(bool, integer or floating\), got complex64",
    ),
    "iou-shapes": (
        lambda: losses.silhouette_iou_loss(IMG, np.zeros((4, 4))),
        r"`target` must have shape \(8, 8\), got \(4, 4\)",
    ),
    "iou-broadcast-target": (
        lambda: losses.silhouette_iou_loss(IMG, np.zeros((8, 1))),
        r"`target` must have shape \(8, 8\), got \(8, 1\)",
    ),
    "iou-1d": (
        lambda: losses.silhouette_iou_loss(IMG[0], IMG[0]),
        r"`pred` must have shape \(\.\.\., H, W\), got \(8,\)",
    ),
    # Vertex arrays that do not fit the structure built from the faces.
    "laplacian-10-verts": (lambda: losses.laplacian_loss(V10, ICO_ULAP), BUILT_FOR_12.format(10)),
    "laplacian-42-verts": (lambda: losses.laplacian_loss(V42, ICO_ULAP), BUILT_FOR_12.format(42)),
    "laplacian-xy": (
        lambda: losses.laplacian_loss(V2D, ICO_ULAP),
        r"`verts` must have shape \(12, 3\)",
    ),
    "laplacian-int": (lambda: losses.laplacian_loss(VINT, ICO_ULAP), FLOAT_VERTS),
    "laplacian-unmapped-batch": (
        lambda: losses.laplacian_loss(VBATCH, ICO_ULAP),
        r"got \(2, 12, 3\) .*`jax\.vmap`",
    ),
    "cot-10-verts": (
        lambda: losses.cotangent_laplacian_loss(V10, ICO_CLAP),
        BUILT_FOR_12.format(10),
    ),
    "cot-42-verts": (
        lambda: losses.cotangent_laplacian_loss(V42, ICO_CLAP),
        BUILT_FOR_12.format(42),
    ),
    "cot-xy": (lambda: losses.cotangent_laplacian_loss(V2D, ICO_CLAP), r"`verts` must have shape"),
    "cot-int": (lambda: losses.cotangent_laplacian_loss(VINT, ICO_CLAP), FLOAT_VERTS),
    "cot-delta-42-verts": (
        lambda: losses.cotangent_laplacian_delta(V42, ICO_CLAP),
        BUILT_FOR_12.format(42),
    ),
    "edge-10-verts": (
        lambda: losses.edge_length_loss(V10, ICO_EDGES),
        r"`edges` indices must lie in \[0, 9\] \(there are 10 vertices in `verts`\), got values in "
        r"\[0, 11\]",
    ),
    "edge-xy": (lambda: losses.edge_length_loss(V2D, ICO_EDGES), NEEDS_XYZ),
    "edge-int": (lambda: losses.edge_length_loss(VINT, ICO_EDGES), FLOAT_VERTS),
    "edge-faces-as-edges": (
        lambda: losses.edge_length_loss(ICO_V, ICO_F),
        r"`edges` must have shape \(N, 2\), got \(20, 3\)",
    ),
    "edge-float-edges": (
        lambda: losses.edge_length_loss(ICO_V, ICO_EDGES.astype(np.float32)),
        r"`edges` must have an integer dtype, got float32",
    ),
    "edge-target-length-count": (
        lambda: losses.edge_length_loss(ICO_V, ICO_EDGES, np.ones(5)),
        r"`target_length` must have shape \(30\), got \(5,\) \(or a scalar\)",
    ),
    "edge-target-length-column": (
        lambda: losses.edge_length_loss(ICO_V, ICO_EDGES, np.ones((30, 1))),
        r"`target_length` must have shape \(30\), got \(30, 1\) \(or a scalar\)",
    ),
    "normal-10-verts": (
        lambda: losses.normal_consistency_loss(V10, ICO_QUADS),
        r"`quads` indices must lie in \[0, 9\] \(there are 10 vertices in `verts`\)",
    ),
    "normal-xy": (lambda: losses.normal_consistency_loss(V2D, ICO_QUADS), NEEDS_XYZ),
    "normal-int": (lambda: losses.normal_consistency_loss(VINT, ICO_QUADS), FLOAT_VERTS),
    "normal-triples": (
        lambda: losses.normal_consistency_loss(ICO_V, ICO_QUADS[:, :3]),
        r"`quads` must have shape \(N, 4\), got \(30, 3\)",
    ),
    "flatten-10-verts": (
        lambda: losses.flatten_loss(V10, ICO_F, ICO_PAIRS),
        r"`faces` indices must lie in \[0, 9\] \(there are 10 vertices in `verts`\)",
    ),
    "flatten-xy": (lambda: losses.flatten_loss(V2D, ICO_F, ICO_PAIRS), NEEDS_XYZ),
    "flatten-int": (lambda: losses.flatten_loss(VINT, ICO_F, ICO_PAIRS), FLOAT_VERTS),
    "flatten-quads": (lambda: losses.flatten_loss(ICO_V, F4, ICO_PAIRS), FACES_SHAPE),
    "flatten-float-faces": (
        lambda: losses.flatten_loss(ICO_V, ICO_F.astype(np.float64), ICO_PAIRS),
        r"`faces` must have an integer dtype",
    ),
    "flatten-pairs-shape": (
        lambda: losses.flatten_loss(ICO_V, ICO_F, ICO_PAIRS[:, :1]),
        r"`pairs` must have shape \(N, 2\), got \(30, 1\)",
    ),
    "flatten-pairs-range": (
        lambda: losses.flatten_loss(ICO_V, ICO_F[:10], ICO_PAIRS),
        r"`pairs` indices must lie in \[0, 9\] \(there are 10 faces in `faces`\)",
    ),
    # Builders.
    "mesh-edges-quads": (lambda: losses.mesh_edges(F4), FACES_SHAPE),
    "mesh-edges-negative": (lambda: losses.mesh_edges(F_NEG), FACES_NEG),
    "mesh-edges-float": (lambda: losses.mesh_edges(ICO_F.astype(np.float64)), FACES_INT),
    "mesh-edges-flat": (
        lambda: losses.mesh_edges(ICO_F.reshape(-1)),
        r"`faces` must have shape \(N, 3\), got \(60,\)",
    ),
    "uniform-laplacian-quads": (lambda: losses.uniform_laplacian(F4, 12), FACES_SHAPE),
    "uniform-laplacian-range": (lambda: losses.uniform_laplacian(F_OUT, 12), FACES_RANGE),
    "uniform-laplacian-negative": (
        lambda: losses.uniform_laplacian(F_NEG, 12),
        r"`faces` indices must lie in \[0, 11\] \(`num_verts` is 12\), got values in \[-1, 11\]",
    ),
    "uniform-laplacian-too-few": (
        lambda: losses.uniform_laplacian(ICO_F, 10),
        r"`faces` indices must lie in \[0, 9\] \(`num_verts` is 10\), got values in \[0, 11\]",
    ),
    "cot-laplacian-quads": (lambda: losses.cotangent_laplacian(F4, 12), FACES_SHAPE),
    "cot-laplacian-range": (lambda: losses.cotangent_laplacian(F_OUT, 12), FACES_RANGE),
    "face-pairs-quads": (lambda: losses.face_pairs(F4), FACES_SHAPE),
    "face-pairs-negative": (lambda: losses.face_pairs(F_NEG), FACES_NEG),
    "face-pairs-float": (lambda: losses.face_pairs(ICO_F.astype(np.float64)), FACES_INT),
    "dihedral-quads-quads": (lambda: losses.dihedral_quads(F4), FACES_SHAPE),
    "dihedral-quads-negative": (lambda: losses.dihedral_quads(F_NEG), FACES_NEG),
    "num-verts-negative": (
        lambda: losses.cotangent_laplacian(ICO_F, -1),
        r"`num_verts` must be an integer >= 0, got -1",
    ),
}

BAD_TYPES = {
    "mse-mask-text": (lambda: losses.mse(IMG, IMG, "all"), r"`mask` must be a numeric array"),
    "laplacian-gets-cotangent": (
        lambda: losses.laplacian_loss(ICO_V, ICO_CLAP),
        r"`lap` must be a UniformLaplacian from `uniform_laplacian\(faces, num_verts\)`, got "
        r"CotangentLaplacian",
    ),
    "cot-gets-uniform": (
        lambda: losses.cotangent_laplacian_loss(ICO_V, ICO_ULAP),
        r"`lap` must be a CotangentLaplacian from `cotangent_laplacian\(faces, num_verts\)`, "
        r"got UniformLaplacian",
    ),
    "cot-delta-gets-tuple": (
        lambda: losses.cotangent_laplacian_delta(ICO_V, tuple(ICO_CLAP)),
        r"`lap` must be a CotangentLaplacian .*got tuple",
    ),
    "num-verts-fraction": (
        lambda: losses.uniform_laplacian(ICO_F, 12.5),
        r"`num_verts` must be an integer, got float 12.5",
    ),
}


@pytest.mark.parametrize("call, message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_shapes_and_dtypes_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("call, message", BAD_TYPES.values(), ids=BAD_TYPES.keys())
def test_wrong_kinds_of_object_name_the_argument(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_shape_checks_hold_under_jit_and_vmap():
    """Shapes are static, so the vertex count is checked while tracing; under `vmap` against
    each example's shape, so a batch of meshes is fine and a batch of wrong meshes is not."""
    checks = {
        "laplacian": lambda v: losses.laplacian_loss(v, ICO_ULAP),
        "cotangent": lambda v: losses.cotangent_laplacian_loss(v, ICO_CLAP),
        "edge": lambda v: losses.edge_length_loss(v, ICO_EDGES),
        "normal": lambda v: losses.normal_consistency_loss(v, ICO_QUADS),
        "flatten": lambda v: losses.flatten_loss(v, ICO_F, ICO_PAIRS),
    }
    batch = jnp.stack([ICO_V, 2 * ICO_V, ICO_V + 1])
    for name, loss in checks.items():
        got = jax.jit(jax.vmap(loss))(batch)
        np.testing.assert_allclose(got[0], loss(ICO_V), rtol=1e-5, err_msg=name)
        with pytest.raises(ValueError, match="`verts`|indices must lie"):
            jax.jit(jax.vmap(loss))(jnp.stack([V10, V10]))
    for fun in (jax.jit, jax.vmap):
        with pytest.raises(ValueError, match=BUILT_FOR_12.format(42)):
            fun(checks["laplacian"])(V42[None] if fun is jax.vmap else V42)
    # Structures passed to `jit` as arguments are traced: their shapes are still checked.
    with pytest.raises(ValueError, match=BUILT_FOR_12.format(42)):
        cot_loss(V42, ICO_CLAP)
    with pytest.raises(ValueError, match=r"`target` must have the shape of `pred`"):
        mse(RGBA, RGBA[..., :3])


def test_accepted_target_and_mask_shapes():
    """`target` and `mask` may broadcast to `pred.shape` under NumPy rules (trailing axes
    aligned, size-1 axes stretched), as documented."""
    rng = np.random.default_rng(7)
    pred, target = rng.random((2, 3, 8, 8, 4))
    mask = rng.random((3, 8, 8, 1)) < 0.5
    for t in (target, target[0], target[..., :1], 0.5):
        for m in (None, mask, mask[0], mask[:1], np.ones((4,)), np.float32(1.0)):
            w = np.broadcast_to(np.ones(()) if m is None else m, pred.shape)
            err = (pred - np.broadcast_to(t, pred.shape)) ** 2
            np.testing.assert_allclose(losses.mse(pred, t, m), np.sum(w * err) / np.sum(w),
                                       rtol=1e-5)  # fmt: skip


def test_regularisers_without_pairs_or_edges_give_zero():
    tri_v, tri_f = SQUARE_V[:3], SQUARE_F[:1]  # one triangle: no interior edge
    assert losses.face_pairs(tri_f).shape == (0, 2)
    assert float(losses.flatten_loss(tri_v, tri_f, losses.face_pairs(tri_f))) == 0.0
    assert float(losses.normal_consistency_loss(tri_v, losses.dihedral_quads(tri_f))) == 0.0
    # Vertices in no face are allowed: the structures index a prefix of `verts`.
    lap = losses.uniform_laplacian(tri_f, 4)
    assert np.isfinite(float(losses.laplacian_loss(SQUARE_V, lap)))
