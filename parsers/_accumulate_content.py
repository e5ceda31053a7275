"""Merge state for message content parts (used by ``parsers.accumulate``).

Each part state is seeded from a full message's content, merges ``thread.message.delta``
fragments by the rules listed in ``parsers.accumulate`` (by content ``index``; annotations by
their own ``index``), and builds full content objects back. Growing strings are kept as lists of
fragments; :func:`joined` joins them once, at snapshot time. The index-keyed helpers
(:func:`joined`, :func:`index_of`, :func:`state_at`, :func:`build_states`) also serve the tool-call
states of ``parsers._accumulate_tools``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

from msgspec import UNSET

from .assistants import (
    Annotation,
    AnnotationDelta,
    ContentDelta,
    FileCitation,
    FileCitationAnnotation,
    FileCitationDeltaAnnotation,
    FilePath,
    FilePathAnnotation,
    FilePathDeltaAnnotation,
    ImageFile,
    ImageFileContent,
    ImageFileDeltaBlock,
    ImageURL,
    ImageURLContent,
    ImageURLDeltaBlock,
    MessageContent,
    RefusalContent,
    RefusalDeltaBlock,
    Text,
    TextContent,
    TextDeltaBlock,
    UnknownVariant,
)

__all__ = [
    "FRAGMENT_OVERHEAD",
    "PartState",
    "build_content",
    "build_states",
    "index_of",
    "joined",
    "merge_content",
    "seed_content",
    "state_at",
]

_S = TypeVar("_S")

FRAGMENT_OVERHEAD = 64
"""Bytes a kept text fragment costs beyond its characters: the str header (49 for ASCII), its list
slot and allocator rounding (CPython 3.11, 64-bit)."""


class _Builder(Protocol):
    def build(self) -> object: ...


def joined(fragments: list[str]) -> str:
    # Collapsing to the joined value keeps repeated snapshots linear in the new fragments only.
    if len(fragments) == 1:
        return fragments[0]
    value = "".join(fragments)
    fragments[:] = [value]
    return value


def index_of(raw: dict[str, object], default: int) -> int:
    index = raw.get("index")
    return index if isinstance(index, int) else default


def state_at(states: dict[int, Any], index: int, kind: type[_S]) -> _S:
    """The state at ``index`` if it is a ``kind``; otherwise a new ``kind`` replaces it (a
    different ``type`` at an index replaces the entry)."""
    state = states.get(index)
    if type(state) is not kind:
        state = states[index] = kind()
    return state


def build_states(states: Mapping[int, _Builder | UnknownVariant]) -> list[Any]:
    """The full objects in ``index`` order; unknown variants pass through as they came.

    ``list[Any]``: each caller's annotation names the item union (mypy would infer only the
    states' common base for it)."""
    return [
        state if isinstance(state, UnknownVariant) else state.build()
        for _, state in sorted(states.items())
    ]


class _AnnotationState:
    __slots__ = ("end_index", "file_id", "kind", "start_index", "text")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.text: list[str] = []
        self.start_index = 0
        self.end_index = 0
        self.file_id = ""

    @classmethod
    def seed(cls, annotation: FileCitationAnnotation | FilePathAnnotation) -> _AnnotationState:
        state = cls("file_citation" if type(annotation) is FileCitationAnnotation else "file_path")
        state.text.append(annotation.text)
        state.start_index = annotation.start_index
        state.end_index = annotation.end_index
        if isinstance(annotation, FileCitationAnnotation):
            state.file_id = annotation.file_citation.file_id
        else:
            state.file_id = annotation.file_path.file_id
        return state

    def merge(self, delta: FileCitationDeltaAnnotation | FilePathDeltaAnnotation) -> None:
        if delta.text is not UNSET:
            self.text.append(delta.text)
        if delta.start_index is not UNSET:
            self.start_index = delta.start_index
        if delta.end_index is not UNSET:
            self.end_index = delta.end_index
        ref = (
            delta.file_citation
            if isinstance(delta, FileCitationDeltaAnnotation)
            else delta.file_path
        )
        if ref is not UNSET and ref.file_id is not UNSET:
            self.file_id = ref.file_id

    def build(self) -> Annotation:
        text = joined(self.text)
        if self.kind == "file_citation":
            return FileCitationAnnotation(
                text=text,
                start_index=self.start_index,
                end_index=self.end_index,
                file_citation=FileCitation(file_id=self.file_id),
            )
        return FilePathAnnotation(
            text=text,
            start_index=self.start_index,
            end_index=self.end_index,
            file_path=FilePath(file_id=self.file_id),
        )


_AnnotationSlot: TypeAlias = _AnnotationState | UnknownVariant


