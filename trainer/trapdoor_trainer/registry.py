"""One registry type for everything users pick by name: methods, attacks, architectures.

An entry is registered by decorating the object it is built around (a method's `run`, an
attack's trigger builder, an architecture's model builder):

    @ATTACKS.register("blend", description="...", params={...})
    def blend(image_shape, params, **_): ...

`package` names the package whose modules hold the decorators; they are imported on first use, so
adding an entry means adding one module with one decorator. Entries list by their `order`, then
by name.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

from .errors import SpecError

E = TypeVar("E")


class Registry(Generic[E]):
    def __init__(self, kind: str, field: str, make: Callable[..., E], package: Optional[str] = None):
        """`kind` names entries in errors ("unknown attack ..."), `field` is the spec field an
        unknown name is reported on, `make(name, obj, **info)` builds an entry."""
        self.kind = kind
        self.field = field
        self._make = make
        self._package = package
        self._discovered = package is None
        self._entries: dict[str, E] = {}

    def register(self, name: str, **info: Any) -> Callable[[Any], Any]:
        """Decorator: register `name` built around the decorated object, which is returned as is."""

        def decorate(obj: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = self._make(name, obj, **info)
            return obj

        return decorate

    def _all(self) -> dict[str, E]:
        if not self._discovered:
            self._discovered = True  # before importing: the modules register into this registry
            try:
                package = importlib.import_module(self._package)
                for module in pkgutil.iter_modules(package.__path__):
                    importlib.import_module(f"{self._package}.{module.name}")
            except BaseException:
                self._discovered = False
                raise
        return self._entries

    def get(self, name: Any) -> E:
        entries = self._all()
        if not isinstance(name, str) or name not in entries:
            raise SpecError(self.field, f"unknown {self.kind} {name!r}; known: {sorted(entries)}")
        return entries[name]

    def names(self) -> list[str]:
        entries = self._all()
        return sorted(entries, key=lambda n: (getattr(entries[n], "order", 0), n))

    def entries(self) -> list[E]:
        return [self._entries[n] for n in self.names()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: Any) -> bool:
        return isinstance(name, str) and name in self._all()

    def __len__(self) -> int:
        return len(self._all())
