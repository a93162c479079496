"""Float64 NumPy transcription of the sampling rules documented in `softjax.texture` /
`softjax.mipmaps` (mipmap construction, nearest / bilinear / trilinear / anisotropic filtering,
clamp / wrap addressing, the level-of-detail formula and the anisotropic footprint: probe count,
level and axis), written with plain loops and used as an independent oracle by the tests.
"""

from __future__ import annotations

import math

import numpy as np


def np_mipmaps(tex):
    """Mip chain: level 0 is `tex`; halve (2x2 box mean) while no side > 1 is odd."""
    levels = [np.asarray(tex, dtype=np.float64)]
    while True:
        cur = levels[-1]
        hk, wk = cur.shape[0], cur.shape[1]
        if hk == 1 and wk == 1:
            break
        if (hk > 1 and hk % 2 == 1) or (wk > 1 and wk % 2 == 1):
            break
        nh = hk // 2 if hk > 1 else 1
        nw = wk // 2 if wk > 1 else 1
        nxt = np.zeros((nh, nw, cur.shape[2]), dtype=np.float64)
        for i in range(nh):
            rows = [2 * i, 2 * i + 1] if hk > 1 else [0]
            for j in range(nw):
                cols = [2 * j, 2 * j + 1] if wk > 1 else [0]
                acc = np.zeros(cur.shape[2], dtype=np.float64)
                for r in rows:
                    for c in cols:
                        acc = acc + cur[r, c]
                nxt[i, j] = acc / (len(rows) * len(cols))
        levels.append(nxt)
    return levels


def _index(k, size, wrap):
    if wrap == "clamp":
        return min(max(k, 0), size - 1)
    if wrap == "wrap":
        return k % size
    raise ValueError(f"unknown wrap mode {wrap!r}")


def np_bilinear(level, u, v, wrap):
    """One bilinear sample of `level` (H, W, C) at (u, v); returns (C,)."""
    level = np.asarray(level, dtype=np.float64)
    h, w = level.shape[0], level.shape[1]
    x = float(u) * w - 0.5
    y = (1.0 - float(v)) * h - 0.5
    x0 = math.floor(x)
    y0 = math.floor(y)
    fx = x - x0
    fy = y - y0
    r0 = _index(y0, h, wrap)
    r1 = _index(y0 + 1, h, wrap)
    c0 = _index(x0, w, wrap)
    c1 = _index(x0 + 1, w, wrap)
    return (
        (1.0 - fx) * (1.0 - fy) * level[r0, c0]
        + fx * (1.0 - fy) * level[r0, c1]
        + (1.0 - fx) * fy * level[r1, c0]
        + fx * fy * level[r1, c1]
    )


def np_nearest(level, u, v, wrap):
    """One nearest-texel sample of `level` (H, W, C) at (u, v); returns (C,)."""
    level = np.asarray(level, dtype=np.float64)
    h, w = level.shape[0], level.shape[1]
    j = math.floor(float(u) * w)
    i = math.floor((1.0 - float(v)) * h)
    return level[_index(i, h, wrap), _index(j, w, wrap)].copy()


def np_level(jac, width, height):
    """Unclamped level of detail of one sample from its (2, 2) uv-per-pixel Jacobian."""
    jac = np.asarray(jac, dtype=np.float64)
    dx = (jac[0, 0] * width, jac[1, 0] * height)
    dy = (jac[0, 1] * width, jac[1, 1] * height)
    a = dx[0] * dx[0] + dx[1] * dx[1]
    b = dy[0] * dy[0] + dy[1] * dy[1]
    c = dx[0] * dy[0] + dx[1] * dy[1]
    major2 = (a + b) / 2.0 + math.sqrt((a - b) ** 2 / 4.0 + c**2)
    if major2 == 0.0:
        return -math.inf
    return 0.5 * math.log2(major2)


def np_aniso(jac, width, height, max_aniso):
    """Anisotropic footprint of one sample from its (2, 2) uv-per-pixel Jacobian.

    Returns `(n, lam, axis)`: the probe count, the unclamped level of detail and the probe axis
    (length-2 array, UV units). `width`, `height` are level 0's size.
    """
    jac = np.asarray(jac, dtype=np.float64)
    dx = (jac[0, 0] * width, jac[1, 0] * height)
    dy = (jac[0, 1] * width, jac[1, 1] * height)
    px = math.sqrt(dx[0] * dx[0] + dx[1] * dx[1])
    py = math.sqrt(dy[0] * dy[0] + dy[1] * dy[1])
    pmax = max(px, py)
    pmin = min(px, py)
    if pmax == 0.0:
        n = 1
        lam = -math.inf
    elif pmin == 0.0:
        n = max_aniso
        lam = math.log2(pmax / n)
    else:
        n = min(math.ceil(pmax / pmin), max_aniso)
        lam = math.log2(pmax / n)
    if px >= py:
        axis = np.array([jac[0, 0], jac[1, 0]], dtype=np.float64)
    else:
        axis = np.array([jac[0, 1], jac[1, 1]], dtype=np.float64)
    return n, lam, axis


