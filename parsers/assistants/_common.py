"""Base Struct classes and the small objects shared by runs, steps, messages and threads.

Every model follows the tolerant-reader rules of the spec (§4 conventions, Appendix C): unknown
keys are ignored (msgspec's default), enum-like fields are plain ``str`` so new values decode, and
every field except ``id``/``object``/union tags has a default because the openapi "required" marks
are not reliable. Models are frozen (one decoded payload is shared by every consumer) and created
with ``gc=False``: decoded JSON cannot form reference cycles, and skipping GC tracking makes the
per-delta allocations cheaper.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

__all__ = [
    "IncompleteDetails",
    "LastError",
    "Metadata",
    "Model",
    "Tagged",
    "ToolResources",
    "ToolResourcesCodeInterpreter",
    "ToolResourcesFileSearch",
    "UnknownVariant",
    "Usage",
]

Metadata: TypeAlias = dict[str, Any]
"""``metadata`` objects: string to string per spec §4.1, typed loosely so a lax server cannot break decoding."""


class Model(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every payload model."""


class Tagged(Model, tag_field="type", frozen=True):
    """Base of every tagged-union member: the JSON ``type`` key selects the subclass (spec §4.8)."""


class UnknownVariant(Tagged, tag="unknown", frozen=True):
    """A union member whose ``type`` this version does not know.

    The spec allows new content, tool, annotation and step types to appear. msgspec rejects
    unknown tags, so the decoders retry such payloads on a tolerant path that replaces each
    unknown member with this value (see ``_tolerant``). ``original_type`` is the ``type`` the
    upstream sent ("" when it was missing or not a string); ``raw`` is the member as received.
    """

    original_type: str = ""
    raw: dict[str, Any] = msgspec.field(default_factory=dict)


class Usage(Model, frozen=True):
    """Token counts of a run or step (null until the step/run finishes, spec §4.1)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class LastError(Model, frozen=True):
    """``last_error`` of a run or step: ``code`` is server_error, rate_limit_exceeded, invalid_prompt..."""

    code: str = ""
    message: str = ""


class IncompleteDetails(Model, frozen=True):
    """Why a run or message is incomplete (``reason``: a token limit, content_filter, run_*)."""

    reason: str | None = None


class ToolResourcesCodeInterpreter(Model, frozen=True):
    file_ids: list[str] | None = None


class ToolResourcesFileSearch(Model, frozen=True):
    vector_store_ids: list[str] | None = None


class ToolResources(Model, frozen=True):
    """``tool_resources`` of a thread (spec §4.6) or run (present in examples, absent in the schema)."""

    code_interpreter: ToolResourcesCodeInterpreter | None = None
    file_search: ToolResourcesFileSearch | None = None
