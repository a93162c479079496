"""Coverage: a face's signed screen distance to a pixel -> the probability that it covers it.

A face covers a pixel with probability `D = F(s)`, `F` the CDF of a distribution and `s` the
signed scaled distance, positive inside: `s = sign * d**2 / sigma` (`squared=True`, SoftRas's
convention) or `s = sign * d / sigma`, with `d` the Euclidean screen distance to the triangle
or, as in SoftRas's barycentric option, the smallest screen barycentric coordinate.

Each distribution gives `log D` and `log(1 - D)` directly, in forms that stay accurate in
both tails (the aggregations work in log space, and a deep-inside `1 - D` of 1e-30 matters
to a silhouette), with finite values and gradients for every finite `s`; where `D` is
exactly 0 or 1 the log is -inf and its gradient 0. Sources: SoftRas (Liu et al., ICCV 2019:
logistic), GenDR (Petersen et al., CVPR 2022, section 3 and its table of distributions: all
others, including the mirrored "_rev" ones), Kaolin's DIB-R soft mask (Chen et al.,
NeurIPS 2019): `dibr`.

Formulas, `F(s)` (one-sided ones are 0 or 1 past their support):
  logistic           1 / (1 + exp(-s))
  gaussian           Phi(s), the standard normal CDF
  laplace            exp(s) / 2 for s < 0, 1 - exp(-s) / 2 otherwise
  cauchy             1/2 + atan(s) / pi
  uniform            (s + 1) / 2 on [-1, 1]
  cubic_hermite      3 y**2 - 2 y**3 with y = (s + 1) / 2 on [-1, 1] (smoothstep)
  wigner_semicircle  1/2 + s sqrt(1 - s**2) / pi + asin(s) / pi on [-1, 1]
  gudermannian       1/2 + 2 atan(tanh(s / 2)) / pi = 2 atan(exp(s)) / pi
  reciprocal         1/2 + s / (2 (1 + |s|))
  gumbel_max         exp(-exp(-s))
  gumbel_min         1 - exp(-exp(s))
  exponential        1 - exp(-s) for s > 0
  exponential_rev    exp(s) for s < 0, 1 otherwise
  gamma              P(k, s), the regularised lower incomplete gamma function, for s > 0
  gamma_rev          1 - P(k, -s) for s < 0, 1 otherwise
  levy               erfc(1 / sqrt(2 s)) for s > 0
  levy_rev           1 - erfc(1 / sqrt(-2 s)) for s < 0, 1 otherwise
  dibr               exponential_rev: 1 inside, exp(-d**2 / sigma) outside when squared
with `k = coverage_shape` for the gamma pair.

Culling: a pair whose `D < dist_eps` takes no part (as in SoftRas), i.e. `s < quantile(dist_eps)`.
For finite supports that radius is exact; for heavy tails it is large: with
`dist_eps = 1e-4` the logistic cull is at `s = -9.2`, the Gaussian's at -3.7, but Cauchy's at
-3183 and the reciprocal's at -5000 (so the blur reaches 340x or 540x farther than the
logistic's, in squared units, and the tiled path bins and streams that many more pairs).
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammainc, gammaincc, gammaln, log_ndtr

from softjax._src.numerics import smax, smin

DISTRIBUTIONS = ("logistic", "gaussian", "laplace", "cauchy", "uniform", "cubic_hermite",
                 "wigner_semicircle", "gudermannian", "reciprocal", "gumbel_max",
                 "gumbel_min", "exponential", "exponential_rev", "gamma", "gamma_rev", "levy",
                 "levy_rev", "dibr")  # fmt: skip


DISTANCES = ("euclidean", "barycentric")


_LN2 = math.log(2.0)


def _masked(ok, fn, x, safe, other):
    """`fn(x)` where `ok`, `other` elsewhere; `fn` only ever sees `safe` there (no inf or NaN
    in the discarded branch, whose gradient JAX also computes)."""
    return jnp.where(ok, fn(jnp.where(ok, x, safe)), other)


def _tiny(x) -> float:
    return float(jnp.finfo(jnp.result_type(x)).tiny)


def _log1mexp(x):
    """`log(1 - exp(-x))` for `x > 0`, accurate at both ends (Maechler's two branches), each
    fed only its own range (the other's derivative is infinite near 0); below the smallest
    normal number it stays at that number's value (so that `1 / x` stays finite)."""
    small = x < _LN2
    a = jnp.log(-jnp.expm1(-smax(jnp.where(small, x, _LN2), _tiny(x))))
    b = jnp.log1p(-jnp.exp(-jnp.where(small, _LN2, x)))
    return jnp.where(small, a, b)


def _neg_inf(s):
    return jnp.full_like(s, -jnp.inf)


def _logistic(s):
    return jax.nn.log_sigmoid(s)


def _gaussian(s):
    return log_ndtr(s)


def _laplace(s):
    below = s < 0
    return jnp.where(below, jnp.where(below, s, 0.0) - _LN2,
                     jnp.log1p(-0.5 * jnp.exp(-jnp.where(below, 0.0, s))))  # fmt: skip


def _cauchy(s):
    # 1/2 + atan(s) / pi = atan2(1, -s) / pi, with no cancellation in the lower tail.
    return jnp.log(jnp.arctan2(jnp.ones_like(s), -s)) - math.log(math.pi)


def _uniform(s):
    return _masked(s > -1, lambda t: jnp.log(smin((t + 1) * 0.5, 1.0)), s, 0.0, _neg_inf(s))


def _cubic_hermite(s):
    def log_smoothstep(t):
        y = smin((t + 1) * 0.5, 1.0)
        return 2 * jnp.log(y) + jnp.log(3 - 2 * y)

    return _masked(s > -1, log_smoothstep, s, 0.0, _neg_inf(s))


def _wigner_semicircle(s):
    def log_cdf(t):
        # With s = -cos(phi / 2): F = (phi - sin(phi)) / (2 pi), phi in [0, 2 pi]; phi from
        # asin keeps full precision near s = -1, where phi - sin(phi) takes its series.
        phi = 4 * jnp.arcsin(jnp.sqrt((t + 1) * 0.5))
        small = phi < 0.5
        p = jnp.where(small, phi, 0.5)
        p2 = p * p
        series = p2 * p / 6 * (1 - p2 / 20 * (1 - p2 / 42 * (1 - p2 / 72)))
        return jnp.log(jnp.where(small, series, phi - jnp.sin(phi))) - math.log(2 * math.pi)

    # Past s = 1 the asin's derivative is singular: F is 1 there.
    return jnp.where(s >= 1, 0.0, _masked((s > -1) & (s < 1), log_cdf, s, 0.0, _neg_inf(s)))


def _gudermannian(s):
    below = s < 0
    # 2 atan(e^s) / pi; below 0 as s + log(atan(x) / x) (x = e^s may underflow), above as
    # log(1 - 2 atan(e^-s) / pi).
    x = jnp.exp(jnp.where(below, s, 0.0))
    tiny = x < 1e-4
    xs = jnp.where(tiny, 1.0, x)
    ratio = jnp.where(tiny, 1 - x * x / 3, jnp.arctan(xs) / xs)
    low = jnp.where(below, s, 0.0) + jnp.log(ratio) + math.log(2 / math.pi)
    high = jnp.log1p(-(2 / math.pi) * jnp.arctan(jnp.exp(-jnp.where(below, 0.0, s))))
    return jnp.where(below, low, high)


def _reciprocal(s):
    below = s < 0
    low = -_LN2 - jnp.log1p(-jnp.where(below, s, 0.0))
    high = jnp.log1p(-0.5 / (1 + jnp.where(below, 0.0, s)))
    return jnp.where(below, low, high)


_GUMBEL_FLOOR = -80.0  # exp(80) is finite in float32; below it F is 0 in any precision


def _gumbel_max(s):
    x = jnp.exp(-smax(s, _GUMBEL_FLOOR))  # the log of F is -x
    small = x < 1e-4
    xs = jnp.where(small, 1.0, x)
    log_sf = jnp.where(small, -smax(s, _GUMBEL_FLOOR) + jnp.log1p(-0.5 * x), _log1mexp(xs))
    return -x, log_sf


def _exponential(s):
    inside = s > 0
    return (_masked(inside, _log1mexp, s, 1.0, _neg_inf(s)),
            jnp.where(inside, -jnp.where(inside, s, 0.0), 0.0))  # fmt: skip


def _gamma(s, k):
    inside = s > 0
    t = jnp.where(inside, s, 1.0)
    # Near 0: P = t^k e^-t / Gamma(k + 1) * sum_n t^n / ((k + 1) ... (k + n)) (Kummer), whose
    # log stays finite where P underflows; far out, log Q by its asymptotic series.
    near = t < 0.1 * (k + 1)
    u = jnp.where(near, t, 0.0)
    term, total = jnp.ones_like(u), jnp.ones_like(u)
    for n in range(1, 10):
        term = term * u / (k + n)
        total = total + term
    log_t = jnp.log(smax(jnp.where(near, t, 1.0), _tiny(t)))  # 1 / t finite, as above
    log_p_near = k * log_t - u - gammaln(k + 1.0) + jnp.log(total)
    log_p = jnp.where(near, log_p_near, jnp.log(gammainc(k, jnp.where(near, 1.0, t))))
    far = t > 40 + 2 * k
    v = jnp.where(far, t, 1.0)
    term, total = jnp.ones_like(v), jnp.ones_like(v)
    for n in range(1, 6):
        term = term * (k - n) / v
        total = total + term
    log_q_far = (k - 1) * jnp.log(v) - v - gammaln(k) + jnp.log(total)
    log_q = jnp.where(far, log_q_far, jnp.log(gammaincc(k, jnp.where(far, 1.0, t))))
    return jnp.where(inside, log_p, -jnp.inf), jnp.where(inside, log_q, 0.0)


_LEVY_MIN = 1.0 / 1500  # below it log F < -745: F is 0 in float64 and float32


def _levy(s):
    inside = s > _LEVY_MIN
    t = jnp.where(inside, s, 1.0)
    log_cdf = _LN2 + log_ndtr(-jax.lax.rsqrt(t))  # erfc(z) = 2 Phi(-z sqrt 2)
    log_sf = jnp.log(jax.scipy.special.erf(jax.lax.rsqrt(2 * t)))
    return jnp.where(inside, log_cdf, -jnp.inf), jnp.where(inside, log_sf, 0.0)


def _mirror(fn):
    """The distribution of `-X`: `F(s) = 1 - F_X(-s)`."""

    def mirrored(s, *args):
        log_cdf, log_sf = fn(-s, *args)
        return log_sf, log_cdf

    return mirrored


def _symmetric(log_cdf):
    def both(s, *args):
        return log_cdf(s), log_cdf(-s)

    return both


_LOGS = {
    "logistic": _symmetric(_logistic),
    "gaussian": _symmetric(_gaussian),
    "laplace": _symmetric(_laplace),
    "cauchy": _symmetric(_cauchy),
    "uniform": _symmetric(_uniform),
    "cubic_hermite": _symmetric(_cubic_hermite),
    "wigner_semicircle": _symmetric(_wigner_semicircle),
    "gudermannian": _symmetric(_gudermannian),
    "reciprocal": _symmetric(_reciprocal),
    "gumbel_max": _gumbel_max,
    "gumbel_min": _mirror(_gumbel_max),
    "exponential": _exponential,
    "exponential_rev": _mirror(_exponential),
    "gamma": _gamma,
    "gamma_rev": _mirror(_gamma),
    "levy": _levy,
    "levy_rev": _mirror(_levy),
    "dibr": _mirror(_exponential),
}


_SHAPED = ("gamma", "gamma_rev")


def log_coverage(s, name: str, shape: float = 2.0):
    """`(log D, log(1 - D))` of the signed scaled distances `s` (any shape) under the
    distribution `name`; `shape` is the gamma distributions' `k`."""
    fn = _LOGS[name]
    return fn(s, shape) if name in _SHAPED else fn(s)


def cdf(s, name: str, shape: float = 2.0):
    """`D = F(s)`."""
    return jnp.exp(log_coverage(s, name, shape)[0])


def _host_gamma_p(k: float, x: float) -> float:
    """P(k, x) by Kummer's series (x up to ~100 in float64)."""
    if x <= 0:
        return 0.0
    term = total = 1.0
    n = 1
    while term > 1e-17 * total:
        term *= x / (k + n)
        total += term
        n += 1
    return math.exp(k * math.log(x) - x - math.lgamma(k + 1)) * total


def _host_cdf(name: str, shape: float):
    """`F` in Python floats, for the quantiles that have no closed form."""
    if name == "wigner_semicircle":
        return lambda s: 0.5 + (s * math.sqrt(max(0.0, 1 - s * s)) + math.asin(s)) / math.pi
    if name == "gamma":
        return lambda s: _host_gamma_p(shape, s)
    if name == "gamma_rev":
        return lambda s: 1.0 - _host_gamma_p(shape, -s)
    if name == "levy":
        return lambda s: math.erfc(1 / math.sqrt(2 * s)) if s > 0 else 0.0
    if name == "levy_rev":
        return lambda s: math.erf(1 / math.sqrt(-2 * s)) if s < 0 else 1.0
    raise KeyError(name)


def _bisect(f, p: float, lo: float, hi: float) -> float:
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) < p:
            lo = mid
        else:
            hi = mid
    return lo


# The lower end of each support (D > 0 above it): -inf where the support is unbounded below.
_SUPPORT_START = {"uniform": -1.0, "cubic_hermite": -1.0, "wigner_semicircle": -1.0,
                  "exponential": 0.0, "gamma": 0.0, "levy": 0.0}  # fmt: skip


@functools.lru_cache(maxsize=256)
def quantile(name: str, p: float, shape: float = 2.0) -> float:
    """The `s` below which `D < p` (0 <= p < 1/2): where the `dist_eps` cull starts. For
    `p = 0`, the start of the support (-inf for an unbounded one)."""
    if p <= 0.0:
        return _SUPPORT_START.get(name, -math.inf)
    closed = {
        "logistic": lambda: -math.log(1.0 / p - 1.0),
        "gaussian": lambda: NormalDist().inv_cdf(p),
        "laplace": lambda: math.log(2 * p),
        "cauchy": lambda: -1.0 / math.tan(math.pi * p),
        "uniform": lambda: 2 * p - 1,
        "cubic_hermite": lambda: -2 * math.sin(math.asin(1 - 2 * p) / 3),
        "gudermannian": lambda: math.log(math.tan(math.pi * p / 2)),
        "reciprocal": lambda: 1 - 1 / (2 * p),
        "gumbel_max": lambda: -math.log(-math.log(p)),
        "gumbel_min": lambda: math.log(-math.log1p(-p)),
        "exponential": lambda: -math.log1p(-p),
        "exponential_rev": lambda: math.log(p),
        "dibr": lambda: math.log(p),
    }
    if name in closed:
        return closed[name]()
    f = _host_cdf(name, shape)
    lo, hi = {"wigner_semicircle": (-1.0, 0.0), "gamma": (0.0, 100.0 + 10 * shape),
              "levy": (0.0, 1e12)}.get(name, (-1e12, 0.0))  # fmt: skip
    if name == "gamma_rev":
        lo = -(100.0 + 10 * shape)
    return _bisect(f, p, lo, hi)


class Model(NamedTuple):
    """The static choices of the coverage (hashable; see `RasterConfig`).

    distribution: a name from `DISTRIBUTIONS`; shape: the gamma distributions' `k`;
    squared: whether `s` divides the squared distance (else the distance) by sigma;
    distance: "euclidean" or "barycentric"; start: `quantile(dist_eps)`, the `s` below which a
    pair takes no part.
    """

    distribution: str = "logistic"
    shape: float = 2.0
    squared: bool = True
    distance: str = "euclidean"
    start: float = -math.log(1.0 / 1e-4 - 1.0)


def signed_distance(frag, model: Model):
    """The signed distance `sign * d` (or `sign * d**2` when squared) of fragments
    `PairGeometry`, positive inside, that `s` divides by sigma."""
    if model.distance == "barycentric":
        w = frag.wmin  # -inf for a degenerate face
        return w * jnp.abs(w) if model.squared else w
    if model.squared:
        return frag.dist2
    a = jnp.abs(frag.dist2)
    ok = a > 0
    return jnp.sign(frag.dist2) * jnp.where(ok, jnp.sqrt(jnp.where(ok, a, 1.0)), 0.0)


def reach2(sigma, model: Model):
    """How far outside a face its coverage reaches, squared, in the units of `signed_distance`
    before squaring: `d**2 <= reach2` for every kept pair outside (inf when nothing is culled).
    For a Python float `sigma` a float, else an array."""
    if math.isinf(model.start):
        return math.inf
    reach = sigma * max(-model.start, 0.0)
    return reach if model.squared else reach * reach


def pair_coverage(frag, sigma, model: Model, real):
    """Per pair: `ok` (it takes part: `real` and not culled) and `(log D, log(1 - D))`,
    computed from a harmless `s = 0` where not `ok`."""
    return coverage_of(signed_distance(frag, model), sigma, model, real)


def coverage_of(d, sigma, model: Model, real):
    """`pair_coverage` of the signed distances `d` (`signed_distance`)."""
    ok = real & (d >= model.start * jax.lax.stop_gradient(sigma))
    if model.distance == "barycentric":
        ok = ok & (d > -jnp.inf)  # not a degenerate face (also when nothing is culled)
    s = d * (1.0 / sigma)  # one reciprocal, so that every path rounds the same way
    if model.distribution != "logistic":  # the logistic is finite for every s
        s = jnp.where(ok, s, 0.0)
    return ok, log_coverage(s, model.distribution, model.shape)