def np_trilinear(levels, lam, u, v, wrap):
    """One trilinear sample of the mip chain `levels` at (u, v), unclamped level `lam`; (C,)."""
    nl = len(levels)
    lam = min(max(lam, 0.0), float(nl - 1))
    l0 = math.floor(lam)
    t = lam - l0
    l1 = min(l0 + 1, nl - 1)
    return (1.0 - t) * np_bilinear(levels[l0], u, v, wrap) + t * np_bilinear(levels[l1], u, v, wrap)


def np_texture(tex, uv, jac=None, filter="linear", wrap="clamp", levels=None, max_aniso=8):
    """Sample `tex` (H, W, C) at `uv` (N, 2). Returns (N, C).

    `jac` (N, 2, 2) is needed for trilinear and anisotropic; `levels` overrides the mip chain;
    `max_aniso` caps the anisotropic probe count.
    """
    tex = np.asarray(tex, dtype=np.float64)
    uv = np.asarray(uv, dtype=np.float64)
    n = uv.shape[0]
    out = np.zeros((n, tex.shape[2]), dtype=np.float64)
    if filter == "nearest":
        for s in range(n):
            out[s] = np_nearest(tex, uv[s, 0], uv[s, 1], wrap)
        return out
    if filter == "linear":
        for s in range(n):
            out[s] = np_bilinear(tex, uv[s, 0], uv[s, 1], wrap)
        return out
    if filter not in ("trilinear", "anisotropic"):
        raise ValueError(f"unknown filter {filter!r}")
    if levels is None:
        levels = np_mipmaps(tex)
    levels = [np.asarray(lv, dtype=np.float64) for lv in levels]
    h0, w0 = levels[0].shape[0], levels[0].shape[1]
    jac = np.asarray(jac, dtype=np.float64)
    for s in range(n):
        if filter == "trilinear":
            lam = np_level(jac[s], w0, h0)
            out[s] = np_trilinear(levels, lam, uv[s, 0], uv[s, 1], wrap)
            continue
        probes, lam, axis = np_aniso(jac[s], w0, h0, max_aniso)
        acc = np.zeros(levels[0].shape[2], dtype=np.float64)
        for k in range(probes):
            off = (k + 0.5) / probes - 0.5
            u = uv[s, 0] + off * axis[0]
            v = uv[s, 1] + off * axis[1]
            acc = acc + np_trilinear(levels, lam, u, v, wrap)
        out[s] = acc / probes
    return out


