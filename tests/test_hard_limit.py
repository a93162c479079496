"""In the hard limit (sigma, gamma -> 0) softjax must agree with brute-force ray casting."""

import numpy as np
import pytest
import reference as ref
from scenes import HARD, UP

import softjax as sj


def _sphere():
    m = sj.ico_sphere(3)
    v = np.asarray(m.verts, np.float64)
    return v, np.asarray(m.faces), (v + 1.0) / 2.0, np.zeros(len(m.faces), int)


def _rotated_box():
    rot = ref.rotation_matrix((1.0, 2.0, 0.5), 0.7)
    v, f = ref.box(size=(1.2, 0.9, 1.0), center=(0.1, -0.1, 0.0), rotation=rot)
    return v, f, (v - v.min(0)) / np.ptp(v, 0), np.zeros(len(f), int)


def _torus():
    # Seen obliquely: the near side of the ring hides parts of the far side, and the hole shows.
    rot = ref.rotation_matrix((1.0, 0.0, 0.2), 0.9)
    v, f = ref.torus(R=1.0, r=0.35, n_major=24, n_minor=12)
    v = v @ rot.T
    colours = 0.5 + 0.5 * np.stack([np.sin(3 * v[:, 0]), np.cos(2 * v[:, 1]), v[:, 2]], 1)
    return v, f, np.clip(colours, 0, 1), np.zeros(len(f), int)


def _two_objects():
    # A red box behind, a green-blue L in front, overlapping on screen at different depths.
    vb, fb = ref.box(size=(1.8, 1.3, 0.6), center=(0.0, 0.1, -0.8))
    vl, fl = ref.l_shape(size=1.2, depth=0.4, center=(0.35, -0.2, 0.6))
    verts = np.concatenate([vb, vl])
    faces = np.concatenate([fb, fl + len(vb)])
    colours = np.concatenate([np.tile([0.9, 0.1, 0.1], (len(vb), 1)),
                              np.tile([0.1, 0.7, 0.8], (len(vl), 1))])  # fmt: skip
    return verts, faces, colours, np.repeat([0, 1], [len(fb), len(fl)])


SCENES = {
    "sphere": (_sphere, (0.6, 0.8, 2.8), (32, 32)),
    "rotated_box": (_rotated_box, (0.0, 0.4, 3.0), (32, 32)),
    "torus_self_occlusion": (_torus, (0.3, 1.2, 3.2), (32, 32)),
    "two_objects_overlap": (_two_objects, (0.8, 0.6, 3.2), (32, 32)),
    "non_square_wide": (_rotated_box, (1.0, 0.5, 2.6), (24, 40)),
    "non_square_tall": (_torus, (0.0, 2.0, 2.5), (40, 26)),
}


def _compare(name, lights=None):
    build, eye, size = SCENES[name]
    verts, faces, colours, obj = build()
    fov, near = 50.0, 0.1
    out = ref.raycast(verts, faces, colours, eye, (0, 0, 0), UP, fov, near, size)
    mesh = sj.Mesh(np.float32(verts), faces, np.float32(colours))
    cam = sj.look_at(eye, (0.0, 0.0, 0.0), UP, fov=fov, near=near, far=100.0)
    cfg = sj.RasterConfig(image_size=size, **HARD)
    rgba = np.asarray(sj.render(mesh, cam, cfg, lights=lights))

    expected = None
    if lights is not None:
        expected = ref.lambert(
            out.rgb,
            out.normal,
            out.mask,
            float(lights.ambient),
            float(lights.directional.intensity[0]),
            np.asarray(lights.directional.direction[0]),
        )
    ref.assert_matches(name, rgba, out, obj, expected)
    return out, rgba


@pytest.mark.parametrize("name", list(SCENES))
def test_hard_limit_matches_ray_casting(name):
    _compare(name)


@pytest.mark.parametrize("name", ["sphere", "torus_self_occlusion"])
def test_hard_limit_lambert_matches_ray_casting(name):
    _compare(name, lights=sj.Lights(0.3, [sj.DirectionalLight((0.4, -1.0, -0.6), intensity=0.7)]))


def test_two_objects_overlap_on_screen_and_front_wins():
    out, rgba = _compare("two_objects_overlap")
    _, eye, size = SCENES["two_objects_overlap"]
    verts, faces, colours, obj = _two_objects()
    back = ref.raycast(verts, faces[obj == 0], colours, eye, (0, 0, 0), UP, 50.0, 0.1, size)
    front = ref.raycast(verts, faces[obj == 1], colours, eye, (0, 0, 0), UP, 50.0, 0.1, size)
    overlap = back.mask & front.mask & ~ref.boundary_mask(front.mask)
    assert overlap.sum() >= 20, "the scene must overlap on screen to test occlusion"
    np.testing.assert_allclose(
        rgba[overlap, :3], np.tile([0.1, 0.7, 0.8], (overlap.sum(), 1)), atol=0.02
    )
