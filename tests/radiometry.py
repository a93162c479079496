"""Independent float64 numpy transcriptions of the radiometric shading formulas (GGX BRDF,
split-sum integrals, spherical-harmonic irradiance, latitude-longitude maps), written from
the published formulas, not from softjax: the references the shading tests compare against.
Vectors are channel-last `(N, 3)`."""

import numpy as np

PI = np.pi


# ----------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------
def _normalize(x):
    """Normalise along the last axis."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _dot(a, b):
    """Dot product along the last axis (keeps leading shape)."""
    return np.sum(a * b, axis=-1)


def _ggx_alpha(roughness):
    """alpha = max(roughness, 0.08)^2  (nvdiffrec's remapping)."""
    return np.maximum(np.asarray(roughness, dtype=np.float64), 0.08) ** 2


def _ggx_D(alpha, n_dot_h):
    """GGX / Trowbridge-Reitz normal distribution D(h)."""
    a2 = alpha * alpha
    d = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    return a2 / (PI * d * d)


def _smith_lambda(alpha, c):
    """Smith Lambda for GGX: (sqrt(1 + alpha^2 (1 - c^2) / c^2) - 1) / 2."""
    c2 = c * c
    return (np.sqrt(1.0 + alpha * alpha * (1.0 - c2) / c2) - 1.0) * 0.5


def _smith_G(alpha, n_dot_l, n_dot_v):
    """Height-correlated Smith masking-shadowing G = 1 / (1 + Lambda(wi) + Lambda(v))."""
    return 1.0 / (1.0 + _smith_lambda(alpha, n_dot_l) + _smith_lambda(alpha, n_dot_v))


def _orthonormal_frame(n):
    """Return (t, b) such that (t, b, n) is a right-handed orthonormal frame, n (3,)."""
    n = _normalize(n)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    t = _normalize(np.cross(helper, n))
    b = np.cross(n, t)
    return t, b


# ----------------------------------------------------------------------------
# 1. GGX BRDF
# ----------------------------------------------------------------------------
def _ggx_specular(n, wi, v, roughness, F0, eps=1e-4):
    """Specular lobe F D G / (4 n.l n.v), (N,3). Cosines clamped to [eps, 1-eps]."""
    n = _normalize(n)
    wi = _normalize(wi)
    v = _normalize(v)
    alpha = _ggx_alpha(roughness)
    h = _normalize(wi + v)
    lo, hi = eps, 1.0 - eps
    nl = np.clip(_dot(n, wi), lo, hi)
    nv = np.clip(_dot(n, v), lo, hi)
    nh = np.clip(_dot(n, h), lo, hi)
    vh = np.clip(_dot(v, h), lo, hi)

    D = _ggx_D(alpha, nh)  # (N,)
    G = _smith_G(alpha, nl, nv)  # (N,)
    F = F0 + (1.0 - F0) * ((1.0 - vh) ** 5)[:, None]  # (N,3) Schlick
    return F * (D * G / (4.0 * nl * nv))[:, None]


def ggx_brdf(n, wi, v, roughness, metallic, base, eps=1e-4):
    """
    nvdiffrec-style BRDF value f(wi, v) (NOT multiplied by n.l).

    n, wi, v   : (N,3) directions (normalised here anyway); wi = to light, v = to viewer
    roughness : (N,)  perceptual roughness, alpha = max(roughness, 0.08)^2
    metallic  : (N,)
    base      : (N,3) base colour
    eps       : cosine clamp, n.l, n.v, n.h, v.h in [eps, 1-eps] (default 1e-4 as specified)
    returns   : (N,3)

      f = base (1 - metallic) / pi + F D G / (4 (n.l)(n.v))
      F0 = 0.04 (1 - metallic) + base * metallic,  F = F0 + (1 - F0)(1 - v.h)^5
    NOTE: the n.h clamp at 1-1e-4 caps the peak of D; for roughness <~ 0.15
    (alpha^2 comparable to 2e-4) this materially lowers D near the peak,
    so the lobe no longer integrates to what the unclamped DFG tables assume.
    """
    roughness = np.asarray(roughness, dtype=np.float64)
    metallic = np.asarray(metallic, dtype=np.float64)[:, None]
    base = np.asarray(base, dtype=np.float64)
    F0 = 0.04 * (1.0 - metallic) + base * metallic
    diffuse = base * (1.0 - metallic) / PI
    return diffuse + _ggx_specular(n, wi, v, roughness, F0, eps=eps)


# ----------------------------------------------------------------------------
# 2. split-sum DFG terms
# ----------------------------------------------------------------------------
def _dfg_integrand_terms(alpha, nl, nv, nh, vh):
    """Common piece: D G / (4 nl nv) * nl  and Fc = (1 - v.h)^5 (inputs already valid)."""
    D = _ggx_D(alpha, nh)
    G = _smith_G(alpha, nl, nv)
    spec_cos = D * G / (4.0 * nv)  # D G/(4 nl nv) * nl
    Fc = (1.0 - vh) ** 5
    return spec_cos, Fc


def dfg_monte_carlo(n_dot_v, roughness, samples=2_000_000, seed=0):
    """
    Split-sum DFG terms (A, B) with n = (0,0,1), v = (sqrt(1-nv^2), 0, nv):
      A = int_H  D G / (4 nl nv) (1 - Fc) nl dl,   B = same with Fc,   Fc = (1 - v.h)^5
    alpha = max(roughness, 0.08)^2.  Specular under uniform radiance 1 = F0*A + B.

    Importance sampling of GGX normals: pdf(h) = D(h) n.h,
      cos(theta_h) = sqrt((1-u1) / (1 + (alpha^2-1) u1)), phi_h = 2 pi u2,
    wi = 2 (v.h) h - v, pdf(wi) = D n.h / (4 v.h).  Estimator weight per sample:
      D G/(4 nl nv) nl / pdf(wi) = G v.h / (nv n.h).
    Samples with v.h <= 0 (reflection maps to no valid half-vector) or n.l <= 0 contribute 0,
    but still count in the sample total (the sampled pdf is normalised over all h).
    """
    nv = float(n_dot_v)
    alpha = float(_ggx_alpha(roughness))
    a2 = alpha * alpha
    v = np.array([np.sqrt(max(0.0, 1.0 - nv * nv)), 0.0, nv])

    rng = np.random.default_rng(seed)
    A_sum = 0.0
    B_sum = 0.0
    chunk = 500_000
    done = 0
    while done < samples:
        m = min(chunk, samples - done)
        u1 = rng.random(m)
        u2 = rng.random(m)
        cos_h = np.sqrt((1.0 - u1) / (1.0 + (a2 - 1.0) * u1))
        sin_h = np.sqrt(np.maximum(0.0, 1.0 - cos_h * cos_h))
        phi = 2.0 * PI * u2
        h = np.stack([sin_h * np.cos(phi), sin_h * np.sin(phi), cos_h], axis=-1)
        vh = h @ v
        wi = 2.0 * vh[:, None] * h - v
        nl = wi[:, 2]
        nh = cos_h
        ok = (vh > 0.0) & (nl > 0.0)
        vh_o, nl_o, nh_o = vh[ok], nl[ok], nh[ok]
        G = _smith_G(alpha, nl_o, nv)
        w = G * vh_o / (nv * nh_o)
        Fc = (1.0 - vh_o) ** 5
        A_sum += np.sum(w * (1.0 - Fc))
        B_sum += np.sum(w * Fc)
        done += m
    return float(A_sum / samples), float(B_sum / samples)


def dfg_uniform_quadrature(n_dot_v, roughness, n=2000):
    """
    Same (A, B) as dfg_monte_carlo by midpoint quadrature over wi in the hemisphere:
      theta in (0, pi/2) with n cells, phi in (0, 2 pi) with 2n cells,
      dl = sin(theta) dtheta dphi.  Accurate for roughness >= ~0.3 (peaky lobes need finer grids).
    """
    nv = float(n_dot_v)
    alpha = float(_ggx_alpha(roughness))
    v = np.array([np.sqrt(max(0.0, 1.0 - nv * nv)), 0.0, nv])

    n_theta, n_phi = n, 2 * n
    dth = 0.5 * PI / n_theta
    dph = 2.0 * PI / n_phi
    theta = (np.arange(n_theta) + 0.5) * dth
    phi = (np.arange(n_phi) + 0.5) * dph
    cphi, sphi = np.cos(phi), np.sin(phi)

    A = 0.0
    B = 0.0
    rows = max(1, 2_000_000 // n_phi)  # chunk over theta rows to bound memory
    for s in range(0, n_theta, rows):
        th = theta[s : s + rows][:, None]
        st, ct = np.sin(th), np.cos(th)
        wi = np.stack([st * cphi, st * sphi, np.broadcast_to(ct, (th.shape[0], n_phi))], axis=-1)
        h = _normalize(wi + v)
        nl = wi[..., 2]
        nh = h[..., 2]
        vh = _dot(h, v)
        spec_cos, Fc = _dfg_integrand_terms(alpha, nl, nv, nh, vh)
        dw = st * dth * dph  # (rows,1) solid angle weights
        A += np.sum(spec_cos * (1.0 - Fc) * dw)
        B += np.sum(spec_cos * Fc * dw)
    return float(A), float(B)


# ----------------------------------------------------------------------------
# 3. real SH basis (bands 0..2)
# ----------------------------------------------------------------------------
def sh_basis(dirs):
    """dirs (N,3) unit -> (N,9), order [Y00, Y1-1(y), Y10(z), Y11(x), Y2-2, Y2-1, Y20, Y21, Y22]."""
    d = np.asarray(dirs, dtype=np.float64)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    return np.stack(
        [
            np.full_like(x, 0.282095),
            0.488603 * y,
            0.488603 * z,
            0.488603 * x,
            1.092548 * x * y,
            1.092548 * y * z,
            0.315392 * (3.0 * z * z - 1.0),
            1.092548 * x * z,
            0.546274 * (x * x - y * y),
        ],
        axis=-1,
    )


def _sphere_grid(n_theta, n_phi):
    """Midpoint grid over the whole sphere: directions (M,3) and solid-angle weights (M,)."""
    dth = PI / n_theta
    dph = 2.0 * PI / n_phi
    theta = (np.arange(n_theta) + 0.5) * dth
    phi = (np.arange(n_phi) + 0.5) * dph
    T, P = np.meshgrid(theta, phi, indexing="ij")
    st = np.sin(T)
    dirs = np.stack([st * np.cos(P), st * np.sin(P), np.cos(T)], axis=-1).reshape(-1, 3)
    dw = (st * dth * dph).reshape(-1)
    return dirs, dw


# ----------------------------------------------------------------------------
# 4. SH irradiance by brute force
# ----------------------------------------------------------------------------
def sh_irradiance_bruteforce(coeffs, normals, n_theta=800, n_phi=1600):
    """
    coeffs (9,3): radiance L(w) = sum_k c_k Y_k(w).  normals (N,3).
    Returns E (N,3) = int_{S^2} L(w) max(n.w, 0) dw by midpoint quadrature in (theta, phi).
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    normals = _normalize(np.atleast_2d(normals))
    dirs, dw = _sphere_grid(n_theta, n_phi)
    Ldw = (sh_basis(dirs) @ coeffs) * dw[:, None]  # (M,3) radiance * solid angle
    E = np.empty((normals.shape[0], 3))
    batch = 8
    for s in range(0, normals.shape[0], batch):
        cos = np.maximum(normals[s : s + batch] @ dirs.T, 0.0)  # (b,M)
        E[s : s + batch] = cos @ Ldw
    return E


def split_sum_free_specular_sh(
    coeffs, n, v, roughness, metallic, base, n_theta=1000, n_phi=2000, eps=1e-4
):
    """
    int_{H(n)} f_spec(wi, v) L(wi) (n.l) dl with f_spec = F D G / (4 n.l n.v) exactly as in
    ggx_brdf (same alpha, F0, Schlick F and cosine clamps), L = SH radiance of coeffs (9,3).
    n, v (3,), scalars roughness/metallic, base (3,).  Midpoint quadrature over the hemisphere
    about n in a local frame, dl = sin(theta) dtheta dphi; the n.l factor is the true (unclamped)
    cosine.  Returns (3,).
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    n = _normalize(n)
    v = _normalize(v)
    base = np.asarray(base, dtype=np.float64).reshape(3)
    metallic = float(metallic)
    F0 = 0.04 * (1.0 - metallic) + base * metallic  # (3,)
    t, b = _orthonormal_frame(n)

    dth = 0.5 * PI / n_theta
    dph = 2.0 * PI / n_phi
    theta = (np.arange(n_theta) + 0.5) * dth
    phi = (np.arange(n_phi) + 0.5) * dph
    cphi, sphi = np.cos(phi), np.sin(phi)

    out = np.zeros(3)
    rows = max(1, 500_000 // n_phi)
    for s in range(0, n_theta, rows):
        th = theta[s : s + rows][:, None]
        st, ct = np.sin(th), np.cos(th)
        # local -> world: wi = st cphi t + st sphi b + ct n
        wi = (
            (st * cphi)[..., None] * t
            + (st * sphi)[..., None] * b
            + np.broadcast_to(ct, (th.shape[0], n_phi))[..., None] * n
        ).reshape(-1, 3)
        m = wi.shape[0]
        fs = _ggx_specular(
            np.broadcast_to(n, (m, 3)),
            wi,
            np.broadcast_to(v, (m, 3)),
            np.full(m, float(roughness)),
            F0,
            eps=eps,
        )  # (m,3)
        L = sh_basis(wi) @ coeffs  # (m,3)
        w = (np.broadcast_to(ct * st, (th.shape[0], n_phi)) * dth * dph).reshape(-1)  # n.l dl
        out += np.sum(fs * L * w[:, None], axis=0)
    return out


def diffuse_sh(coeffs, n, metallic, base, n_theta=800, n_phi=1600):
    """base (1 - metallic)/pi * E(n), E by sh_irradiance_bruteforce.  n (3,), returns (3,)."""
    E = sh_irradiance_bruteforce(
        coeffs, np.asarray(n, dtype=np.float64).reshape(1, 3), n_theta, n_phi
    )[0]
    return np.asarray(base, dtype=np.float64) * (1.0 - float(metallic)) / PI * E


# ----------------------------------------------------------------------------
# 6. lat-long environment map geometry (+y up)
# ----------------------------------------------------------------------------
def latlong_directions(He, We):
    """Texel-centre directions (He,We,3): theta = pi(i+.5)/He from +y, phi = 2pi(j+.5)/We,
    d = (sin th sin phi, cos th, sin th cos phi)."""
    theta = PI * (np.arange(He) + 0.5) / He
    phi = 2.0 * PI * (np.arange(We) + 0.5) / We
    T, P = np.meshgrid(theta, phi, indexing="ij")
    st = np.sin(T)
    return np.stack([st * np.sin(P), np.cos(T), st * np.cos(P)], axis=-1)


def latlong_solid_angles(He, We):
    """Exact texel solid angles (He,We): (cos th_i - cos th_{i+1}) * 2pi/We; sums to 4pi."""
    edges = PI * np.arange(He + 1) / He
    band = np.cos(edges[:-1]) - np.cos(edges[1:])  # (He,)
    return np.repeat((band * 2.0 * PI / We)[:, None], We, axis=1)
