"""Scenes and settings shared by the test files (a test file never imports another)."""

import jax
import numpy as np

# Near the hard limit of the soft path: coverage a step, the colour the nearest face's.
HARD = dict(sigma=1e-9, gamma=1e-6)

# Small tiles, chunks, batches and rounds: many tiles, several chunks per tile, several
# batches, items of one tile spread over different batches, and a tile's candidates split
# over several rounds of binning.
SMALL = dict(tile_size=4, chunk=8, batch_pairs=4 * 16 * 8, pair_capacity=50)

UP = (0.0, 1.0, 0.0)


def layers_scene(n=24, seed=0):
    """`n` random triangles through the image centre: many layers over the same pixels.
    Returns vertices `(3n, 3)`, faces `(n, 3)` and vertex colours `(3n, 3)` (numpy)."""
    rng = np.random.default_rng(seed)
    tri = rng.uniform(-1.0, 1.0, (n, 3, 3)) * np.array([1.0, 1.0, 0.5])
    tri[:, :, :2] += -tri[:, :, :2].mean(1, keepdims=True) * 0.8  # pull centroids inwards
    verts = tri.reshape(-1, 3)
    return verts, np.arange(3 * n).reshape(n, 3), rng.uniform(0, 1, verts.shape)


def cast(tree, dtype):
    """`tree` with its floating leaves cast to `dtype`."""
    return jax.tree.map(lambda x: x.astype(dtype) if x.dtype.kind == "f" else x, tree)
