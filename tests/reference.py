"""Brute-force reference renderer in pure numpy.

Casts one ray per pixel centre and intersects it with every triangle
(Moller-Trumbore, double-sided).  It is deliberately simple and slow: it is
the ground truth that a differentiable renderer must reproduce in its hard
(sharp, non-blurred) limit.

Conventions
-----------
Camera (look_at): f = normalize(at - eye), r = normalize(cross(f, up)),
u = cross(r, f).  A world point p has camera coordinates
((p-eye).r, (p-eye).u, (p-eye).f); the last one is the view depth z.

Image (H, W): row 0 is the top (towards u), column 0 is the camera's left.
Pixel (i, j) has its centre at NDC x = (2j+1)/W - 1, y = 1 - (2i+1)/H, and
its ray has camera-space direction (x * (W/H) * t, y * t, 1) with
t = tan(fov/2), fov being the vertical field of view in degrees.
"""

from dataclasses import dataclass

import numpy as np

# Rays x triangles evaluated at once; each (rays, triangles, 3) float64
# temporary is 24 bytes per element, so this keeps the peak well below 1 GB.
_CHUNK_ELEMENTS = 1_000_000


def _normalize(v):
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def camera_basis(eye, at, up):
    """Return the orthonormal camera axes (r, u, f), each (3,)."""
    eye, at, up = (np.asarray(a, dtype=np.float64) for a in (eye, at, up))
    f = _normalize(at - eye)
    side = np.cross(f, up)
    if np.linalg.norm(side) < 1e-12:
        raise ValueError("up is parallel to the viewing direction")
    r = _normalize(side)
    u = np.cross(r, f)
    return r, u, f


def camera_rays(eye, at, up, fov, image_size):
    """World-space ray directions through the pixel centres.

    Returns (H, W, 3) directions, not normalised: their component along f is
    exactly 1, so the ray parameter of a hit equals its view depth.
    """
    H, W = image_size
    r, u, f = camera_basis(eye, at, up)
    t = np.tan(np.deg2rad(fov) / 2.0)
    x_ndc = (2.0 * np.arange(W) + 1.0) / W - 1.0
    y_ndc = 1.0 - (2.0 * np.arange(H) + 1.0) / H
    xc = x_ndc[None, :, None] * (W / H) * t
    yc = y_ndc[:, None, None] * t
    return xc * r + yc * u + f


@dataclass(frozen=True)
class Render:
    """Per-pixel result of `raycast`.

    mask (H, W) bool, face_id (H, W) int (-1: no hit), depth (H, W) float
    (inf: no hit), rgb (H, W, 3), normal (H, W, 3) (zeros: no hit), bary
    (H, W, 3) weights of the hit face's corners, position (H, W, 3) hit points.
    """

    mask: np.ndarray
    face_id: np.ndarray
    depth: np.ndarray
    rgb: np.ndarray
    normal: np.ndarray
    bary: np.ndarray = None
    position: np.ndarray = None

    def __getitem__(self, key):
        return getattr(self, key)


def opencv_rays(K, R, t, image_size, pixel_center=0.0):
    """Ray origins (3,) and directions (H, W, 3) of an OpenCV camera: pixel (i, j)
    sits at (u, v) = (j + pixel_center, i + pixel_center), camera coordinates
    ((u - cx) / fx, (v - cy) / fy, 1) with y down, world = R^T (cam - t).
    Directions have unit depth along the optical axis, so t_hit = view depth."""
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    H, W = image_size
    u = np.arange(W) + pixel_center
    v = np.arange(H) + pixel_center
    x = np.broadcast_to(((u - K[0, 2]) / K[0, 0])[None, :], (H, W))
    y = np.broadcast_to(((v - K[1, 2]) / K[1, 1])[:, None], (H, W))
    cam = np.stack([x, y, np.ones((H, W))], axis=-1)
    return -R.T @ t, cam @ R


def orthographic_rays(eye, at, up, scale, image_size):
    """Ray origins and directions (H, W, 3) of an orthographic camera whose view
    is 2 / scale world units tall: parallel rays along f, one per pixel centre."""
    H, W = image_size
    r, u, f = camera_basis(eye, at, up)
    x_ndc = (2.0 * np.arange(W) + 1.0) / W - 1.0
    y_ndc = 1.0 - (2.0 * np.arange(H) + 1.0) / H
    xc = x_ndc[None, :, None] * (W / H) / scale
    yc = y_ndc[:, None, None] * np.ones((1, W, 1)) / scale
    origins = np.asarray(eye, dtype=np.float64) + xc * r + yc * u
    return origins, np.broadcast_to(f, (H, W, 3))


