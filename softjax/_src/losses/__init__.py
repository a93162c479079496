"""Losses: image losses, soft IoU and mesh regularisers (public through `softjax.losses`)."""
