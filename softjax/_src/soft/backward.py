"""The soft stream's backward pass in closed form, per batch of (pixel, face) pairs.

The forward pass (`stream`) reduces each pixel's pairs to a silhouette aggregate `total` (a
sum of per-pair terms, or their maximum) and an online softmax over colours. Given the
pixels' cotangents, each pair's cotangents follow without a transposed graph:

- Silhouette: `g_term = g_total` for a sum; for a maximum, `g_total` at the pixel's arg-max
  face and 0 elsewhere (0 everywhere for "hard", a step).
- Colour: with the pair's softmax weight `p = exp(log_w - log Z)`, `g_log_w = p <g_rgb,
  c - rgb>` and `g_c = p g_rgb` (the softmax's derivative; the background's share is the
  caller's).
- Distance and depth: `g_d = g_term dterm/dd + g_log_w dlogD/dd` (where the pair takes part)
  and, from `log_w = log D + (z_ref - z) scale`, `g_z = -scale g_log_w`. The slopes
  `dterm/dd` and `dlogD/dd` are the forward-mode derivatives of each family member's own
  elementwise formulas (`coverage`, `tconorms`) evaluated per pair: for the logistic,
  `dlogD/ds = 1 - D`, and for the probabilistic T-conorm `dterm/ds = -D`. Since `s = d /
  sigma`, `g_sigma = -sum(g_d d) / sigma`.
- Geometry: `pair_vjp` takes `g_d` (through `signed_distance` to `dist2` or `wmin`), `g_z`
  and the barycentrics' cotangents (from the colours) to the faces' rows, summed over the
  batch's pixels. A per-pair shader is the one generic step: its `jax.vjp`, and that of the
  screen derivatives it may take (a mipmapped texture's UV Jacobian), back to the face rows,
  barycentrics, depth and corner attributes.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from softjax._src.geometry.pairs import interpolate_pairs, pair_parts, pair_vjp
from softjax._src.soft.batch import batch_pairs, corner_values, pair_logits, shader_derivatives
from softjax._src.soft.coverage import coverage_of, signed_distance
from softjax._src.soft.tconorms import T_CONORM_P, alpha_terms, by_max


class Slopes(NamedTuple):
    """Per pair: `ok` (it takes part), `d` its signed distance, `log_d` its log coverage and
    the derivatives `term_d = dterm/dd`, `log_d_d = dlogD/dd`, `term_p = dterm/dp` (None
    for a T-conorm without a parameter) and `d_raw`, that of `d` with respect to the
    geometry's `dist2` (or `wmin` for the barycentric distance)."""

    ok: jax.Array
    d: jax.Array
    log_d: jax.Array
    term_d: jax.Array
    log_d_d: jax.Array
    term_p: jax.Array | None
    d_raw: jax.Array


def _raw_field(model) -> str:
    return "wmin" if model.distance == "barycentric" else "dist2"


def slopes(frag, sigma, p, model, alpha: str, real) -> Slopes:
    """`Slopes` of pairs `frag` (`PairGeometry`) under the coverage `model` and T-conorm
    `alpha`, with `real` the pairs that hold a face."""
    field = _raw_field(model)
    raw = getattr(frag, field)
    d, d_raw = jax.jvp(lambda x: signed_distance(frag._replace(**{field: x}), model),
                       (raw,), (jnp.ones_like(raw),))  # fmt: skip

    def terms(dist, q):
        ok, (log_d, log_1md) = coverage_of(dist, sigma, model, real)
        return (alpha_terms(log_d, log_1md, ok, q, alpha), log_d), ok

    (_, log_d), (term_d, log_d_d), ok = jax.jvp(
        lambda x: terms(x, p), (d,), (jnp.ones_like(d),), has_aux=True
    )
    term_p = None
    if alpha in T_CONORM_P:
        term_p = jax.jvp(lambda q: terms(d, q)[0][0], (p,), (jnp.ones_like(p),))[1]
    return Slopes(ok, d, log_d, term_d, log_d_d, term_p, d_raw)


def _sum_channels(x):
    """`x (C, ...)` summed over its channels as C - 1 adds: XLA's CPU reduction of a short
    leading axis measured several times slower than the elementwise adds."""
    return functools.reduce(jnp.add, [x[i] for i in range(x.shape[0])])