def _intersect(origins, dirs, a, e1, e2, near, far):
    """Nearest double-sided Moller-Trumbore hit of each ray.

    origins (N, 3), dirs (N, 3), a/e1/e2 (F, 3) (first vertex and the two edges).
    Returns face index (N,) (-1: no hit), ray parameter t (N,) (inf: no hit),
    barycentrics (u, v) (N,) each, weights of the second and third vertex.
    """
    d = dirs[:, None, :]
    pvec = np.cross(d, e2[None])  # (N, F, 3)
    det = np.einsum("fk,nfk->nf", e1, pvec)
    tvec = origins[:, None, :] - a[None]
    qvec = np.cross(tvec, e1[None])

    scale = (
        np.linalg.norm(dirs, axis=1)[:, None]
        * (np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1))[None, :]
    )
    ok = np.abs(det) > 1e-12 * scale  # ray (nearly) parallel to the plane
    safe = np.where(ok, det, 1.0)
    u = np.einsum("nfk,nfk->nf", tvec, pvec) / safe
    v = np.einsum("nk,nfk->nf", dirs, qvec) / safe
    t = np.einsum("fk,nfk->nf", e2, qvec) / safe
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > near) & (t < far)

    t = np.where(hit, t, np.inf)
    fid = np.argmin(t, axis=1)
    rows = np.arange(len(dirs))
    t_best = t[rows, fid]
    found = np.isfinite(t_best)
    return (np.where(found, fid, -1), t_best, u[rows, fid], v[rows, fid])


def raycast(
    verts, faces, colors, eye, at, up, fov, near, image_size, background=(0.0, 0.0, 0.0), far=np.inf
):
    """Render a triangle mesh by brute-force ray casting.

    verts (V, 3), faces (F, 3) int, colors (V, 3) per-vertex colours,
    fov vertical field of view in degrees, image_size (H, W).
    A hit counts when near < view depth < far.  Returns a `Render`.
    """
    dirs = camera_rays(eye, at, up, fov, image_size)
    return raycast_rays(verts, faces, colors, eye, dirs, near, background, far)


def raycast_rays(verts, faces, colors, origins, dirs, near, background=(0.0, 0.0, 0.0), far=np.inf):
    """`raycast` for given rays: origins (3,) or (H, W, 3), dirs (H, W, 3) with
    unit component along the view axis (so that the hit parameter is the view
    depth).  Returns a `Render` of shape (H, W)."""
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.float64)
    H, W = dirs.shape[:2]
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    origins = np.broadcast_to(np.asarray(origins, dtype=np.float64), (H, W, 3)).reshape(-1, 3)

    a, b, c = (verts[faces[:, k]] for k in range(3))
    e1, e2 = b - a, c - a
    n_rays = len(dirs)
    face_id = np.full(n_rays, -1, dtype=np.int64)
    depth = np.full(n_rays, np.inf)
    bu = np.zeros(n_rays)
    bv = np.zeros(n_rays)
    if len(faces):
        step = max(1, _CHUNK_ELEMENTS // len(faces))
        for s in range(0, n_rays, step):
            sl = slice(s, s + step)
            face_id[sl], depth[sl], bu[sl], bv[sl] = _intersect(
                origins[sl], dirs[sl], a, e1, e2, near, far
            )

    mask = face_id >= 0
    fid = np.where(mask, face_id, 0)
    tri = faces[fid] if len(faces) else np.zeros((n_rays, 3), np.int64)
    rgb = np.empty((n_rays, 3))
    if len(faces):
        weights = np.stack([1.0 - bu - bv, bu, bv], axis=1)
        rgb[:] = np.einsum("nk,nkc->nc", weights, colors[tri])
    rgb[~mask] = np.asarray(background, dtype=np.float64)
    normal = np.zeros((n_rays, 3))
    if mask.any():
        normal[mask] = _normalize(np.cross(e1, e2))[face_id[mask]]

    bary = np.stack([1.0 - bu - bv, bu, bv], axis=1) * mask[:, None]
    position = np.where(mask[:, None], origins + np.where(mask, depth, 0.0)[:, None] * dirs, 0.0)
    return Render(
        mask=mask.reshape(H, W),
        face_id=face_id.reshape(H, W),
        depth=depth.reshape(H, W),
        rgb=rgb.reshape(H, W, 3),
        normal=normal.reshape(H, W, 3),
        bary=bary.reshape(H, W, 3),
        position=position.reshape(H, W, 3),
    )


def raycast_layers(verts, faces, origins, dirs, near, layers):
    """The first `layers` hits along each ray, nearest first (ties by face index), of a
    triangle mesh: face ids `(H, W, K)` (-1: none), depths `(H, W, K)` (inf: none),
    barycentrics `(H, W, K, 3)` and the smallest barycentric of each hit `(H, W, K)` (how
    close the ray passes to the face's edges). Rays as in `raycast_rays`."""
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    H, W = dirs.shape[:2]
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    origins = np.broadcast_to(np.asarray(origins, dtype=np.float64), (H, W, 3)).reshape(-1, 3)
    a, b, c = (verts[faces[:, k]] for k in range(3))
    e1, e2 = b - a, c - a
    d = dirs[:, None, :]
    pvec = np.cross(d, e2[None])
    det = np.einsum("fk,nfk->nf", e1, pvec)
    tvec = origins[:, None, :] - a[None]
    qvec = np.cross(tvec, e1[None])
    ok = np.abs(det) > 1e-12
    safe = np.where(ok, det, 1.0)
    u = np.einsum("nfk,nfk->nf", tvec, pvec) / safe
    v = np.einsum("nk,nfk->nf", dirs, qvec) / safe
    t = np.einsum("fk,nfk->nf", e2, qvec) / safe
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > near)
    t = np.where(hit, t, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(faces)), t.shape), t), axis=-1)[:, :layers]
    depth = np.take_along_axis(t, order, -1)
    found = np.isfinite(depth)
    bary = np.stack([1 - u - v, u, v], -1)
    bary = np.take_along_axis(bary, order[..., None], 1) * found[..., None]
    face_id = np.where(found, order, -1)
    shape = (H, W, layers)
    return (face_id.reshape(shape), depth.reshape(shape), bary.reshape(*shape, 3),
            np.where(found, bary.min(-1), 1.0).reshape(shape))  # fmt: skip


