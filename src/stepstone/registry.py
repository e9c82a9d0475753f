"""One generic registry: tasks, methods and formats are registered once, by name."""
from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from .errors import StepstoneError, choices, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> item. `register` rejects duplicates; `get` names the valid choices on a miss."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise StepstoneError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        """The message for a name not registered: the valid choices, and the closest one if any is close."""
        return f"unknown {self.kind} '{name}' (valid: {choices(self._items)})" + did_you_mean(name, self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def in_order(self) -> list[str]:
        """The names in registration order (iteration is alphabetical)."""
        return list(self._items)
