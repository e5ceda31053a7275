"""The process's log output: text or JSON lines on stderr, the ids in context, secrets redacted.

:func:`configure` installs one stderr handler on the root logger (``runcast serve`` calls it once
at start). ``text`` lines read ``time LEVEL logger: message [run_id=... thread_id=...]``; ``json``
lines are one object each: ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, the ids
in context (``run_id``, ``thread_id``, ``response_id``) and ``exception`` when there is one.

The ids come from context variables, so every log call made while handling a request or inside a
relay's task carries them without passing them along: :func:`bound` sets them around a request
(the HTTP middleware), :func:`bind` for the rest of a task (a relay once its run id is known;
tasks a request starts inherit its ids).

Redaction is the last step of formatting, so no logger anywhere can leak a secret: the configured
secrets (runcast's API keys, the token secret, the upstream key, the webhook secret) and anything
shaped like one (``Bearer ...``, ``?token=...``, ``sk-...`` keys, JWTs, a URL's ``user:password@``)
become ``***``.
:func:`redact` applies the same rules to other text leaving the process (trace spans' errors).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Literal
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

import orjson

__all__ = [
    "CREDENTIAL_CHARS",
    "MIN_MASKED_CHARS",
    "LogFormat",
    "LogLevel",
    "Redactor",
    "RepeatedLines",
    "bind",
    "bound",
    "configure",
    "context_ids",
    "credential_name",
    "credential_values",
    "formatter",
    "masked_url",
    "redact",
    "worth_a_line",
]

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

_RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("runcast_run_id", default=None)
_THREAD_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "runcast_thread_id", default=None
)
_RESPONSE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "runcast_response_id", default=None
)
_IDS = (("run_id", _RUN_ID), ("thread_id", _THREAD_ID), ("response_id", _RESPONSE_ID))

_SHAPES = (
    # RFC 6750 §2.1 bearer credentials, in headers echoed by a library or an error text.
    (re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"), r"\1***"),
    # Subscribe tokens travel in the query string (EventSource cannot set headers).
    (re.compile(r"(?i)([?&](?:token|access_token|api[_-]key|key)=)[^&\s\"'#]+"), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-***"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "***"),
    # A URL's userinfo (RFC 3986 §3.2.1): a Redis broker's or a webhook's password.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@'\"]*@"), r"\1***@"),
)
# What every match of each shape contains: in the text's casefold for the case-insensitive ones
# (case folding maps every letter the pattern's IGNORECASE accepts, such as the Kelvin sign for
# k, to the needle's), in the text itself for the others. A substring test costs a fraction of
# a regex pass, and most log lines, access lines above all, contain none of them.
_NEEDLES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("bearer",), True),
    (("token=", "key="), True),
    (("sk-",), False),
    (("eyJ",), False),
    (("://",), False),
)

_LEVELS: dict[LogLevel, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def context_ids() -> dict[str, str]:
    """The ids set in the current context (absent ones left out)."""
    return {name: value for name, var in _IDS if (value := var.get()) is not None}


def bind(
    *, run_id: str | None = None, thread_id: str | None = None, response_id: str | None = None
) -> None:
    """Set the given ids for the rest of the current context (a task: the relay of a run)."""
    for var, value in ((_RUN_ID, run_id), (_THREAD_ID, thread_id), (_RESPONSE_ID, response_id)):
        if value is not None:
            var.set(value)


@contextlib.contextmanager
def bound(
    *, run_id: str | None = None, thread_id: str | None = None, response_id: str | None = None
) -> Iterator[None]:
    """Set the given ids inside the ``with`` block only (a request: its handler and its logs)."""
    tokens = [
        var.set(value)
        for var, value in ((_RUN_ID, run_id), (_THREAD_ID, thread_id), (_RESPONSE_ID, response_id))
        if value is not None
    ]
    try:
        yield
    finally:
        for token in reversed(tokens):
            token.var.reset(token)


_CREDENTIAL_NAME = re.compile(
    r"key|token|secret|sig|code|pass|pwd|auth|credential|session|sas", re.IGNORECASE
)
CREDENTIAL_CHARS = 16
"""A URL's query value with a run of this many letters and digits is taken for a credential
whatever its name (a random token; ``api-version=2025-04-01-preview`` has none)."""
_TOKEN_RUN = re.compile(f"[A-Za-z0-9]{{{CREDENTIAL_CHARS}}}")
CREDENTIAL_VALUE_CHARS = 8
"""Fewest characters of a query value taken for a credential by its name (``?use_session=true``,
``?pass=1`` are no secrets, and masking them would mask every ``true`` of an answer)."""


def credential_name(name: str) -> bool:
    """Whether a query parameter named ``name`` is one for a credential: its name holds
    ``token``, ``key``, ``code``, ``sig``, ``secret``, ``pass``, ``auth``, ``session``...
    (``api_key``, ``accesstoken``, ``clientSecret``, ``X-Amz-Signature``). Words that merely
    hold one (``author``, ``unicode``) count too: what keeps their values in answers is that a
    value taken for a credential by its name has :data:`CREDENTIAL_VALUE_CHARS` or more."""
    return _CREDENTIAL_NAME.search(name) is not None


def credential_values(url: str) -> list[str]:
    """The query values of ``url`` (one runcast was configured with: the upstream's, a
    webhook's) that are credentials: named so (:func:`credential_name`) and of
    :data:`CREDENTIAL_VALUE_CHARS` characters or more, or holding a run of
    :data:`CREDENTIAL_CHARS` letters and digits (``?format=json&version=2024-06-01`` are not).
    Each as decoded, and as written in the URL when that differs."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    found: list[str] = []
    for pair in query.split("&"):
        raw = pair.partition("=")[2]
        for name, value in parse_qsl(pair, keep_blank_values=True):
            named = credential_name(name) and len(value) >= CREDENTIAL_VALUE_CHARS
            if named or _TOKEN_RUN.search(value):
                found.append(value)
                if raw != value:
                    found.append(raw)
    return found


MIN_MASKED_CHARS = 4
"""Shorter secrets are not masked by value: one of one to three characters would mask ordinary
text everywhere (every ``k`` of a log line or a tool's error output), and is guessed anyway."""


class Redactor:
    """Replaces known secrets and secret-shaped substrings of a log text with ``***``."""

    __slots__ = ("_encoded", "_secrets")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Each secret also as a URL query carries it (a key with `+`, `/` or `=`), longest first:
        # a secret containing another is replaced whole.
        given = sorted(
            {secret for secret in secrets if secret and len(secret) >= MIN_MASKED_CHARS},
            key=len,
            reverse=True,
        )
        forms = {
            form
            for secret in given
            for form in (secret, quote(secret, safe=""), quote_plus(secret, safe=""))
        }
        self._secrets = tuple(sorted(forms, key=len, reverse=True))
        # And in any other percent-encoding a client may send (lowercase hex, some characters
        # encoded and others not): only tried on a line holding a `%`.
        self._encoded = (
            re.compile("|".join(_any_encoding(secret) for secret in given)) if given else None
        )

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        if self._encoded is not None and "%" in text:
            text = self._encoded.sub("***", text)
        folded = None
        for (pattern, replacement), (needles, fold) in zip(_SHAPES, _NEEDLES, strict=True):
            if fold:
                if folded is None:
                    folded = text.casefold()
                haystack = folded
            else:
                haystack = text
            for needle in needles:
                if needle in haystack:
                    text = pattern.sub(replacement, text)
                    folded = None
                    break
        return text


def _any_encoding(secret: str) -> str:
    """A pattern matching ``secret`` with any of its characters percent-encoded (hex in either
    case; a space also as ``+``)."""
    parts = []
    for char in secret:
        encoded = "".join(
            f"%(?:{byte:02X}|{byte:02x})" if f"{byte:02X}" != f"{byte:02x}" else f"%{byte:02X}"
            for byte in char.encode()
        )
        alternatives = [re.escape(char), encoded] + (["\\+"] if char == " " else [])
        parts.append("(?:" + "|".join(alternatives) + ")")
    return "".join(parts)


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators, shown escaped
# in text lines: a request path or an upstream id carrying CR, LF, ESC or NEL would otherwise
# forge a line of its own, or rewrite the terminal showing it.
_UNPRINTABLE = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def _printable(text: str) -> str:
    return text if text.isprintable() else text.translate(_UNPRINTABLE)


def _block(text: str) -> str:
    """A traceback (or stack) kept on its lines, but escaped as a message is: each line's
    control characters shown escaped, and every line but the first that does not start with a
    space indented, so that what an exception's message holds (a tool's arguments, an upstream's
    text: anyone's) cannot start a line that reads as a record of its own."""
    lines = text.split("\n")
    return "\n".join(
        _printable(line) if i == 0 or line[:1] == " " or not line else "  " + _printable(line)
        for i, line in enumerate(lines)
    )


class _TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        record.message = _printable(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        # Not the record's cached exc_text alone: another handler may have cached it unescaped.
        if record.exc_info:
            text += "\n" + _block(self.formatException(record.exc_info))
        elif record.exc_text:
            text += "\n" + _block(record.exc_text)
        if record.stack_info:
            text += "\n" + _block(self.formatStack(record.stack_info))
        ids = context_ids()
        if ids:
            text += " [" + " ".join(f"{k}={_printable(v)}" for k, v in ids.items()) + "]"
        return self._redact(text)


class _JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._redact(record.getMessage()),
            **context_ids(),
        }
        if record.exc_info:
            line["exception"] = self._redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = self._redact(record.exc_text)
        try:
            return orjson.dumps(line).decode()
        except TypeError:
            # A lone surrogate (undecodable bytes a library logged, e.g. a client's tracestate):
            # written escaped, so the line stays one JSON object.
            return orjson.dumps(
                {k: v.encode("utf-8", "backslashreplace").decode() for k, v in line.items()}
            ).decode()


def worth_a_line(count: int) -> bool:
    """Whether the ``count``-th occurrence of a repeated warning gets a log line: the 1st, 10th,
    100th... so that a source repeating it endlessly (an upstream's broken events) writes a few
    lines, not one each."""
    while count % 10 == 0:
        count //= 10
    return count == 1


class RepeatedLines:
    """Counts a repeated line per key (a run, a stream) and says which occurrences get one
    (:func:`worth_a_line`): one request asking for 500 tool calls that all fail wrote 1,000
    lines. At most ``keys`` keys are counted, the least recently seen forgotten first."""

    __slots__ = ("_counts", "_keys")

    def __init__(self, keys: int = 1024) -> None:
        self._keys = keys
        self._counts: dict[str, int] = {}

    def count(self, key: str) -> int | None:
        """This occurrence's number for ``key`` when it deserves a line, else None."""
        counts = self._counts
        n = counts.pop(key, 0) + 1
        counts[key] = n
        if len(counts) > self._keys:
            del counts[next(iter(counts))]
        return n if worth_a_line(n) else None


def masked_url(url: str, *, path: bool = True) -> str:
    """``url`` as it may be shown: its userinfo (``user:password@``) and every query value,
    where credentials travel, become ``***``; the rest is left as written. With ``path=False``
    the path (a credential itself in a Slack-style webhook URL) becomes ``/***`` too, and the
    fragment goes."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{pair.partition('=')[0]}=***" if "=" in pair else pair for pair in parts.query.split("&")
    )
    if path:
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    shown_path = "/***" if parts.path.strip("/") else parts.path
    return urlunsplit((parts.scheme, netloc, shown_path, query, ""))


_active = Redactor()


def redact(text: str) -> str:
    """``text`` redacted as log lines are: the secrets of the last :func:`configure`, and
    anything shaped like a secret."""
    return _active(text)


def formatter(kind: LogFormat, secrets: Iterable[str | None] = ()) -> logging.Formatter:
    """The formatter of ``kind``, redacting ``secrets`` and secret-shaped text."""
    return _formatter(kind, Redactor(secrets))


def _formatter(kind: LogFormat, redactor: Redactor) -> logging.Formatter:
    return _JsonFormatter(redactor) if kind == "json" else _TextFormatter(redactor)


def configure(
    kind: LogFormat = "text", level: LogLevel = "info", secrets: Iterable[str | None] = ()
) -> logging.Handler:
    """Send every log record at ``level`` or above to stderr in ``kind``; returns the handler.

    Replaces the root logger's handlers, so calling it again reconfigures rather than doubles;
    :func:`redact` follows the same ``secrets`` from then on.
    """
    global _active
    _active = Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(kind, _active))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    # OpenTelemetry warns, with the member as sent, about each malformed `tracestate` a client
    # sends: one line per request, up to 8 KB each, that the client writes at will.
    logging.getLogger("opentelemetry.trace.span").setLevel(logging.ERROR)
    return handler