def lambert(rgb_albedo, normal, mask, ambient, directional, direction, background=(0.0, 0.0, 0.0)):
    """One-sided Lambert shading.

    rgb_albedo (H, W, 3), normal (H, W, 3) unit face normals (not flipped
    towards the camera), mask (H, W) bool.  ambient / directional are scalars
    or RGB (3,); direction (3,) is the way the light travels (light -> scene).
    Returns (H, W, 3), `background` where mask is False.
    """
    to_light = -_normalize(np.asarray(direction, dtype=np.float64))
    cos = np.maximum(0.0, np.asarray(normal) @ to_light)[..., None]
    shade = np.asarray(rgb_albedo) * (np.asarray(ambient) + np.asarray(directional) * cos)
    return np.where(np.asarray(mask)[..., None], shade, np.asarray(background, dtype=np.float64))


def vertex_normals(verts, faces):
    """Unit vertex normals: sum of the adjacent faces' cross(b - a, c - a)
    (area weighted), normalised."""
    verts = np.asarray(verts, dtype=np.float64)
    a, b, c = (verts[faces[:, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    out = np.zeros_like(verts)
    for k in range(3):
        np.add.at(out, faces[:, k], n)
    return _normalize(out)


def phong(albedo, normal, position, eye, ambient, directional=(), point=(), ka=1.0, kd=1.0,
          ks=0.0, shininess=64.0):  # fmt: skip
    """The Phong model of PyTorch3D without attenuation, channel-last.

    albedo, normal, position (..., 3); eye (3,); ambient (3,) RGB ambient light;
    directional: (direction, rgb) pairs, direction the way the light travels;
    point: (position, rgb) pairs; ka, kd, ks scalars or (3,).
    """
    n = _normalize(np.asarray(normal, dtype=np.float64))
    view = _normalize(np.asarray(eye, dtype=np.float64) - position)
    to_lights = [(np.broadcast_to(-_normalize(np.asarray(d, np.float64)), n.shape), rgb)
                 for d, rgb in directional]  # fmt: skip
    to_lights += [(_normalize(np.asarray(p, np.float64) - position), rgb) for p, rgb in point]
    diffuse = np.zeros_like(n)
    specular = np.zeros_like(n)
    for to_light, rgb in to_lights:
        n_l = np.sum(n * to_light, -1, keepdims=True)
        diffuse += np.asarray(rgb) * np.maximum(n_l, 0.0)
        r = 2 * n_l * n - to_light
        r_v = np.maximum(np.sum(r * view, -1, keepdims=True), 0.0)
        specular += np.asarray(rgb) * (n_l > 0) * r_v**shininess
    ka, kd, ks = (np.asarray(k, np.float64) for k in (ka, kd, ks))
    return albedo * (ka * np.asarray(ambient) + kd * diffuse) + ks * specular


def sample_texture(texture, uv, wrap="clamp"):
    """Bilinear texture lookup, channel-last: texture (Ht, Wt, C) with row 0 at
    the top, uv (..., 2) with v = 0 at the bottom; texel (i, j) is centred at
    ((j + 0.5) / Wt, 1 - (i + 0.5) / Ht).  Returns (..., C)."""
    texture = np.asarray(texture, dtype=np.float64)
    Ht, Wt = texture.shape[:2]
    col = uv[..., 0] * Wt - 0.5
    row = (1.0 - uv[..., 1]) * Ht - 0.5
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    tc, tr = (col - c0)[..., None], (row - r0)[..., None]

    def at(r, c):
        if wrap == "wrap":
            r, c = r % Ht, c % Wt
        else:
            r, c = np.clip(r, 0, Ht - 1), np.clip(c, 0, Wt - 1)
        return texture[r, c]

    return (at(r0, c0) * (1 - tc) * (1 - tr) + at(r0, c0 + 1) * tc * (1 - tr)
            + at(r0 + 1, c0) * (1 - tc) * tr + at(r0 + 1, c0 + 1) * tc * tr)  # fmt: skip


def label_boundary(labels):
    """(H, W) bool: the 3x3 neighbourhood of a pixel (clipped at the border)
    holds more than one distinct value of the int array `labels` (H, W)."""
    labels = np.asarray(labels)
    H, W = labels.shape
    # Edge padding only repeats values already inside the clipped window.
    p = np.pad(labels, 1, mode="edge")
    windows = np.stack([p[di : di + H, dj : dj + W] for di in range(3) for dj in range(3)])
    return windows.min(axis=0) != windows.max(axis=0)


def boundary_mask(mask):
    """(H, W) bool: the 3x3 neighbourhood (clipped at the border) of a pixel
    is not all equal in the bool array `mask` (H, W)."""
    return label_boundary(np.asarray(mask).astype(np.int8))


def assert_matches(name, rgba, out, obj=None, expected=None):
    """Hard-limit agreement of a softjax `rgba` (H, W, 4) with a ray-cast `out`:
    silhouette IoU >= 0.99 with mismatches only on boundary pixels, interior mean
    abs colour error <= 0.02 against `expected` (H, W, 3) (default `out.rgb`),
    interior meaning away from silhouette edges and from the borders between the
    objects labelled by `obj` (F,) ints; background (alpha and rgb ~ 0) where
    nothing is hit."""
    rgba = np.asarray(rgba)
    mask = rgba[..., 3] > 0.5
    iou = (mask & out.mask).sum() / (mask | out.mask).sum()
    assert iou >= 0.99, f"{name}: silhouette IoU {iou:.4f}"
    mismatch = mask != out.mask
    assert not np.any(mismatch & ~boundary_mask(out.mask)), f"{name}: non-boundary mismatch"
    if obj is None:
        obj = np.zeros(out.face_id.max() + 1, int)
    labels = np.where(out.mask, np.asarray(obj)[np.maximum(out.face_id, 0)], -1)
    interior = out.mask & ~label_boundary(labels)
    assert interior.sum() > 0.3 * out.mask.sum()
    expected = out.rgb if expected is None else expected
    err = np.abs(rgba[..., :3] - expected)[interior].mean()
    assert err <= 0.02, f"{name}: interior colour mean abs error {err:.4f}"
    empty = ~out.mask & ~boundary_mask(out.mask)
    assert np.all(rgba[empty] < 1e-3)


def rotation_matrix(axis, angle_rad):
    """(3, 3) rotation by `angle_rad` about `axis` (3,) (Rodrigues)."""
    k = _normalize(np.asarray(axis, dtype=np.float64))
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * K + (1 - np.cos(angle_rad)) * K @ K


def box(size=(1.0, 1.0, 1.0), center=(0.0, 0.0, 0.0), rotation=None):
    """Axis-aligned box, optionally rotated (3, 3) about its centre.

    Returns verts (8, 3) float64 and faces (12, 3) int with outward
    counter-clockwise winding.
    """
    # Vertex k has sign bits x = k & 4, y = k & 2, z = k & 1.
    signs = (
        np.array([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=np.float64) * 2.0
        - 1.0
    )
    verts = signs * (0.5 * np.asarray(size, dtype=np.float64))
    if rotation is not None:
        verts = verts @ np.asarray(rotation, dtype=np.float64).T
    verts = verts + np.asarray(center, dtype=np.float64)
    # One quad per side (-x, +x, -y, +y, -z, +z), CCW seen from outside.
    quads = np.array(
        [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    )
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    return verts, faces


def torus(R=1.0, r=0.35, n_major=24, n_minor=12):
    """Torus around the y axis (ring in the xz-plane), centred at the origin.

    Returns verts (n_major * n_minor, 3) float64 and
    faces (2 * n_major * n_minor, 3) int with outward CCW winding.
    """
    phi = 2 * np.pi * np.arange(n_major) / n_major
    theta = 2 * np.pi * np.arange(n_minor) / n_minor
    P, T = np.meshgrid(phi, theta, indexing="ij")
    ring = R + r * np.cos(T)
    verts = np.stack([ring * np.cos(P), r * np.sin(T), ring * np.sin(P)], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    v00 = i * n_minor + j
    v10 = (i + 1) % n_major * n_minor + j
    v01 = i * n_minor + (j + 1) % n_minor
    v11 = (i + 1) % n_major * n_minor + (j + 1) % n_minor
    # d/dphi x d/dtheta points into the tube, so walk theta before phi.
    faces = np.concatenate(
        [np.stack([v00, v01, v11], -1).reshape(-1, 3), np.stack([v00, v11, v10], -1).reshape(-1, 3)]
    )
    return verts, faces


def l_shape(size=1.0, depth=0.5, center=(0.0, 0.0, 0.0)):
    """Closed L-shaped prism (non-convex): an L of side `size` in the
    xy-plane extruded by `depth` along z, centred on its bounding box.

    Returns verts (12, 3) float64 and faces (20, 3) int, outward CCW winding.
    """
    outline = (
        np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], dtype=np.float64) * (size / 2.0)
        - size / 2.0
    )
    n = len(outline)
    back = np.column_stack([outline, np.full(n, -depth / 2.0)])
    front = np.column_stack([outline, np.full(n, depth / 2.0)])
    verts = np.concatenate([back, front]) + np.asarray(center, np.float64)
    # Fan from the reflex corner (3) so every cap triangle lies inside the L.
    cap = np.array([[3, 4, 5], [3, 5, 0], [3, 0, 1], [3, 1, 2]])
    k = np.arange(n)
    k1 = (k + 1) % n
    sides = np.concatenate([np.stack([k, k1, k1 + n], -1), np.stack([k, k1 + n, k + n], -1)])
    faces = np.concatenate([cap + n, cap[:, ::-1], sides])
    return verts, faces


if __name__ == "__main__":
    v, f = box(size=(1.0, 1.0, 1.0))
    out = raycast(
        v,
        f,
        np.ones_like(v),
        eye=(0, 0, 3),
        at=(0, 0, 0),
        up=(0, 1, 0),
        fov=40.0,
        near=0.1,
        image_size=(32, 48),
    )
    print(f"box mask coverage: {out.mask.mean():.3f} ({out.mask.sum()} of {out.mask.size} pixels)")


def sample_atlas(atlas, bary, face_id):
    """Per-face texture atlas lookup (SoftRas surface textures), channel-last:
    atlas (F, R, R, C), bary (..., 3) weights of the face's corners, face_id
    (...) ints.  The face is cut into R x R cells by the lines w0 = k/R and
    w1 = k/R; cell (y, x) = (floor(w1 R), floor(w0 R)) holds texel [y, x] in its
    lower-left half (the fractional parts sum to at most 1) and texel
    [R-1-y, R-1-x] in its upper-right half.  Returns (..., C)."""
    atlas = np.asarray(atlas, dtype=np.float64)
    R = atlas.shape[1]
    s0, s1 = bary[..., 0] * R, bary[..., 1] * R
    x = np.minimum(np.floor(s0), R - 1).astype(int)
    y = np.minimum(np.floor(s1), R - 1).astype(int)
    upper = (s0 - x) + (s1 - y) > 1
    x = np.where(upper, R - 1 - x, x)
    y = np.where(upper, R - 1 - y, y)
    return atlas[np.maximum(face_id, 0), y, x]
