"""A table of named declarations (families, methods, statistics): registered once, listed in order,
looked up with an error that lists what there is."""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class NamedTable(Generic[T]):
    def __init__(self, kind: str, missing: type[Exception] = KeyError):
        self.kind = kind  # "model family", "method", ...: named in errors
        self.missing = missing  # the error type of an unknown name
        self._items: dict[str, T] = {}

    def register(self, item: T, *, replace: bool = False) -> T:
        name = item.name
        if name in self._items and not replace:
            raise ValueError(f"a {self.kind} named {name!r} is registered already")
        self._items[name] = item
        return item

    def setdefault(self, item: T) -> T:
        return self._items.setdefault(item.name, item)

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise self.missing(f"unknown {self.kind} {name!r}; known: {', '.join(self._items)}") from None

    def find(self, name: str) -> T | None:
        return self._items.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def names(self) -> list[str]:
        return list(self._items)
