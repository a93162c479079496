"""Pytree boilerplate for softjax's small records whose fields are all array leaves (lights,
materials, environments): listed once in `_FIELDS`, flattened and rebuilt in that order."""

from __future__ import annotations


class Leaves:
    """Base of a record whose fields `_FIELDS` are all pytree leaves (arrays, or None, or
    nested records). Subclasses register themselves with
    `jax.tree_util.register_pytree_node_class`."""

    _FIELDS: tuple = ()

    def tree_flatten(self):
        return tuple(getattr(self, n) for n in self._FIELDS), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for name, value in zip(cls._FIELDS, children, strict=True):
            setattr(obj, name, value)
        return obj

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)}" for n in self._FIELDS)
        return f"{type(self).__name__}({fields})"
