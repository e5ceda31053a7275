"""The @tool marker and ToolRegistry (gateway/tools/registry.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway.tools
from gateway.errors import ConfigError
from gateway.tools import ToolRegistry, tool
from gateway.tools.registry import tool_name

HERE = Path(__file__).parent


def test_bare_decorator_names_the_tool_after_the_function() -> None:
    @tool
    def get_time(zone: str) -> str:
        return zone

    assert tool_name(get_time) == "get_time"
    assert get_time("UTC") == "UTC"  # still an ordinary function


def test_decorator_with_a_name() -> None:
    @tool(name="crm.lookup")
    def lookup() -> None:
        return None

    @tool()
    def plain() -> None:
        return None

    assert tool_name(lookup) == "crm.lookup"
    assert tool_name(plain) == "plain"


def test_decorator_alone_registers_nothing() -> None:
    @tool
    def orphan() -> None:
        return None

    assert "orphan" not in ToolRegistry()


def test_from_module_collects_marked_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    registry = ToolRegistry.from_module("runcast_sample_tools")
    # The alias of get_weather is the same tool; unmarked functions are not tools.
    assert registry.names() == ["get_weather", "lookup_customer"]
    fn = registry.get("lookup_customer")
    assert fn is not None and fn.__name__ == "find_customer"
    assert registry.get("not_a_tool") is None


def test_from_module_reports_a_missing_module() -> None:
    with pytest.raises(ConfigError, match="no_such_tools_module"):
        ToolRegistry.from_module("no_such_tools_module")


def test_register_for_embedding_code() -> None:
    def search(query: str) -> str:
        return query

    @tool(name="marked_name")
    def marked() -> None:
        return None

    registry = ToolRegistry()
    assert registry.register(search) is search
    registry.register(search, name="search_v2")
    registry.register(marked)
    assert registry.names() == ["search", "search_v2", "marked_name"]
    assert len(registry) == 3


def test_duplicate_names_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    def one() -> None:
        return None

    def other() -> None:
        return None

    registry = ToolRegistry()
    registry.register(one, name="get_weather")
    with pytest.raises(ConfigError, match="registered twice"):
        registry.register(other, name="get_weather")

    monkeypatch.syspath_prepend(str(HERE))
    with pytest.raises(ConfigError, match="'get_weather' is registered twice"):
        registry.add_module("runcast_sample_tools")


@pytest.mark.parametrize("name", ["", "*"])
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError):

        @tool(name=name)
        def handler() -> None:
            return None

    with pytest.raises(ConfigError):
        ToolRegistry().register(lambda: None, name=name)


def test_public_names_are_sorted_and_importable() -> None:
    names = gateway.tools.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(gateway.tools, name) is not None
