"""The top-level ``parsers`` package re-exports its public surface, sorted, with no drift."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

import parsers

SUBMODULES = ("parsers.sse", "parsers.accumulate", "parsers.errors")


def ruff_order(names: list[str]) -> list[str]:
    # ruff RUF022 ("isort-style"): SCREAMING_CASE, then CamelCase, then the rest.
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n))


def test_all_is_sorted_and_resolves() -> None:
    assert parsers.__all__ == ruff_order(parsers.__all__)
    for name in parsers.__all__:
        assert getattr(parsers, name) is not None


@pytest.mark.parametrize("module_name", SUBMODULES)
def test_every_public_name_of_the_core_modules_is_re_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = set(module.__all__) - set(parsers.__all__)
    assert not missing, f"{module_name} exports {sorted(missing)} that parsers does not"


PROTOCOL_PACKAGES = {
    "parsers.responses": (
        "parsers.responses.models",
        "parsers.responses.events",
        "parsers.responses.tool_events",
        "parsers.responses.decode",
        "parsers.responses.reducer",
    ),
    "parsers.chat": ("parsers.chat.chunks", "parsers.chat.reducer"),
}
PROTOCOL_MODULES = [m for modules in PROTOCOL_PACKAGES.values() for m in modules]


def defined_public_names(module_name: str) -> set[str]:
    source = inspect.getsource(importlib.import_module(module_name))
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module_name", PROTOCOL_MODULES)
def test_protocol_module_all_is_sorted_and_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__ == ruff_order(module.__all__)
    assert set(module.__all__) == defined_public_names(module_name)


@pytest.mark.parametrize("package_name", sorted(PROTOCOL_PACKAGES))
def test_protocol_package_re_exports_every_module(package_name: str) -> None:
    package = importlib.import_module(package_name)
    assert package.__all__ == ruff_order(package.__all__)
    expected: set[str] = set()
    for module_name in PROTOCOL_PACKAGES[package_name]:
        module = importlib.import_module(module_name)
        expected.update(module.__all__)
        for name in module.__all__:
            assert getattr(package, name) is getattr(module, name)
    assert set(package.__all__) == expected


def test_re_exports_are_the_same_objects() -> None:
    from parsers.assistants import decode_event
    from parsers.sse import SSEDecoder

    assert parsers.decode_event is decode_event
    assert parsers.SSEDecoder is SSEDecoder
    from parsers import chat, responses

    assert parsers.decode_response_event is responses.decode_event
    assert parsers.decode_chunk is chat.decode_chunk
    assert parsers.ResponseAccumulator is responses.ResponseAccumulator
    assert parsers.ChatAccumulator is chat.ChatAccumulator
