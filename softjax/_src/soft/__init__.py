"""Soft visibility (SoftRas): coverage distributions, T-conorms, the colour softmax, the dense
reference and the tiled stream."""
