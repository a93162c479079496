"""Float64 NumPy transcription of the sampling rules documented in `softjax.texture` /
`softjax.mipmaps` (mipmap construction, nearest / bilinear / trilinear filtering, clamp / wrap
addressing and the level-of-detail formula), written with plain loops and used as an
independent oracle by the tests.
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


def np_texture(tex, uv, jac=None, filter="linear", wrap="clamp", levels=None):
    """Sample `tex` (H, W, C) at `uv` (N, 2); `jac` (N, 2, 2) for trilinear. Returns (N, C)."""
    tex = np.asarray(tex, dtype=np.float64)
    uv = np.asarray(uv, dtype=np.float64)
    n = uv.shape[0]
    out = np.zeros((n, tex.shape[2]), dtype=np.float64)
    if filter == "nearest":
        for s in range(n):
            out[s] = np_nearest(tex, uv[s, 0], uv[s, 1], wrap)
    elif filter == "linear":
        for s in range(n):
            out[s] = np_bilinear(tex, uv[s, 0], uv[s, 1], wrap)
    elif filter == "trilinear":
        if levels is None:
            levels = np_mipmaps(tex)
        levels = [np.asarray(lv, dtype=np.float64) for lv in levels]
        nl = len(levels)
        h0, w0 = levels[0].shape[0], levels[0].shape[1]
        jac = np.asarray(jac, dtype=np.float64)
        for s in range(n):
            lam = np_level(jac[s], w0, h0)
            lam = min(max(lam, 0.0), float(nl - 1))
            l0 = math.floor(lam)
            t = lam - l0
            l1 = min(l0 + 1, nl - 1)
            u, v = uv[s, 0], uv[s, 1]
            out[s] = (1.0 - t) * np_bilinear(levels[l0], u, v, wrap) + t * np_bilinear(
                levels[l1], u, v, wrap
            )
    else:
        raise ValueError(f"unknown filter {filter!r}")
    return out


if __name__ == "__main__":
    rng = np.random.default_rng(0)

    # A 1x1 texture samples to itself under every filter and wrap mode.
    one = np.array([[[0.25, 0.5, 0.75]]])
    uv_any = rng.uniform(-2.0, 3.0, size=(7, 2))
    jac_any = rng.normal(size=(7, 2, 2))
    for f in ("nearest", "linear", "trilinear"):
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

    print("mipref self-check OK")
