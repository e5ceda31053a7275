"""The Responses stream events of hosted tools, shell calls, audio and compaction.

Progress events (``in_progress``, ``searching``, ``completed`` ...) carry only the item they are
about; argument and code deltas append to the item like function-call arguments do. Names follow
the openai SDK's classes without the ``Response`` prefix (reference responses-and-chat.md §1.3).
"""

from __future__ import annotations

import msgspec

from ._base import Event, ItemEvent
from .models import JSONObject

__all__ = [
    "AudioDeltaEvent",
    "AudioDoneEvent",
    "AudioTranscriptDeltaEvent",
    "AudioTranscriptDoneEvent",
    "CodeInterpreterCallCodeDeltaEvent",
    "CodeInterpreterCallCodeDoneEvent",
    "CodeInterpreterCallCompletedEvent",
    "CodeInterpreterCallInProgressEvent",
    "CodeInterpreterCallInterpretingEvent",
    "CompactionCompactingEvent",
    "FileSearchCallCompletedEvent",
    "FileSearchCallInProgressEvent",
    "FileSearchCallSearchingEvent",
    "ImageGenerationCallCompletedEvent",
    "ImageGenerationCallGeneratingEvent",
    "ImageGenerationCallInProgressEvent",
    "ImageGenerationCallPartialImageEvent",
    "McpCallArgumentsDeltaEvent",
    "McpCallArgumentsDoneEvent",
    "McpCallCompletedEvent",
    "McpCallFailedEvent",
    "McpCallInProgressEvent",
    "McpListToolsCompletedEvent",
    "McpListToolsFailedEvent",
    "McpListToolsInProgressEvent",
    "ShellCallCommandAddedEvent",
    "ShellCallCommandDeltaEvent",
    "ShellCallCommandDoneEvent",
    "ShellCallOutputContentDeltaEvent",
    "ShellCallOutputContentDoneEvent",
    "WebSearchCallCompletedEvent",
    "WebSearchCallInProgressEvent",
    "WebSearchCallSearchingEvent",
]


class WebSearchCallInProgressEvent(
    ItemEvent, frozen=True, tag="response.web_search_call.in_progress"
):
    pass


class WebSearchCallSearchingEvent(ItemEvent, frozen=True, tag="response.web_search_call.searching"):
    pass


class WebSearchCallCompletedEvent(ItemEvent, frozen=True, tag="response.web_search_call.completed"):
    pass


class FileSearchCallInProgressEvent(
    ItemEvent, frozen=True, tag="response.file_search_call.in_progress"
):
    pass


class FileSearchCallSearchingEvent(
    ItemEvent, frozen=True, tag="response.file_search_call.searching"
):
    pass


class FileSearchCallCompletedEvent(
    ItemEvent, frozen=True, tag="response.file_search_call.completed"
):
    pass


class CodeInterpreterCallInProgressEvent(
    ItemEvent, frozen=True, tag="response.code_interpreter_call.in_progress"
):
    pass


class CodeInterpreterCallInterpretingEvent(
    ItemEvent, frozen=True, tag="response.code_interpreter_call.interpreting"
):
    pass


class CodeInterpreterCallCompletedEvent(
    ItemEvent, frozen=True, tag="response.code_interpreter_call.completed"
):
    pass


class CodeInterpreterCallCodeDeltaEvent(
    ItemEvent, frozen=True, tag="response.code_interpreter_call_code.delta"
):
    delta: str = ""
    obfuscation: str | None = None


class CodeInterpreterCallCodeDoneEvent(
    ItemEvent, frozen=True, tag="response.code_interpreter_call_code.done"
):
    code: str = ""


class ImageGenerationCallInProgressEvent(
    ItemEvent, frozen=True, tag="response.image_generation_call.in_progress"
):
    pass


class ImageGenerationCallGeneratingEvent(
    ItemEvent, frozen=True, tag="response.image_generation_call.generating"
):
    pass


class ImageGenerationCallPartialImageEvent(
    ItemEvent, frozen=True, tag="response.image_generation_call.partial_image"
):
    partial_image_b64: str = ""
    partial_image_index: int = 0
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None


class ImageGenerationCallCompletedEvent(
    ItemEvent, frozen=True, tag="response.image_generation_call.completed"
):
    pass


class McpListToolsInProgressEvent(
    ItemEvent, frozen=True, tag="response.mcp_list_tools.in_progress"
):
    pass


class McpListToolsCompletedEvent(ItemEvent, frozen=True, tag="response.mcp_list_tools.completed"):
    pass


class McpListToolsFailedEvent(ItemEvent, frozen=True, tag="response.mcp_list_tools.failed"):
    pass


class McpCallInProgressEvent(ItemEvent, frozen=True, tag="response.mcp_call.in_progress"):
    pass


class McpCallCompletedEvent(ItemEvent, frozen=True, tag="response.mcp_call.completed"):
    pass


class McpCallFailedEvent(ItemEvent, frozen=True, tag="response.mcp_call.failed"):
    pass


class McpCallArgumentsDeltaEvent(ItemEvent, frozen=True, tag="response.mcp_call_arguments.delta"):
    delta: str = ""
    obfuscation: str | None = None


class McpCallArgumentsDoneEvent(ItemEvent, frozen=True, tag="response.mcp_call_arguments.done"):
    arguments: str = ""


class ShellCallCommandAddedEvent(Event, frozen=True, tag="response.shell_call_command.added"):
    output_index: int = 0
    command_index: int = 0
    command: str = ""


class ShellCallCommandDeltaEvent(Event, frozen=True, tag="response.shell_call_command.delta"):
    output_index: int = 0
    command_index: int = 0
    delta: str = ""
    obfuscation: str | None = None


class ShellCallCommandDoneEvent(Event, frozen=True, tag="response.shell_call_command.done"):
    output_index: int = 0
    command_index: int = 0
    command: str = ""


class ShellCallOutputContentDeltaEvent(
    ItemEvent, frozen=True, tag="response.shell_call_output_content.delta"
):
    """``delta`` is an object here: ``{"stdout": ..., "stderr": ...}``, either key optional."""

    command_index: int = 0
    delta: JSONObject = msgspec.field(default_factory=dict)


class ShellCallOutputContentDoneEvent(
    ItemEvent, frozen=True, tag="response.shell_call_output_content.done"
):
    command_index: int = 0
    output: list[JSONObject] = msgspec.field(default_factory=list)


class AudioDeltaEvent(Event, frozen=True, tag="response.audio.delta"):
    """``delta`` is base64 audio."""

    delta: str = ""


class AudioDoneEvent(Event, frozen=True, tag="response.audio.done"):
    pass


class AudioTranscriptDeltaEvent(Event, frozen=True, tag="response.audio.transcript.delta"):
    delta: str = ""


class AudioTranscriptDoneEvent(Event, frozen=True, tag="response.audio.transcript.done"):
    pass


class CompactionCompactingEvent(ItemEvent, frozen=True, tag="response.compaction.compacting"):
    """Added to the SDK union after the 58 of openai-python 3.3.1 (present in 3.63)."""
