"""A small typed registry: ``register`` / ``get`` (with "did you mean") / ``names``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from voxseg.errors import UnknownNameError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Maps names to objects of one kind (networks, phantoms, readers, ...).

    Parameters
    ----------
    kind
        What the registry holds, used in error messages ("phantom", "network", ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> T | Callable[[T], T]:
        """Register ``item`` under ``name``; without ``item``, return a decorator."""
        if item is None:

            def decorator(obj: T) -> T:
                self._add(name, obj)
                return obj

            return decorator
        self._add(name, item)
        return item

    def _add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def get(self, name: str) -> T:
        """Return the item registered as ``name``, or raise with the closest names."""
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; {hint + ' ' if hint else ''}known: {known}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
