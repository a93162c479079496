"""The coverage distributions and the T-conorms, against references written apart from them:
scipy's distributions (or a closed form in float64) and a pairwise fold of each T-conorm's
two-argument formula."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import softjax as sj
from softjax._src.soft import coverage, tconorms

K = 2.5  # the gamma distributions' shape in these tests


def _closed_cubic_hermite(s):
    y = np.clip((s + 1) / 2, 0, 1)
    with np.errstate(divide="ignore"):  # D = y^2 (3 - 2y), 1 - D = (1 - y)^2 (1 + 2y)
        return np.log(y**2 * (3 - 2 * y)), np.log((1 - y) ** 2 * (1 + 2 * y))


def _closed_reciprocal(s):
    d = 0.5 + s / (2 * (1 + np.abs(s)))
    return np.log(d), np.log1p(-d)


def _scipy(dist, mirror=False):
    def logs(s):
        if mirror:  # F(s) = 1 - F_X(-s)
            return dist.logsf(-s), dist.logcdf(-s)
        return dist.logcdf(s), dist.logsf(s)

    return logs


REFERENCES = {
    "logistic": _scipy(stats.logistic),
    "gaussian": _scipy(stats.norm),
    "laplace": _scipy(stats.laplace),
    "cauchy": _scipy(stats.cauchy),
    "uniform": _scipy(stats.uniform(loc=-1, scale=2)),
    "cubic_hermite": _closed_cubic_hermite,
    "wigner_semicircle": _scipy(stats.semicircular),
    "gudermannian": _scipy(stats.hypsecant),
    "reciprocal": _closed_reciprocal,
    "gumbel_max": _scipy(stats.gumbel_r),
    "gumbel_min": _scipy(stats.gumbel_l),
    "exponential": _scipy(stats.expon),
    "exponential_rev": _scipy(stats.expon, mirror=True),
    "gamma": _scipy(stats.gamma(K)),
    "gamma_rev": _scipy(stats.gamma(K), mirror=True),
    "levy": _scipy(stats.levy),
    "levy_rev": _scipy(stats.levy_l),
    "dibr": _scipy(stats.expon, mirror=True),
}
assert set(REFERENCES) == set(coverage.DISTRIBUTIONS)

# Tails, the support's ends and 0.
GRID = np.concatenate([
    -np.logspace(-8, 6, 60), [0.0], np.logspace(-8, 6, 60),
    np.linspace(-1.5, 1.5, 61), [-1.0, 1.0, -1 + 1e-9, 1 - 1e-9, 1e-3, 1 / 1500, 1 / 1400],
])  # fmt: skip


# scipy's semicircular CDF cancels near the support's ends (at s = -1 + 1e-9 its log is off by
# 0.2; the series there gives 0.6002 t^1.5, t = 1 + s, which ours matches).
FLOOR = {"wigner_semicircle": 1e-8}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("name", coverage.DISTRIBUTIONS)
def test_cdf_matches_reference(name):
    s = np.sort(GRID)
    log_d, log_1md = (np.asarray(x) for x in jax.jit(
        lambda x: coverage.log_coverage(x, name, K))(jnp.asarray(s)))  # fmt: skip
    # scipy's Gumbel overflows in its far tails (to the right limits).
    with np.errstate(over="ignore"):
        ref_d, ref_1md = REFERENCES[name](s)
    # D itself to 1e-6 everywhere, and 1 - D too (in the upper tail D alone says little).
    np.testing.assert_allclose(np.exp(log_d), np.exp(ref_d), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.exp(log_1md), np.exp(ref_1md), rtol=0, atol=1e-6)
    # The logs, where the reference can tell them (relative 1e-6; where F underflows the
    # reference's own logs lose precision, e.g. scipy's far Gumbel tail).
    for got, ref in ((log_d, ref_d), (log_1md, ref_1md)):
        known = np.isfinite(ref) & (np.abs(ref) < 700) & (np.exp(ref) > FLOOR.get(name, 0))
        np.testing.assert_allclose(got[known], ref[known], rtol=1e-6, atol=1e-12)
        # D (or 1 - D) exactly 0 where the reference's log is -inf, and the other way round.
        assert np.all(np.exp(got[np.isneginf(ref)]) == 0)
        assert np.all(np.exp(ref[np.isneginf(got)]) < 1e-300)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", coverage.DISTRIBUTIONS)
def test_gradients_finite_everywhere(name, dtype):
    tiny = [1e-7, 1e-9, 1e-30, 1e-39, 1e-44]  # the last two subnormal in float32
    s = jnp.asarray([-1e6, -1e3, -30.0, -1.0, *(-t for t in tiny), 0.0, *tiny[::-1], 1.0, 30.0,
                     1e3, 1e6], dtype)  # fmt: skip

    def parts(x):
        log_d, log_1md = coverage.log_coverage(x, name, K)
        return jnp.exp(log_d), log_d, log_1md

    for k in range(3):
        g = jax.jit(jax.vmap(jax.grad(lambda x, k=k: parts(x)[k])))(s)
        assert np.all(np.isfinite(np.asarray(g))), (k, np.asarray(g))
    d = np.asarray(jax.jit(jax.vmap(lambda x: parts(x)[0]))(s))
    # Monotone up to rounding where two branches of a formula meet (at s = 0).
    assert np.all((d >= 0) & (d <= 1)) and np.all(np.diff(d) >= -4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("name", coverage.DISTRIBUTIONS)
def test_quantile_is_the_cull_start(name):
    for p in (1e-4, 1e-2):
        s = coverage.quantile(name, p, K)
        np.testing.assert_allclose(np.exp(REFERENCES[name](np.asarray([s]))[0]), p, rtol=1e-6)


# -- T-conorms --------------------------------------------------------------------------------


def _pair(name, p):
    """The two-argument T-conorm `a ⊥ b` in float64, as the dual `1 - T(1 - a, 1 - b)` of
    its T-norm (Klement, Mesiar and Pap, "Triangular Norms", 2000)."""

    def t_norm(x, y):
        if name == "probabilistic":
            return x * y
        if name == "max":
            return np.minimum(x, y)
        if name == "einstein":
            return x * y / (2 - (x + y - x * y))
        if name == "hamacher":
            return np.where(x + y == 0, 0.0, x * y / (p + (1 - p) * (x + y - x * y)))
        if name == "frank":
            return np.log1p((p**x - 1) * (p**y - 1) / (p - 1)) / np.log(p)
        if name == "yager":
            return np.maximum(0.0, 1 - ((1 - x) ** p + (1 - y) ** p) ** (1 / p))
        with np.errstate(divide="ignore"):
            if name == "aczel_alsina":
                return np.exp(-(((-np.log(x)) ** p + (-np.log(y)) ** p) ** (1 / p)))
            if name == "dombi":
                inner = ((1 - x) / x) ** p + ((1 - y) / y) ** p
                return np.where((x == 0) | (y == 0), 0.0, 1 / (1 + inner ** (1 / p)))
            if name == "schweizer_sklar":
                return np.where((x == 0) | (y == 0), 0.0, (x**p + y**p - 1) ** (1 / p))
        raise KeyError(name)

    return lambda a, b: 1 - t_norm(1 - a, 1 - b)


PARAMETRISED = [(name, p) for name in tconorms.T_CONORM_P
                for p in (tconorms.T_CONORM_P[name][1], *{
                    "hamacher": (0.01, 7.0), "frank": (0.05, 30.0), "yager": (0.3, 6.0),
                    "aczel_alsina": (0.2, 10.0), "dombi": (0.3, 4.0),
                    "schweizer_sklar": (-4.0, -0.1)}[name])]  # fmt: skip
ALL = [("probabilistic", None), ("max", None), ("einstein", None), *PARAMETRISED]


def _stacks(rng):
    """`(pixels, faces)` coverages: random, with exact 0s and 1s, near 0 and near 1."""
    d = rng.uniform(0, 1, (64, 6)) ** rng.choice([0.3, 1.0, 4.0], (64, 1))
    d[0], d[1], d[2] = 0.0, 1e-7, 1 - 1e-7
    d[3, 2], d[4, :3], d[5, 1] = 1.0, 0.0, 0.5
    return d


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name, p", ALL)
def test_t_conorm_matches_pairwise_fold(name, p, dtype):
    # The float32 inputs are rounded first, so that the comparison is of the arithmetic.
    d = np.asarray(jnp.asarray(_stacks(np.random.default_rng(1)), dtype), np.float64)
    fold = d[:, 0]
    for f in range(1, d.shape[1]):
        fold = _pair(name, p)(fold, d[:, f])

    @jax.jit
    def ours(d, p):
        with np.errstate(divide="ignore"):
            log_d, log_1md = jnp.log(d), jnp.log1p(-d)
        terms = tconorms.alpha_terms(log_d, log_1md, jnp.ones(d.shape, bool), p, name)
        total = jnp.max(terms, -1) if tconorms.by_max(name) else jnp.sum(terms, -1)
        return tconorms.alpha_from(total, p, name)

    got = np.asarray(ours(jnp.asarray(d, dtype), jnp.asarray(1.0 if p is None else p, dtype)))
    np.testing.assert_allclose(got, fold, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, p", ALL)
def test_t_conorm_gradients_finite(name, p):
    d = _stacks(np.random.default_rng(2))
    s = jnp.asarray(np.concatenate([special.logit(np.clip(d, 1e-300, 1 - 1e-16)),
                                    np.full((2, 6), 1e6), np.full((2, 6), -1e6)]))  # fmt: skip

    def alpha(s, p):
        log_d, log_1md = coverage.log_coverage(s, "logistic")
        terms = tconorms.alpha_terms(log_d, log_1md, jnp.ones(s.shape, bool), p, name)
        total = jnp.max(terms, -1) if tconorms.by_max(name) else jnp.sum(terms, -1)
        return jnp.sum(tconorms.alpha_from(total, p, name) * jnp.arange(s.shape[0]))

    for dtype in (jnp.float32, jnp.float64):
        g_s, g_p = jax.jit(jax.grad(alpha, argnums=(0, 1)))(
            s.astype(dtype), jnp.asarray(1.0 if p is None else p, dtype)
        )
        assert np.all(np.isfinite(np.asarray(g_s))) and np.isfinite(float(g_p))


def test_sum_and_hard_alpha():
    d = _stacks(np.random.default_rng(3))
    log_d, log_1md = jnp.log(jnp.asarray(d)), jnp.log1p(-jnp.asarray(d))
    ok = jnp.ones(d.shape, bool)
    total = jnp.sum(tconorms.alpha_terms(log_d, log_1md, ok, 1.0, "sum"), -1)
    np.testing.assert_allclose(tconorms.alpha_from(total, 1.0, "sum", 10), d.sum(-1) / 10)
    total = jnp.max(tconorms.alpha_terms(log_d, log_1md, ok, 1.0, "hard"), -1)
    np.testing.assert_array_equal(tconorms.alpha_from(total, 1.0, "hard"), d.max(-1) > 0.5)


@pytest.mark.parametrize("name", sorted(tconorms.T_CONORM_P))
def test_t_conorm_p_range_is_checked(name):
    (lo, hi, lo_open, hi_open, excluded), default = tconorms.T_CONORM_P[name]
    sj.RasterConfig(alpha=name, t_conorm_p=default)
    bad = [x for x in (lo if lo_open else lo - 1.0, hi if hi_open else hi + 1.0, excluded)
           if x is not None and math.isfinite(x)]  # fmt: skip
    for value in bad:
        with pytest.raises(ValueError, match="t_conorm_p"):
            sj.RasterConfig(alpha=name, t_conorm_p=value)
    with pytest.raises(ValueError, match="takes no `t_conorm_p`"):
        sj.RasterConfig(alpha="probabilistic", t_conorm_p=default)
