"""Geometry: near-plane clipping and projection, triangle setup, per-(pixel, face) pair geometry."""