class _TextPart:
    __slots__ = ("annotations", "fragments")

    def __init__(self) -> None:
        self.fragments: list[str] = []
        self.annotations: dict[int, _AnnotationSlot] = {}

    def merge_annotations(self, deltas: list[AnnotationDelta]) -> None:
        annotations = self.annotations
        for delta in deltas:
            if isinstance(delta, UnknownVariant):
                annotations[index_of(delta.raw, len(annotations))] = delta
                continue
            kind = "file_citation" if type(delta) is FileCitationDeltaAnnotation else "file_path"
            state = annotations.get(delta.index)
            if not isinstance(state, _AnnotationState) or state.kind != kind:
                state = annotations[delta.index] = _AnnotationState(kind)
            state.merge(delta)

    def build(self) -> TextContent:
        value = joined(self.fragments)
        return TextContent(text=Text(value=value, annotations=build_states(self.annotations)))


class _ImageFilePart:
    __slots__ = ("detail", "file_id")

    def __init__(self) -> None:
        self.file_id = ""
        self.detail: str | None = None

    def build(self) -> ImageFileContent:
        return ImageFileContent(image_file=ImageFile(file_id=self.file_id, detail=self.detail))


class _ImageURLPart:
    __slots__ = ("detail", "url")

    def __init__(self) -> None:
        self.url: list[str] = []
        self.detail: str | None = None

    def build(self) -> ImageURLContent:
        url = joined(self.url)
        return ImageURLContent(image_url=ImageURL(url=url, detail=self.detail))


class _RefusalPart:
    __slots__ = ("fragments",)

    def __init__(self) -> None:
        self.fragments: list[str] = []

    def build(self) -> RefusalContent:
        return RefusalContent(refusal=joined(self.fragments))


PartState: TypeAlias = _TextPart | _ImageFilePart | _ImageURLPart | _RefusalPart | UnknownVariant


def seed_content(content: list[MessageContent]) -> dict[int, PartState]:
    """Part states equal to a full message's ``content`` (its list position is the index)."""
    parts: dict[int, PartState] = {}
    for index, item in enumerate(content):
        part: PartState
        if isinstance(item, TextContent):
            part = _TextPart()
            part.fragments.append(item.text.value)
            for position, annotation in enumerate(item.text.annotations):
                part.annotations[position] = (
                    annotation
                    if isinstance(annotation, UnknownVariant)
                    else _AnnotationState.seed(annotation)
                )
        elif isinstance(item, ImageFileContent):
            part = _ImageFilePart()
            part.file_id = item.image_file.file_id
            part.detail = item.image_file.detail
        elif isinstance(item, ImageURLContent):
            part = _ImageURLPart()
            part.url.append(item.image_url.url)
            part.detail = item.image_url.detail
        elif isinstance(item, RefusalContent):
            part = _RefusalPart()
            part.fragments.append(item.refusal)
        else:
            part = item
        parts[index] = part
    return parts


def merge_content(parts: dict[int, PartState], deltas: list[ContentDelta]) -> int:
    """Merge one ``delta.content`` list into ``parts`` (by content ``index``).

    Returns the bytes the new text fragments hold (characters, up to 4 bytes each when not ASCII,
    plus :data:`FRAGMENT_OVERHEAD` each), or -1 when anything but plain text was merged."""
    kept = 0
    for delta in deltas:
        if type(delta) is TextDeltaBlock:
            # state_at inlined: nearly every delta lands here (bench/parse_bench.py).
            part = parts.get(delta.index)
            if type(part) is not _TextPart:
                part = parts[delta.index] = _TextPart()
            text = delta.text
            if text is not UNSET:
                value = text.value
                if value is not UNSET:
                    part.fragments.append(value)
                    if kept >= 0:
                        size = len(value) if value.isascii() else 4 * len(value)
                        kept += size + FRAGMENT_OVERHEAD
                if text.annotations is not UNSET:
                    part.merge_annotations(text.annotations)
                    kept = -1
            continue
        kept = -1
        if isinstance(delta, ImageFileDeltaBlock):
            image_part = state_at(parts, delta.index, _ImageFilePart)
            image = delta.image_file
            if image is not UNSET:
                if image.file_id is not UNSET:
                    image_part.file_id = image.file_id
                if image.detail is not UNSET:
                    image_part.detail = image.detail
        elif isinstance(delta, ImageURLDeltaBlock):
            url_part = state_at(parts, delta.index, _ImageURLPart)
            image_url = delta.image_url
            if image_url is not UNSET:
                if image_url.url is not UNSET:
                    url_part.url.append(image_url.url)
                if image_url.detail is not UNSET:
                    url_part.detail = image_url.detail
        elif isinstance(delta, RefusalDeltaBlock):
            refusal_part = state_at(parts, delta.index, _RefusalPart)
            if delta.refusal is not UNSET:
                refusal_part.fragments.append(delta.refusal)
        elif isinstance(delta, UnknownVariant):
            parts[index_of(delta.raw, len(parts))] = delta
    return kept


def build_content(parts: dict[int, PartState]) -> list[MessageContent]:
    return build_states(parts)
