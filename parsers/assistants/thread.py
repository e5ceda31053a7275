"""The Thread object (spec §4.6), the payload of ``thread.created``."""

from __future__ import annotations

from ._common import Metadata, Model, ToolResources

__all__ = ["Thread"]


class Thread(Model, frozen=True):
    """``object: "thread"``; the spec's example omits ``tool_resources``.

    The ``enabled`` flag the event schema adds at the top level of ``thread.created`` is a spec
    artefact (§3) and is not modelled.
    """

    id: str
    object: str
    created_at: int = 0
    tool_resources: ToolResources | None = None
    metadata: Metadata | None = None
