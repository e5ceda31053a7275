"""The SSE frames of one stream, numbered from 0 (a response's ``sequence_number``): one writer,
readers pull.

Theory of operation. The response's driver appends each event's frame (``frames[n]`` carries
``sequence_number`` n) and wakes the readers; each reader is an HTTP stream that copies
``frames[cursor:]`` to its socket at its own pace, so a ``POST`` stream and any number of
``GET ?stream=true&starting_after=N`` streams read the same bytes without per-reader work in the
driver. A background response's log is retained whole, so a late reader can replay from 0 (spec:
reference responses-and-chat.md §2.2); a foreground one has only its creator and frames are
dropped once read, with the driver waiting (:meth:`drain`) while its reader lags more than
``max_lag`` frames, which bounds memory as TCP back-pressure would. Without a retained log and
without readers nothing needs encoding (:attr:`wanted` is False). A chat completion's log is a
foreground one, its chunks numbered from 0.

``close`` ends every reader after the last frame, optionally followed by a ``trailer`` without a
sequence number (``data: [DONE]``); ``cut_after`` makes the *creator's* stream lose its connection
after that frame (the ``drop`` scenarios), while the response goes on.
"""

from __future__ import annotations

import asyncio

__all__ = ["EventLog", "Reader"]


class Reader:
    """One stream's position in the log."""

    __slots__ = ("creator", "cursor")

    def __init__(self, cursor: int, *, creator: bool) -> None:
        self.cursor = cursor
        self.creator = creator


class EventLog:
    """See the module docstring."""

    __slots__ = ("_base", "_frames", "_progress", "_readers", "_wake", "closed", "cut_after",
                 "max_lag", "retain", "trailer")  # fmt: skip

    def __init__(self, *, retain: bool, max_lag: int) -> None:
        self.retain = retain
        self.max_lag = max_lag
        self._frames: list[bytes] = []
        self._base = 0  # sequence number of _frames[0]
        self._readers: list[Reader] = []
        self._wake = asyncio.Event()  # readers wait on it, the driver sets it
        self._progress = asyncio.Event()  # the driver waits on it, readers set it
        self.closed = False
        self.trailer = b""
        self.cut_after: int | None = None

    @property
    def next_seq(self) -> int:
        return self._base + len(self._frames)

    @property
    def wanted(self) -> bool:
        """Whether a frame appended now would ever be read."""
        return self.retain or bool(self._readers)

    def append(self, frame: bytes) -> None:
        self._frames.append(frame)

    def extend(self, frames: list[bytes]) -> None:
        self._frames.extend(frames)

    def skip(self, count: int = 1) -> None:
        """Take ``count`` sequence numbers without frames (nobody can read them)."""
        self._base += count

    def notify(self) -> None:
        """Wake every reader waiting for frames."""
        self._wake.set()
        self._wake = asyncio.Event()

    def cut(self) -> None:
        """Cut the creator's stream after the last frame appended so far."""
        if self.cut_after is None:
            self.cut_after = self.next_seq - 1

    def close(self, trailer: bytes = b"") -> None:
        self.trailer = trailer
        self.closed = True
        self.notify()

    def release(self) -> bool:
        """Stop retaining: drop every frame, once closed and unread; False if not yet possible."""
        if not self.closed or self._readers:
            return False
        self.retain = False
        self._trim()
        return True

    @property
    def held(self) -> int:
        """Frames held in memory."""
        return len(self._frames)

    # -- readers -----------------------------------------------------------------------------

    def attach(self, cursor: int, *, creator: bool) -> Reader:
        reader = Reader(max(cursor, self._base), creator=creator)
        self._readers.append(reader)
        return reader

    def detach(self, reader: Reader) -> None:
        if reader in self._readers:
            self._readers.remove(reader)
            self._trim()
            self._progress.set()

    def take(self, reader: Reader) -> tuple[bytes, str | None]:
        """The bytes ``reader`` has not had yet, and how its stream goes on after them.

        ``None``: wait for more; ``"end"``: the log is closed (the trailer follows the last
        frame); ``"cut"``: the creator's connection is to be cut here.
        """
        end = self.next_seq
        cut = self.cut_after if reader.creator else None
        if cut is not None and cut < end:
            end = cut + 1
        start = reader.cursor
        data = b"".join(self._frames[start - self._base : end - self._base])
        reader.cursor = max(start, end)
        if data:
            self._progress.set()
        if cut is not None and reader.cursor > cut:
            return data, "cut"
        if self.closed and reader.cursor >= self.next_seq:
            return data + self.trailer, "end"
        self._trim()
        return data, None

    async def wait(self) -> None:
        """Until the next :meth:`notify`."""
        await self._wake.wait()

    async def wait_closed(self) -> None:
        while not self.closed:
            await self._wake.wait()

    async def drain(self) -> None:
        """Wait while a reader of a log that is not retained lags more than ``max_lag`` frames."""
        while not self.retain and self._readers:
            behind = self.next_seq - min(r.cursor for r in self._readers)
            if behind <= self.max_lag:
                return
            self._progress.clear()
            await self._progress.wait()

    def _trim(self) -> None:
        if self.retain:
            return
        low = min((r.cursor for r in self._readers), default=self.next_seq)
        drop = low - self._base
        if drop > 0:
            del self._frames[:drop]
            self._base = low
