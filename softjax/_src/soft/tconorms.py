"""T-conorms: how the faces' coverages aggregate into a pixel's alpha (the silhouette).

SoftRas (Liu et al., ICCV 2019, eq. 4): face f covers a pixel with probability `D_f`
(`coverage`), and the silhouette is `1 - prod_f (1 - D_f)`. That is one member of a family
(GenDR, Petersen et al., CVPR 2022): any T-conorm `a ⊥ b` aggregates the coverages. The
Archimedean ones have an additive generator `g`, `a ⊥ b = g^-1(g(a) + g(b))`, so a pixel's
alpha is `g^-1(sum_f g(D_f))`: one per-pair term summed over faces (which streams like the
product did) and one function of the sum. Each term is written from `log D` and `log(1 - D)`,
so that deep inside a face (`1 - D` below float precision) the sum stays exact. Generators
(T-conorms as duals of the T-norms):
  probabilistic    1 - prod(1 - D): the term is log(1 - D) (= -g), alpha = -expm1(S)
  einstein         g = log((1 + x) / (1 - x)), alpha = tanh(S / 2)
  hamacher (p>0)   g = log((p + (1 - p)(1 - x)) / (1 - x)), alpha = (e^S - 1) / (e^S - 1 + p)
  frank (p>0, !=1) g = -log((p^(1-x) - 1) / (p - 1)), alpha = 1 - log_p(1 + (p - 1) e^-S)
  yager (p>0)      g = x^p, alpha = min(1, S^(1/p))
  aczel_alsina     g = (-log(1 - x))^p, alpha = 1 - exp(-S^(1/p))
  dombi (p>0)      g = (x / (1 - x))^p, alpha = S^(1/p) / (1 + S^(1/p))
  schweizer_sklar  g = ((1 - x)^p - 1) / -p for p < 0, alpha = 1 - (1 - p S)^(1/p)
and three that are not sums of generators: `max` (a running maximum; its gradient goes to
the arg-max face, the lowest index among ties), SoftRas's `sum` (the mean coverage over the
mesh's faces, `sum_f D_f / F`) and `hard` (1 where any `D > 1/2`; no gradient).

Powers, exponentials and roots are capped where their float range would end (a face whose
`1 - D` is below e^-80, or a sum past e^80): alpha is then 1 to the precision of the dtype,
and the gradients finite. The `t_conorm_p` ranges (`T_CONORM_P`) keep those caps harmless.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from softjax._src.numerics import smax, smin

T_CONORMS = ("probabilistic", "max", "einstein", "hamacher", "yager", "frank",
             "aczel_alsina", "dombi", "schweizer_sklar", "sum", "hard")  # fmt: skip


# The accepted `t_conorm_p` of each parametrised T-conorm: (low, high, open at low, open at
# high, excluded value) and the default.
T_CONORM_P = {
    "hamacher": ((0.0, math.inf, True, True, None), 0.5),
    "frank": ((0.0, math.inf, True, True, 1.0), 2.0),
    "yager": ((0.0, math.inf, True, True, None), 2.0),
    "aczel_alsina": ((0.0, 10.0, True, False, None), 2.0),
    "dombi": ((0.0, 4.0, True, False, None), 2.0),
    "schweizer_sklar": ((-4.0, 0.0, False, True, None), -2.0),
}


_L_CAP = 80.0  # -log(1 - D) past which the Aczel-Alsina term stops growing


def by_max(alpha: str) -> bool:
    """Whether `alpha` reduces over faces by a maximum (else by a sum of terms)."""
    return alpha in ("max", "hard")


def _cap(dtype) -> float:
    """An exponent whose exponential, summed over thousands of faces, stays finite."""
    return math.log(float(jnp.finfo(dtype).max)) - 8.0


def _root(total, p, cap):
    """`total ** (1 / p)` (0 at 0), its exponent capped at `cap`; finite gradients."""
    tiny = float(jnp.finfo(jnp.result_type(total)).tiny)
    ok = total > tiny
    return jnp.where(ok, jnp.exp(smin(jnp.log(smax(total, tiny)) / p, cap)), 0.0)


def _log_exprel(z):
    """`log((e^z - 1) / z)`, 0 at 0."""
    small = jnp.abs(z) < 1e-3
    zs = jnp.where(small, 1.0, z)
    return jnp.where(small, z / 2 + z * z / 24, jnp.log(jnp.expm1(zs) / zs))


def _frank(log_d, log_1md, p):
    """Frank's generator `-log((p^(1-x) - 1) / (p - 1))` at `x = D`: for `D < 1/2` as
    `-log1p(-p^(1-D) expm1(D ln p) / expm1(ln p))` (exact for small D), else from `log(1 -
    D)` (exact for D near 1)."""
    lp = jnp.log(p)
    d, u = jnp.exp(log_d), jnp.exp(log_1md)
    low = d < 0.5
    dl, ul = jnp.where(low, d, 0.0), jnp.where(low, 1.0, u)
    ratio = jnp.exp(jnp.where(low, u, 1.0) * lp) * jnp.expm1(dl * lp) / jnp.expm1(lp)
    near_one = -(jnp.where(low, 0.0, log_1md) + jnp.log(lp / (p - 1)) + _log_exprel(ul * lp))
    return jnp.where(low, -jnp.log1p(-ratio), near_one)


def alpha_terms(log_d, log_1md, ok, p, alpha: str):
    """Per pair, what the silhouette sums (or maximises) over faces: `g(D)` (`log(1 - D)` for
    the probabilistic T-conorm), `D` for max, sum and hard; 0 where not `ok`."""
    if alpha == "probabilistic":
        term = log_1md
    elif by_max(alpha) or alpha == "sum":
        term = jnp.exp(log_d)
    elif alpha == "einstein":
        term = jnp.log1p(jnp.exp(log_d)) - log_1md
    elif alpha == "hamacher":
        # log(1 + p D / (1 - D)): exact for small D, where the difference of logs is not.
        term = jax.nn.softplus(log_d - log_1md + jnp.log(p))
    elif alpha == "frank":
        term = _frank(log_d, log_1md, p)
    elif alpha == "yager":
        term = jnp.exp(p * log_d)
    elif alpha == "aczel_alsina":
        lam = smin(-log_1md, _L_CAP)
        some = lam > 0
        term = jnp.where(some, jnp.exp(p * jnp.log(jnp.where(some, lam, 1.0))), 0.0)
    elif alpha == "dombi":
        term = jnp.exp(smin(p * (log_d - log_1md), _cap(log_d.dtype)))
    elif alpha == "schweizer_sklar":
        term = jnp.expm1(smin(p * log_1md, _cap(log_d.dtype))) / -p
    else:
        raise ValueError(f"unknown alpha aggregation {alpha!r}")
    return jnp.where(ok, term, 0.0)


def alpha_from(total, p, alpha: str, faces=None):
    """Alpha from the per-pixel sum (or maximum) `total` of `alpha_terms`; `faces` is the
    count that `sum` divides by."""
    if alpha == "probabilistic":
        return 0.0 - jnp.expm1(total)  # 0 - x, not -x: no -0.0 where nothing covers the pixel
    if alpha == "max":
        return total
    if alpha == "hard":
        return (jax.lax.stop_gradient(total) > 0.5).astype(total.dtype)
    if alpha == "sum":
        return total / faces
    if alpha == "einstein":
        return jnp.tanh(total / 2)
    if alpha == "hamacher":
        grown = -jnp.expm1(-total)
        return grown / (grown + p * jnp.exp(-total))
    if alpha == "frank":
        return -jnp.log1p((p - 1) * jnp.expm1(-total) / p) / jnp.log(p)
    if alpha == "yager":
        return _root(total, p, 0.0)
    if alpha == "aczel_alsina":
        return -jnp.expm1(-_root(total, p, math.log(_L_CAP)))
    if alpha == "dombi":
        some = total > 0
        return jnp.where(some, jax.nn.sigmoid(jnp.log(jnp.where(some, total, 1.0)) / p), 0.0)
    if alpha == "schweizer_sklar":
        return -jnp.expm1(jnp.log1p(-p * total) / p)
    raise ValueError(f"unknown alpha aggregation {alpha!r}")


def check_t_conorm_p(alpha: str, p: float) -> float:
    """`p` if the T-conorm `alpha` accepts it (see `T_CONORM_P`), else a ValueError."""
    if alpha not in T_CONORM_P:
        raise ValueError(f'alpha="{alpha}" takes no `t_conorm_p` (got {p!r})')
    (lo, hi, lo_open, hi_open, excluded), _ = T_CONORM_P[alpha]
    below = p <= lo if lo_open else p < lo
    above = p >= hi if hi_open else p > hi
    if below or above or p == excluded:
        lo_s, hi_s = "(" if lo_open else "[", ")" if hi_open else "]"
        but = f", not {excluded}" if excluded is not None else ""
        raise ValueError(
            f'`t_conorm_p` of alpha="{alpha}" must be in {lo_s}{lo}, {hi}{hi_s}{but}; got {p!r}'
        )
    return p
