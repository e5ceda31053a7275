"""Messages (spec §4.3) and message deltas (spec §4.4): content parts, annotations, attachments.

Delta Structs use ``msgspec.UNSET`` for "key absent": the first text delta may carry
``"annotations": []`` while later ones omit the key (spec §2.2).
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from ._common import IncompleteDetails, Metadata, Model, Tagged, UnknownVariant
from .run import CodeInterpreterTool, FileSearchTool

__all__ = [
    "Annotation",
    "AnnotationDelta",
    "Attachment",
    "AttachmentTool",
    "ContentDelta",
    "FileCitation",
    "FileCitationAnnotation",
    "FileCitationDelta",
    "FileCitationDeltaAnnotation",
    "FilePath",
    "FilePathAnnotation",
    "FilePathDelta",
    "FilePathDeltaAnnotation",
    "ImageFile",
    "ImageFileContent",
    "ImageFileDelta",
    "ImageFileDeltaBlock",
    "ImageURL",
    "ImageURLContent",
    "ImageURLDelta",
    "ImageURLDeltaBlock",
    "Message",
    "MessageContent",
    "MessageDelta",
    "MessageDeltaBody",
    "RefusalContent",
    "RefusalDeltaBlock",
    "Text",
    "TextContent",
    "TextDelta",
    "TextDeltaBlock",
]

# -- full objects ---------------------------------------------------------------------------------


class FileCitation(Model, frozen=True):
    file_id: str = ""


class FileCitationAnnotation(Tagged, tag="file_citation", frozen=True):
    # text is the marker substring of the part's value (e.g. 【4:0†src】); indices are positions in it.
    text: str = ""
    start_index: int = 0
    end_index: int = 0
    file_citation: FileCitation = msgspec.field(default_factory=FileCitation)


class FilePath(Model, frozen=True):
    file_id: str = ""


class FilePathAnnotation(Tagged, tag="file_path", frozen=True):
    text: str = ""
    start_index: int = 0
    end_index: int = 0
    file_path: FilePath = msgspec.field(default_factory=FilePath)


Annotation: TypeAlias = FileCitationAnnotation | FilePathAnnotation | UnknownVariant


class Text(Model, frozen=True):
    value: str = ""
    annotations: list[Annotation] = msgspec.field(default_factory=list)


class TextContent(Tagged, tag="text", frozen=True):
    text: Text = msgspec.field(default_factory=Text)


class ImageFile(Model, frozen=True):
    file_id: str = ""
    detail: str | None = None


class ImageFileContent(Tagged, tag="image_file", frozen=True):
    image_file: ImageFile = msgspec.field(default_factory=ImageFile)


class ImageURL(Model, frozen=True):
    url: str = ""
    detail: str | None = None


class ImageURLContent(Tagged, tag="image_url", frozen=True):
    image_url: ImageURL = msgspec.field(default_factory=ImageURL)


class RefusalContent(Tagged, tag="refusal", frozen=True):
    refusal: str = ""


MessageContent: TypeAlias = (
    TextContent | ImageFileContent | ImageURLContent | RefusalContent | UnknownVariant
)

AttachmentTool: TypeAlias = CodeInterpreterTool | FileSearchTool | UnknownVariant


class Attachment(Model, frozen=True):
    file_id: str | None = None
    tools: list[AttachmentTool] | None = None


class Message(Model, frozen=True):
    """``object: "thread.message"``: the payload of the non-delta ``thread.message.*`` events."""

    id: str
    object: str
    created_at: int = 0
    thread_id: str = ""
    status: str = ""
    incomplete_details: IncompleteDetails | None = None
    completed_at: int | None = None
    incomplete_at: int | None = None
    role: str = ""
    content: list[MessageContent] = msgspec.field(default_factory=list)
    # null for user-authored messages.
    assistant_id: str | None = None
    run_id: str | None = None
    attachments: list[Attachment] | None = None
    metadata: Metadata | None = None


# -- deltas ---------------------------------------------------------------------------------------


class FileCitationDelta(Model, frozen=True):
    file_id: str | UnsetType = UNSET
    # quote exists only in the delta schema (spec §4.4).
    quote: str | UnsetType = UNSET


class FileCitationDeltaAnnotation(Tagged, tag="file_citation", frozen=True):
    # index is the position in the part's annotations (spec §2.5): the merge key, so required.
    index: int
    text: str | UnsetType = UNSET
    start_index: int | UnsetType = UNSET
    end_index: int | UnsetType = UNSET
    file_citation: FileCitationDelta | UnsetType = UNSET


class FilePathDelta(Model, frozen=True):
    file_id: str | UnsetType = UNSET


class FilePathDeltaAnnotation(Tagged, tag="file_path", frozen=True):
    index: int
    text: str | UnsetType = UNSET
    start_index: int | UnsetType = UNSET
    end_index: int | UnsetType = UNSET
    file_path: FilePathDelta | UnsetType = UNSET


AnnotationDelta: TypeAlias = FileCitationDeltaAnnotation | FilePathDeltaAnnotation | UnknownVariant


class TextDelta(Model, frozen=True):
    value: str | UnsetType = UNSET
    annotations: list[AnnotationDelta] | UnsetType = UNSET


class TextDeltaBlock(Tagged, tag="text", frozen=True):
    # index is the content-part position (spec §4.4 marks it required): the merge key.
    index: int
    text: TextDelta | UnsetType = UNSET


class ImageFileDelta(Model, frozen=True):
    file_id: str | UnsetType = UNSET
    detail: str | UnsetType | None = UNSET


class ImageFileDeltaBlock(Tagged, tag="image_file", frozen=True):
    index: int
    image_file: ImageFileDelta | UnsetType = UNSET


class ImageURLDelta(Model, frozen=True):
    url: str | UnsetType = UNSET
    detail: str | UnsetType | None = UNSET


class ImageURLDeltaBlock(Tagged, tag="image_url", frozen=True):
    index: int
    image_url: ImageURLDelta | UnsetType = UNSET


class RefusalDeltaBlock(Tagged, tag="refusal", frozen=True):
    index: int
    refusal: str | UnsetType = UNSET


ContentDelta: TypeAlias = (
    TextDeltaBlock | ImageFileDeltaBlock | ImageURLDeltaBlock | RefusalDeltaBlock | UnknownVariant
)


class MessageDeltaBody(Model, frozen=True):
    role: str | UnsetType = UNSET
    content: list[ContentDelta] | UnsetType = UNSET


class MessageDelta(Model, frozen=True):
    """``object: "thread.message.delta"``: a message fragment; only ``id`` locates the message."""

    id: str
    object: str
    delta: MessageDeltaBody = msgspec.field(default_factory=MessageDeltaBody)
