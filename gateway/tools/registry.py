"""Python tool handlers: the ``@tool`` marker and the ``ToolRegistry`` that collects marked functions.

The decorator only tags a function (an attribute holding its tool name); nothing is registered at
import time, so importing a tools module twice, or in two gateways in one process, is harmless.
A registry is built explicitly::

    registry = ToolRegistry.from_module("my_pkg.tools")   # what `runcast serve --tools` does
    registry.register(get_weather)                         # code that embeds runcast
    registry.register(lookup, name="crm_lookup")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar, overload

from gateway.errors import ConfigError

__all__ = ["ToolRegistry", "tool", "tool_name"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__runcast_tool__"


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(*, name: str | None = None) -> Callable[[F], F]: ...
def tool(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark ``fn`` as a tool handler named ``name`` (default: the function's ``__name__``).

    Usable bare (``@tool``) or with arguments (``@tool(name="get_weather")``). The function is
    returned unchanged and stays an ordinary callable.
    """

    def mark(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@tool expects a callable, got {func!r}")
        tool_name = _name_of(func) if name is None else name
        _check_name(tool_name)
        setattr(func, _MARK, tool_name)
        return func

    if fn is not None:
        return mark(fn)
    return mark


def tool_name(fn: Callable[..., Any]) -> str | None:
    """The tool name ``@tool`` gave ``fn``, or None when it is not marked."""
    marked = getattr(fn, _MARK, None)
    return marked if isinstance(marked, str) else None


class ToolRegistry:
    """Tool name -> Python callable. Names are unique: registering a name twice is a ConfigError."""

    def __init__(self) -> None:
        self._tools: dict[str, Callable[..., Any]] = {}

    @classmethod
    def from_module(cls, *modules: str | ModuleType) -> ToolRegistry:
        """A registry holding every ``@tool`` function of the given modules (imported by name)."""
        registry = cls()
        for module in modules:
            registry.add_module(module)
        return registry

    def add_module(self, module: str | ModuleType) -> list[str]:
        """Import ``module`` (a dotted name or a module object) and register its ``@tool`` functions.

        Returns the names registered, in definition order.
        """
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(f"cannot import tools module {module!r}: {exc}") from exc
            except Exception as exc:
                # Application code failing at import (syntax error, missing setting...) is a
                # configuration problem of the gateway too, reported with its cause.
                raise ConfigError(
                    f"tools module {module!r} failed to import: {type(exc).__name__}: {exc}"
                ) from exc
        added: list[str] = []
        for value in list(vars(module).values()):
            marked = tool_name(value) if callable(value) else None
            if marked is None or self._tools.get(marked) is value:
                # An alias of an already registered function is the same tool, not a duplicate.
                continue
            self.register(value, name=marked)
            added.append(marked)
        return added

    def register(self, fn: Callable[..., Any], name: str | None = None) -> Callable[..., Any]:
        """Register ``fn`` under ``name`` (default: its ``@tool`` name, else its ``__name__``)."""
        if not callable(fn):
            raise TypeError(f"a tool handler must be callable, got {fn!r}")
        tool_name_ = name if name is not None else (tool_name(fn) or _name_of(fn))
        _check_name(tool_name_)
        if tool_name_ in self._tools:
            raise ConfigError(
                f"tool {tool_name_!r} is registered twice "
                f"({_describe(self._tools[tool_name_])} and {_describe(fn)})"
            )
        self._tools[tool_name_] = fn
        return fn

    def get(self, name: str) -> Callable[..., Any] | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tools))

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({sorted(self._tools)!r})"


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str):
        raise ConfigError(f"{fn!r} has no __name__; give the tool a name explicitly")
    return name


def _check_name(name: object) -> None:
    # "*" is the fallback webhook's name and could never be called by a model.
    if not isinstance(name, str) or not name or name == "*":
        raise ConfigError(f"invalid tool name {name!r}")


def _describe(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{qualname}"
