"""A small typed registry: ``register`` / ``get`` (with "did you mean") / ``names``; and plug-ins.

Plug-ins (nnU-Net support, interactive models) add their entries to the core's registries
themselves. A registry made with ``plugins=GROUP`` loads, on its first lookup that misses, every
``register()`` function named by an entry point of that group (``[project.entry-points."GROUP"]``
in ``pyproject.toml``; other packages can add theirs) and by :data:`BUILTIN_PLUGINS` (so that a
source tree that is not installed finds voxseg's own). The core never imports a plug-in module:
the import-linter layers hold, and a plug-in whose dependencies are missing stays out.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from voxseg.errors import UnknownNameError

T = TypeVar("T")

__all__ = ["Registry", "load_plugins", "BUILTIN_PLUGINS"]

log = logging.getLogger(__name__)

#: voxseg's own plug-ins per entry-point group (also declared as entry points in pyproject.toml).
BUILTIN_PLUGINS: dict[str, tuple[str, ...]] = {
    "voxseg.networks": ("voxseg.nnunet.plugin:register_networks",),
    "voxseg.arithmetic": ("voxseg.nnunet.plugin:register_arithmetic",),
    "voxseg.prompted": ("voxseg.interactive.plugin:register_prompted",),
}
_loaded: set[str] = set()


def load_plugins(group: str) -> None:
    """Run the ``register()`` of every plug-in of ``group`` once (built-in ones and entry points)."""
    targets = dict.fromkeys(BUILTIN_PLUGINS.get(group, ()))
    for ep in entry_points(group=group):
        targets.setdefault(ep.value)
    for target in targets:
        if target in _loaded:
            continue
        _loaded.add(target)
        module, _, func = target.partition(":")
        try:
            getattr(importlib.import_module(module), func)()
        except ImportError as exc:  # a plug-in whose own dependencies are missing stays out
            log.debug("plug-in %s not loaded: %s", target, exc)


class Registry(Generic[T]):
    """Maps names to objects of one kind (networks, phantoms, readers, ...).

    Parameters
    ----------
    kind
        What the registry holds, used in error messages ("phantom", "network", ...).
    plugins
        Entry-point group of the plug-ins that add to it (see the module docstring), or None.
    """

    def __init__(self, kind: str, *, plugins: str | None = None):
        self.kind = kind
        self.plugins = plugins
        self._items: dict[str, T] = {}

    def _load_plugins(self) -> None:
        if self.plugins is not None:
            load_plugins(self.plugins)

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
        if name not in self._items:
            self._load_plugins()
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
        """Registered names (plug-ins' included), sorted."""
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