if __name__ == "__main__":
    rng = np.random.default_rng(0)

    # A 1x1 texture samples to itself under every filter and wrap mode.
    one = np.array([[[0.25, 0.5, 0.75]]])
    uv_any = rng.uniform(-2.0, 3.0, size=(7, 2))
    jac_any = rng.normal(size=(7, 2, 2))
    for f in ("nearest", "linear", "trilinear", "anisotropic"):
        for wm in ("clamp", "wrap"):
            got = np_texture(one, uv_any, jac_any, filter=f, wrap=wm)
            assert np.allclose(got, one[0, 0]), (f, wm)

    # Bilinear and nearest at a texel centre return that texel.
    tex = rng.uniform(size=(5, 3, 2))
    for i in range(5):
        for j in range(3):
            u_c, v_c = (j + 0.5) / 3, 1.0 - (i + 0.5) / 5
            for wm in ("clamp", "wrap"):
                assert np.allclose(np_bilinear(tex, u_c, v_c, wm), tex[i, j])
                assert np.allclose(np_nearest(tex, u_c, v_c, wm), tex[i, j])

    # Mip chain shapes and constancy.
    const = np.full((4, 4, 3), 0.3)
    chain = np_mipmaps(const)
    assert [lv.shape[:2] for lv in chain] == [(4, 4), (2, 2), (1, 1)]
    assert all(np.allclose(lv, 0.3) for lv in chain)
    assert [lv.shape[:2] for lv in np_mipmaps(np.zeros((6, 4, 1)))] == [(6, 4), (3, 2)]
    shapes = [lv.shape[:2] for lv in np_mipmaps(np.zeros((8, 2, 1)))]
    assert shapes == [(8, 2), (4, 1), (2, 1), (1, 1)]
    ramp = np.arange(16, dtype=np.float64).reshape(4, 4, 1)
    assert np.allclose(np_mipmaps(ramp)[-1], ramp.mean())

    # Level of detail: one texel per pixel -> 0; two texels per pixel -> 1; zero -> -inf.
    assert np.isclose(np_level(np.diag([1 / 8, 1 / 4]), 8, 4), 0.0)
    assert np.isclose(np_level(np.diag([2 / 8, 2 / 4]), 8, 4), 1.0)
    assert np_level(np.zeros((2, 2)), 8, 4) == -math.inf

    # Trilinear at lam == 0 equals linear; at the coarsest level equals the 1x1 mean.
    tex4 = rng.uniform(size=(4, 4, 2))
    uv4 = rng.uniform(size=(6, 2))
    j_fine = np.broadcast_to(np.diag([1 / 4, 1 / 4]), (6, 2, 2))
    j_coarse = np.broadcast_to(np.diag([100.0, 100.0]), (6, 2, 2))
    lin = np_texture(tex4, uv4, filter="linear")
    assert np.allclose(np_texture(tex4, uv4, j_fine, filter="trilinear"), lin)
    coarse = np_texture(tex4, uv4, j_coarse, filter="trilinear")
    assert np.allclose(coarse, tex4.reshape(-1, 2).mean(axis=0))

    # Anisotropic: equal, orthogonal one-texel dX / dY -> n = 1 and equals trilinear.
    j_iso = np.diag([1 / 4, 1 / 4])
    n_iso, lam_iso, _ = np_aniso(j_iso, 4, 4, 8)
    assert n_iso == 1 and np.isclose(lam_iso, 0.0)
    rot = math.pi / 7
    j_rot = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]]) / 4
    assert np_aniso(j_rot, 4, 4, 8)[0] == 1
    for j_eq in (j_iso, j_rot):
        j_eq6 = np.broadcast_to(j_eq, (6, 2, 2))
        for wm in ("clamp", "wrap"):
            tri = np_texture(tex4, uv4, j_eq6, filter="trilinear", wrap=wm)
            ani = np_texture(tex4, uv4, j_eq6, filter="anisotropic", wrap=wm)
            assert np.allclose(ani, tri), wm

    # dX 4 texels long, dY 1 texel long -> n = 4, lam = 0, axis along dX; the result is the
    # mean of 4 level-0 bilinear probes spread along dX.
    tex8 = rng.uniform(size=(8, 8, 2))
    uv8 = rng.uniform(size=(5, 2))
    j_41 = np.diag([4 / 8, 1 / 8])
    n_41, lam_41, axis_41 = np_aniso(j_41, 8, 8, 8)
    assert n_41 == 4 and np.isclose(lam_41, 0.0)
    assert np.allclose(axis_41, [4 / 8, 0.0])
    ani8 = np_texture(tex8, uv8, np.broadcast_to(j_41, (5, 2, 2)), filter="anisotropic")
    for s in range(5):
        want = np.zeros(2)
        for k in range(4):
            off = (k + 0.5) / 4 - 0.5
            want = want + np_bilinear(tex8, uv8[s, 0] + off * 0.5, uv8[s, 1], "clamp") / 4
        assert np.allclose(ani8[s], want), s
    # The same footprint with dY the longer side picks dY's axis.
    n_14, _, axis_14 = np_aniso(np.diag([1 / 8, 4 / 8]), 8, 8, 8)
    assert n_14 == 4 and np.allclose(axis_14, [0.0, 4 / 8])

    # A zero Jacobian -> n = 1, lam = -inf, and anisotropic equals linear.
    n_0, lam_0, _ = np_aniso(np.zeros((2, 2)), 8, 8, 8)
    assert n_0 == 1 and lam_0 == -math.inf
    j_zero = np.zeros((6, 2, 2))
    assert np.allclose(np_texture(tex4, uv4, j_zero, filter="anisotropic"), lin)

    # A rank-one Jacobian (dY == 0) -> n = max_aniso, lam = log2(Pmax / max_aniso).
    for ma in (1, 4, 8, 16):
        n_r1, lam_r1, _ = np_aniso(np.array([[3 / 8, 0.0], [1 / 8, 0.0]]), 8, 8, ma)
        assert n_r1 == ma and np.isclose(lam_r1, math.log2(math.sqrt(10.0) / ma)), ma
    # Very elongated but full-rank footprints are capped at max_aniso too.
    assert np_aniso(np.diag([100 / 8, 1 / 8]), 8, 8, 8)[0] == 8

    print("mipref self-check OK")
