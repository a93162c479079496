"""Shading: lights and materials, textures, and the shaders that turn interpolated attributes
into colours."""