def batch_vjp(batch, scalars, tiles, tile, idx, sentinel: int, st, g_total, arg, cot):
    """Cotangents of one batch's faces and of the scalars.

    `batch` is the `FaceData` of faces `idx (B, c)` (without boxes) at tiles `tile (B,)`,
    `tiles` the stream's per-tile constants, `g_total (T, Q)` the cotangent of the
    silhouette's aggregate and `arg (T, Q)` its arg-max face (None unless `alpha="max"`).
    `cot` is None without colours, else `(g_rgb (C, T, Q), rgb (C, T, Q), log_z (T, Q))`.

    Returns `(g_rows (B, c, 18), g_colours (B, c, 3, A))` and the `Scalars` cotangents.
    """
    tri, px, py, real = batch_pairs(batch, tiles, tile, idx, sentinel)
    parts = pair_parts(px, py, tri, st.perspective)
    frag = parts.frag
    sl = slopes(frag, scalars.sigma, scalars.p, st.model, st.alpha, real)
    zero = jnp.zeros((), frag.z.dtype)

    # A sum's cotangent reaches every pair; a maximum's only the arg-max face's.
    g_term = jnp.broadcast_to(g_total[tile][:, None, :], frag.z.shape)
    if arg is not None:
        g_term = jnp.where(idx[:, :, None] == arg[tile][:, None, :], g_term, 0.0)
    elif by_max(st.alpha):
        g_term = jnp.zeros_like(g_term)  # "hard": a step
    g_d = g_term * sl.term_d
    g_p = zero if sl.term_p is None else jnp.sum(jnp.where(sl.ok, g_term * sl.term_p, 0.0))

    g_z = g_bary = g_rows_d = None
    g_colours = jnp.zeros_like(batch.colours)
    g_scale, g_shade = zero, jax.tree.map(jnp.zeros_like, scalars.shade)
    if cot is not None:
        g_rgb, rgb, log_z = cot
        log_w = pair_logits(sl.log_d, frag.z, sl.ok, tiles, tile, idx, scalars.scale, st.colour)
        corner = corner_values(batch)  # (3, A, B, c, 1)
        attrs = interpolate_pairs(frag.bary, corner)  # (A, B, c, Q)
        derivs = ()  # the screen derivatives the shader takes, with their own derivative
        if getattr(st.shader, "derivatives", 0):
            derivs, derivs_vjp = jax.vjp(
                lambda rows, b, z, cv: shader_derivatives(st.shader, b, z, batch_pairs(
                    batch._replace(rows=rows), tiles, tile, idx, sentinel)[0], cv,
                    st.perspective, st.image_size[0]),
                batch.rows, frag.bary, frag.z, corner)  # fmt: skip
        if st.shader is not None:
            colours, shader_vjp = jax.vjp(lambda a, s, d: st.shader(a, idx[:, :, None], s, *d),
                                          attrs, scalars.shade, derivs)  # fmt: skip
        else:
            colours = attrs
        w = jnp.exp(log_w - log_z[tile][:, None, :])  # each pair's softmax weight
        g_rgb_b = g_rgb[:, tile][:, :, None, :]  # (C, B, 1, Q)
        g_log_w = w * _sum_channels(g_rgb_b * (colours - rgb[:, tile][:, :, None, :]))
        g_attrs = w[None] * g_rgb_b
        if st.shader is not None:
            g_attrs, g_shade, g_derivs = shader_vjp(g_attrs)
        g_bary = tuple(_sum_channels(g_attrs * corner[k]) for k in range(3))
        g_colours = jnp.stack([jnp.sum(g_attrs * b, -1) for b in frag.bary])  # (3, A, B, c)
        if derivs:
            g_rows_d, g_bary_d, g_z, g_corner = derivs_vjp(g_derivs)
            g_bary = tuple(a + b for a, b in zip(g_bary, g_bary_d, strict=True))
            g_colours = g_colours + g_corner[..., 0]
        g_colours = jnp.moveaxis(g_colours, (0, 1), (2, 3))
        if st.colour != "hard":
            g_d = g_d + g_log_w * sl.log_d_d
            g_z = -scalars.scale * g_log_w + (0.0 if g_z is None else g_z)
            z_ref = tiles.z_ref[tile][:, None, None]
            g_scale = jnp.sum(jnp.where(sl.ok, g_log_w * (z_ref - frag.z), 0.0))
    # Masked by selects, not products: `d` is -inf for a degenerate face's barycentric
    # distance, and the slopes of pairs that take no part are not used.
    g_d = jnp.where(sl.ok, g_d, 0.0)
    g_sigma = -jnp.sum(jnp.where(sl.ok, g_d * sl.d, 0.0)) / scalars.sigma
    g_raw = {_raw_field(st.model): jnp.where(sl.ok, g_d * sl.d_raw, 0.0)}
    fields = pair_vjp(parts, tri, st.perspective, g_z=g_z, g_bary=g_bary,
                      **{f"g_{k}": v for k, v in g_raw.items()})  # fmt: skip
    none = jnp.zeros(frag.z.shape[:-1], frag.z.dtype)
    g_rows = jnp.stack([none if f is None else jnp.sum(f, -1) for f in fields], -1)  # (B, c, 18)
    if g_rows_d is not None:
        g_rows = g_rows + g_rows_d
    g_scalars = type(scalars)(g_scale, zero, g_sigma, zero, g_p, g_shade)
    return (g_rows, g_colours), g_scalars
