"""Name -> factory registries, and the ``name(key=value, ...)`` spec syntax.

Codecs, topology builders, collectives and models are registered by name; an unknown
name raises :class:`~gradwire.errors.UnknownNameError` listing the valid ones. A spec such
as ``qsgd(bits=4, bucket=512, norm="l2")`` is parsed with :func:`parse_spec` (Python
literal arguments, keywords only).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from gradwire.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping of names to factories returning ``T``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` (names are unique)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._items)) from None

    def create(self, name: str, **params: Any) -> T:
        """Build the item ``name`` with keyword parameters; a wrong keyword is a ConfigError."""
        factory = self.get(name)
        try:
            return factory(**params)
        except TypeError as exc:
            # Wrong or missing keyword arguments: say which item and which parameters.
            raise ConfigError(f"{self.kind} {name!r}: {exc}") from None

    def from_spec(self, spec: str) -> T:
        """Build from a spec string such as ``qsgd(bits=4, bucket=512)``."""
        name, params = parse_spec(spec)
        return self.create(name, **params)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse ``name`` or ``name(k=v, ...)`` with literal values into ``(name, params)``."""
    text = spec.strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ConfigError(
            f"cannot parse {spec!r}: expected name or name(key=value, ...)"
        ) from None
    if isinstance(node, ast.Name):
        return node.id, {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
        raise ConfigError(
            f"cannot parse {spec!r}: expected name or name(key=value, ...) with keyword arguments"
        )
    params: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ConfigError(f"cannot parse {spec!r}: **kwargs are not allowed")
        try:
            params[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise ConfigError(
                f"{spec!r}: value of {kw.arg!r} must be a literal (number, string, bool, list)"
            ) from None
    return node.func.id, params
