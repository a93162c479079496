"""Tiles: binning faces to screen tiles, the schedule of (tile, chunk) work items, and views
and devices (`vmap`, `shard_map`) around the per-view programs."""
