"""Views and devices: a vmapped batch of views rendered in groups (one vectorised stream per
group, the groups one after another), and the `shard_map` bookkeeping of varying axes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def views_in_parallel(num_views: int, setting, backend: str, devices: int, manual: bool) -> int:
    """How many views of a vmapped batch of `num_views` are rendered in lockstep (the rest
    are taken one group after another): a divisor of `num_views`.

    `setting` is `RasterConfig.parallel_views`; None chooses per backend. An accelerator
    takes the whole batch at once: one vectorised stream fills it where one view cannot. A
    CPU takes one view at a time (vectorising the streamed loops makes XLA batch their
    scatters and gathers, about 2x slower per view on a CPU), except that with several
    devices it takes one group per device, so that a jitted batch whose views are sharded
    over them is partitioned with them (a serial loop over views cannot be). Inside
    `shard_map` (`manual`), each device's share runs one view at a time.
    """
    if setting is None:
        if backend != "cpu":
            setting = num_views
        elif manual:
            setting = 1
        else:
            setting = devices
    want = max(1, min(int(setting), num_views))
    return max(d for d in range(1, want + 1) if num_views % d == 0)


def varying_axes(tree) -> frozenset:
    """The `shard_map` axes over which any leaf of `tree` varies (empty outside one)."""
    axes = set()
    for leaf in jax.tree.leaves(tree):
        manual = getattr(jax.typeof(leaf), "manual_axis_type", None)
        axes |= set(getattr(manual, "varying", ()))
    return frozenset(axes)


def vary(tree, axes: frozenset):
    """`tree` marked as varying over the `shard_map` axes `axes` (a no-op outside one), so
    that loop carries started from constants have the type of what the loop body returns."""
    if not axes:
        return tree

    def cast(x):
        missing = tuple(sorted(axes - varying_axes(x)))
        return jax.lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(cast, tree)


@functools.lru_cache(maxsize=64)
def per_view(fn, st):
    """`fn(*args, st)` with a `vmap` rule that renders a batch of views in groups of
    `views_in_parallel` views: each group is one vectorised stream, and the groups run one
    after another (`lax.map`). Every view's result is the one it has alone.

    With p views per group, group g holds views g, g + n/p, g + 2n/p, ...: the batch's
    i-th contiguous block of n/p views is slice i of the vectorised axis in every group. So
    when the views are sharded over p devices in a jitted call, each device's block is its
    slice of that axis, which XLA partitions: each device renders only its share.
    """

    def call(*args):
        # Inside `shard_map`, every input takes the union of the inputs' varying axes, and so
        # does every loop carry derived from them (see `for_each_round`).
        return fn(*vary(args, varying_axes(args)), st)

    @jax.custom_batching.custom_vmap
    def per_view(*args):
        return call(*args)

    @per_view.def_vmap
    def rule(axis_size, in_batched, *args):
        flags, treedef = jax.tree.flatten(in_batched)
        leaves = treedef.flatten_up_to(list(args))
        mapped = [x for x, f in zip(leaves, flags, strict=True) if f]
        parallel = views_in_parallel(axis_size, st.views, jax.default_backend(),
                                     jax.device_count(), bool(varying_axes(mapped)))  # fmt: skip

        def group(xs):
            it = iter(xs)
            merged = [next(it) if f else x for x, f in zip(leaves, flags, strict=True)]
            merged = treedef.unflatten(merged)
            if parallel == 1:
                return per_view(*merged)
            axes = treedef.unflatten([0 if f else None for f in flags])
            return jax.vmap(call, in_axes=tuple(axes))(*merged)

        if parallel == 1:
            out = jax.lax.map(group, mapped)
        elif parallel == axis_size:
            out = group(mapped)
        else:
            # Views (n, ...) -> (n / p, p, ...): block i of the batch is slice i of every
            # group, so a sharded batch stays sharded along the vectorised axis.
            def split(x):
                return jnp.swapaxes(x.reshape(parallel, axis_size // parallel, *x.shape[1:]), 0, 1)

            def join(y):
                return jnp.swapaxes(y, 0, 1).reshape(axis_size, *y.shape[2:])

            out = jax.tree.map(join, jax.lax.map(group, [split(x) for x in mapped]))
        return out, jax.tree.map(lambda _: True, out)

    return per_view


def invariant_like(cotangents, primals):
    """Inside `shard_map`, each cotangent summed over the axes it varies over and its primal
    does not (a value the same on every device gets the sum of every device's share: the
    transpose of `pcast(..., to="varying")`); a no-op outside one."""

    def fix(g, x):
        extra = tuple(sorted(varying_axes(g) - varying_axes(x)))
        return jax.lax.psum(g, extra) if extra else g

    return tuple(jax.tree.map(fix, cotangents, primals))
