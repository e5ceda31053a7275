"""The serve benchmark's creator: the official ``openai`` SDK sets up an assistant and a thread and
streams one run, timing when the bytes of each numbered event arrive."""

from __future__ import annotations

import re
import time

from _serve_clients import SSE_ID

__all__ = ["sdk_setup", "sdk_stream"]

_SSE_EVENT = re.compile(rb"(?m)^event: ")


def sdk_setup(base: str) -> tuple[str, str]:
    from openai import OpenAI

    with OpenAI(base_url=base + "/v1", api_key="bench", max_retries=0) as client:
        assistant = client.beta.assistants.create(model="gpt-4o")
        thread = client.beta.threads.create()
    return assistant.id, thread.id


async def sdk_stream(base: str, assistant_id: str, thread_id: str) -> tuple[int, dict[int, int]]:
    """Stream one run through the SDK's raw streaming response: the number of events, and when
    the bytes of each numbered one arrived (its ``id:`` line). Bytes, not the SDK's typed events:
    the lag is then the server's doing, not the SDK's own parsing (about 11,000 events/s)."""
    from openai import AsyncOpenAI

    arrivals: dict[int, int] = {}
    events = 0
    tail = b""
    # a number is a per-operation timeout (connect, each read), never a total one
    async with (
        AsyncOpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=120.0) as client,
        client.beta.threads.runs.with_streaming_response.create(
            thread_id=thread_id, assistant_id=assistant_id, stream=True
        ) as response,
    ):
        async for chunk in response.iter_bytes():
            now = time.monotonic_ns()
            buf = tail + chunk
            end = buf.rfind(b"\n\n")
            if end < 0:
                tail = buf
                continue
            tail = buf[end + 2 :]
            events += len(_SSE_EVENT.findall(buf, 0, end + 2))
            for seq in SSE_ID.findall(buf, 0, end + 2):
                arrivals[int(seq)] = now
    return events, arrivals
