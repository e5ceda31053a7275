"""The top-level ``parsers`` package re-exports its public surface, sorted, with no drift."""

from __future__ import annotations

import importlib

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


def test_re_exports_are_the_same_objects() -> None:
    from parsers.assistants import decode_event
    from parsers.sse import SSEDecoder

    assert parsers.decode_event is decode_event
    assert parsers.SSEDecoder is SSEDecoder
