"""The Assistants run operations of spec §1.2 as typed methods (:class:`RunOperations`).

A mixin of :class:`~gateway.upstream.client.UpstreamClient`: each method only builds the path and
body and hands them to the client's ``_call`` (non-streamed, typed result, non-2xx raised as
:class:`~gateway.errors.UpstreamHTTPError`) or ``_stream`` (a :class:`RunStream` to enter).
IDs are quoted as single path segments; the ``stream`` flag of each body is forced to match the
method (``gateway.upstream.body.with_stream_flag``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from parsers.assistants import Message, Run, RunStep

from ..body import Body, Query, QueryValue, path_id, with_stream_flag
from .objects import Page, decode_message_page, decode_run, decode_step_page
from .stream import RunStream

__all__ = ["RunOperations"]

T = TypeVar("T")


def _run_path(thread_id: str, run_id: str, rest: str = "") -> str:
    return f"/threads/{path_id(thread_id)}/runs/{path_id(run_id)}{rest}"


def _tool_outputs_body(tool_outputs: Sequence[Mapping[str, Any]], stream: bool) -> bytes:
    return with_stream_flag({"tool_outputs": list(tool_outputs)}, stream)


class RunOperations:
    """Create, stream, submit, cancel, retrieve and list; see the client for the shared keywords."""

    __slots__ = ()

    async def _call(
        self,
        method: str,
        path: str,
        decode: Callable[[bytes], T],
        *,
        body: bytes | None = None,
        query: Query = None,
        api_key: str | None,
        headers: Mapping[str, str] | None,
    ) -> T:
        raise NotImplementedError

    def _stream(
        self,
        path: str,
        body: bytes,
        *,
        query: Query = None,
        api_key: str | None,
        headers: Mapping[str, str] | None,
        run_id: str | None = None,
        thread_id: str | None = None,
        max_retries: int | None = None,
    ) -> RunStream:
        raise NotImplementedError

    async def create_run(
        self,
        thread_id: str,
        body: Body,
        *,
        query: Query = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Run:
        """``POST /threads/{thread_id}/runs`` (spec §1.2); ``query`` e.g. ``{"include": [...]}``."""
        return await self._call(
            "POST",
            f"/threads/{path_id(thread_id)}/runs",
            decode_run,
            body=with_stream_flag(body, False),
            query=query,
            api_key=api_key,
            headers=headers,
        )

    def stream_run(
        self,
        thread_id: str,
        body: Body,
        *,
        query: Query = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> RunStream:
        """Streamed :meth:`create_run`: use as ``async with ... as stream``."""
        return self._stream(
            f"/threads/{path_id(thread_id)}/runs",
            with_stream_flag(body, True),
            query=query,
            api_key=api_key,
            headers=headers,
            thread_id=thread_id,
            max_retries=max_retries,
        )

    async def create_thread_and_run(
        self,
        body: Body,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Run:
        """``POST /threads/runs``."""
        return await self._call(
            "POST",
            "/threads/runs",
            decode_run,
            body=with_stream_flag(body, False),
            api_key=api_key,
            headers=headers,
        )

    def stream_thread_and_run(
        self,
        body: Body,
        *,
        query: Query = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> RunStream:
        """Streamed :meth:`create_thread_and_run`; its first event is ``thread.created``."""
        return self._stream(
            "/threads/runs",
            with_stream_flag(body, True),
            query=query,
            api_key=api_key,
            headers=headers,
            max_retries=max_retries,
        )

    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, Any]],
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Run:
        """``POST .../submit_tool_outputs`` with every pending output at once (spec §1.3).

        ``tool_outputs`` items are ``{"tool_call_id": ..., "output": <str>}``."""
        return await self._call(
            "POST",
            _run_path(thread_id, run_id, "/submit_tool_outputs"),
            decode_run,
            body=_tool_outputs_body(tool_outputs, False),
            api_key=api_key,
            headers=headers,
        )

    def stream_submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        tool_outputs: Sequence[Mapping[str, Any]],
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> RunStream:
        """Streamed :meth:`submit_tool_outputs`: the continuation of the same run (spec §2.3)."""
        return self._stream(
            _run_path(thread_id, run_id, "/submit_tool_outputs"),
            _tool_outputs_body(tool_outputs, True),
            api_key=api_key,
            headers=headers,
            run_id=run_id,
            thread_id=thread_id,
            max_retries=max_retries,
        )

    async def cancel_run(
        self,
        thread_id: str,
        run_id: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Run:
        """``POST .../cancel`` (no body); the Run normally comes back ``cancelling`` (spec §5)."""
        return await self._call(
            "POST",
            _run_path(thread_id, run_id, "/cancel"),
            decode_run,
            api_key=api_key,
            headers=headers,
        )

    async def retrieve_run(
        self,
        thread_id: str,
        run_id: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Run:
        """``GET /threads/{thread_id}/runs/{run_id}``."""
        return await self._call(
            "GET",
            _run_path(thread_id, run_id),
            decode_run,
            api_key=api_key,
            headers=headers,
        )

    async def list_messages(
        self,
        thread_id: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **query: QueryValue | None,
    ) -> Page[Message]:
        """``GET /threads/{thread_id}/messages``; query: ``limit, order, after, before, run_id``."""
        return await self._call(
            "GET",
            f"/threads/{path_id(thread_id)}/messages",
            decode_message_page,
            query=query,
            api_key=api_key,
            headers=headers,
        )

    async def list_run_steps(
        self,
        thread_id: str,
        run_id: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **query: QueryValue | None,
    ) -> Page[RunStep]:
        """``GET .../runs/{run_id}/steps``; query: ``limit, order, after, before, include``."""
        return await self._call(
            "GET",
            _run_path(thread_id, run_id, "/steps"),
            decode_step_page,
            query=query,
            api_key=api_key,
            headers=headers,
        )
