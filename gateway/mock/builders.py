"""Building stored objects from request bodies: user messages and new runs (spec §1.3, §4).

A run takes its model, instructions, tools, sampling settings and response format from the request
when given, else from its assistant; ``expires_at`` is ``created_at`` plus the expiry window.
"""

from __future__ import annotations

import math

from gateway.mock import lifecycle as lc
from gateway.mock.objects import (
    Assistant,
    ImageFileContent,
    ImageUrlContent,
    Message,
    Run,
    Text,
    TextContent,
)
from gateway.mock.requests import (
    CreateMessageRequest,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    ImageFilePart,
    TextPart,
    TruncationStrategy,
)

__all__ = ["new_run", "user_message"]

_AUTO_TRUNCATION = TruncationStrategy(type="auto")


def new_run(
    thread_id: str,
    assistant: Assistant,
    req: CreateRunRequest | CreateThreadAndRunRequest,
    instructions: str,
    *,
    expires_in: float,
) -> Run:
    created = lc.now()
    return Run(
        id=lc.new_id("run"),
        created_at=created,
        assistant_id=assistant.id,
        thread_id=thread_id,
        # spec §4.1: expires_at = created_at + the expiry window, while not terminal.
        expires_at=created + math.ceil(expires_in),
        model=req.model or assistant.model,
        instructions=instructions,
        tools=list(req.tools if req.tools is not None else assistant.tools),
        metadata=dict(req.metadata or {}),
        temperature=req.temperature if req.temperature is not None else assistant.temperature,
        top_p=req.top_p if req.top_p is not None else assistant.top_p,
        max_completion_tokens=req.max_completion_tokens,
        max_prompt_tokens=req.max_prompt_tokens,
        truncation_strategy=req.truncation_strategy or _AUTO_TRUNCATION,
        response_format=req.response_format or assistant.response_format or "auto",
        tool_choice=req.tool_choice or "auto",
        parallel_tool_calls=True if req.parallel_tool_calls is None else req.parallel_tool_calls,
    )


def user_message(thread_id: str, req: CreateMessageRequest) -> Message:
    created = lc.now()
    if isinstance(req.content, str):
        content: list[TextContent | ImageFileContent | ImageUrlContent] = [
            TextContent(text=Text(value=req.content))
        ]
    else:
        content = []
        for part in req.content:
            if isinstance(part, TextPart):
                content.append(TextContent(text=Text(value=part.text)))
            elif isinstance(part, ImageFilePart):
                content.append(ImageFileContent(image_file=part.image_file))
            else:
                content.append(ImageUrlContent(image_url=part.image_url))
    return Message(
        id=lc.new_id("msg"),
        created_at=created,
        thread_id=thread_id,
        status="completed",
        completed_at=created,
        role=req.role,
        content=content,
        attachments=list(req.attachments or ()),
        metadata=dict(req.metadata or {}),
    )
