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

from gradwire.errors import ConfigError, GradWireError, UnknownNameError

MAX_SPEC = 1_000  # characters of one spec
_LITERALS = (bool, int, float, str, type(None))

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
        except GradWireError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            # Wrong or missing keyword arguments, or a value of the wrong kind that the
            # factory did not check itself: say which item and which parameters.
            given = ", ".join(f"{k}={v!r:.40}" for k, v in params.items())
            raise ConfigError(f"{self.kind} {name!r} cannot be built from ({given}): {exc}") from None

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


def _plain(value: Any, depth: int = 0) -> bool:
    """Numbers, strings, booleans, None, and lists of them (no dicts, sets or bytes)."""
    if isinstance(value, _LITERALS):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
            return False
        return True
    if isinstance(value, list | tuple) and depth < 4 and len(value) <= 1_000:
        return all(_plain(v, depth + 1) for v in value)
    return False


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse ``name`` or ``name(k=v, ...)`` with literal values into ``(name, params)``.

    Values are Python literals limited to numbers, strings, booleans, None and short
    lists of them; a spec is at most :data:`MAX_SPEC` characters.
    """
    if not isinstance(spec, str):
        raise ConfigError(f"a spec must be text such as qsgd(bits=4), got {type(spec).__name__}")
    if len(spec) > MAX_SPEC or "\x00" in spec:
        raise ConfigError(f"spec {spec[:40]!r}...: at most {MAX_SPEC} characters without NUL")
    text = spec.strip()
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
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
            value = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError, OverflowError):
            value = ast  # not a literal: refused below
        if not _plain(value):
            raise ConfigError(
                f"{spec!r}: value of {kw.arg!r} must be a literal (number, string, bool, or a list of them)"
            )
        if kw.arg in params:
            raise ConfigError(f"{spec!r}: {kw.arg!r} is given twice")
        params[kw.arg] = value
    return node.func.id, params
