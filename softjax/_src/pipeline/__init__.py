"""The pipeline: each visibility mode's program, from a mesh and camera to per-pixel colours,
alpha, face ids and depth."""
