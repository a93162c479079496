"""One batch of the soft stream's work items as both passes see it: the batch's faces as
triangles against its tiles' pixel centres, and each pair's colour logit. The forward pass
(`stream`) and its closed-form backward (`backward`) evaluate the same pairs through these,
so the backward's recomputation repeats the forward's operations exactly."""

from __future__ import annotations

import jax.numpy as jnp

from softjax._src.geometry.pairs import pair_derivatives
from softjax._src.soft.colour import colour_logits, hard_logits
from softjax._src.tiles.bins import face_triangles


def batch_pairs(batch, tiles, tile, idx, sentinel: int):
    """The pairs of items at tiles `tile (B,)` with faces `idx (B, c)` and their data `batch`
    (`FaceData` rows): the faces' `Triangles` with fields `(3, B, c, 1)`, the pixel centres
    `px, py (B, 1, Q)` and `real (B, c, 1)`, the slots that hold a face (not the
    sentinel)."""
    tri = face_triangles(batch.rows[:, :, None, :], batch.flags[:, :, None, :])
    px, py = tiles.px[tile][:, None, :], tiles.py[tile][:, None, :]
    return tri, px, py, (idx != sentinel)[:, :, None]


def pair_logits(log_d, z, ok, tiles, tile, idx, scale, colour: str):
    """The colour logits `(B, c, Q)` of the pairs: `log D + (zn - zn_ref) / gamma` (-inf
    where not `ok`; see `colour_logits`), or with `colour="hard"` 0 for each pixel's nearest
    covering face and -inf for the others."""
    if colour == "hard":
        return hard_logits(idx[:, :, None], tiles.winner[tile][:, None, :], z.dtype)
    return colour_logits(log_d, z, tiles.z_ref[tile][:, None, None], scale, ok)


def corner_values(batch):
    """The batch's corner attributes as `(3, A, B, c, 1)`, for `interpolate_pairs`."""
    return jnp.moveaxis(batch.colours, (2, 3), (0, 1))[..., None]


def shader_derivatives(shader, bary, z, tri, corner, perspective: bool, height: int) -> tuple:
    """What a per-pair `shader` takes after its parameters: `()`, or for one that needs the
    screen derivatives of its first k attributes (`derivatives`, e.g. the UVs of a mipmapped
    texture) `(derivs (k, 2, ...),)` from the pairs' barycentrics `bary`, depth `z`, faces
    `tri` and corner attributes `corner (3, A, ...)` laid out for `interpolate_pairs`
    (`pair_derivatives`; `height` the image's, in pixels)."""
    k = getattr(shader, "derivatives", 0)
    if not k:
        return ()
    return (pair_derivatives(bary, z, tri, corner[:, :k], perspective, height),)
