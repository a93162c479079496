"""Deform a sphere into a target shape from multi-view silhouettes (the SoftRas demo).

    python examples/deform_silhouettes.py                  # defaults: about a minute, 2-core CPU
    python examples/deform_silhouettes.py --level 4 --image-size 128 --steps 600   # bigger
    python examples/deform_silhouettes.py --help           # every flag

This is the flagship demo, `python -m softjax.demo`, whose code lives in `softjax/demo.py` so
that it also runs from an installed package. A coarse ico-sphere is fitted to the silhouettes of
a six-lobed "jack" seen from 12 cameras: per-vertex displacements plus a centre and scale, Adam,
SoftRas's soft IoU loss with Laplacian and flatten regularisers. It prints the mean IoU on six
held-out views and writes `grid.png` (target, fit, overlay on the held-out views), `fit.gif`
and `curves.png` to `--out` (default `softjax_out/`).

The step function is the pattern to copy (see `softjax/demo.py`, `main`): a loss of the
parameters that builds the mesh, renders a batch of views with `jax.vmap` and adds the
regularisers; `jax.value_and_grad`; an optax update; `jax.jit` around all of it.
"""

from softjax.demo import main

if __name__ == "__main__":
    main()
