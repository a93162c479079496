"""Hard visibility: the z-buffer, per-pixel fragments and interpolation, analytic antialiasing."""
