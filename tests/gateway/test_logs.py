"""gateway.logs: the JSON and text formats, ids from the context, redaction."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import logs


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("runcast.test", logging.WARNING, __file__, 1, message, args, info)


def test_json_line_has_the_fields_and_the_ids_in_context() -> None:
    fmt = logs.formatter("json")
    with logs.bound(run_id="run_1", thread_id="thread_1"):
        line = fmt.format(_record("hello %s", "world"))
    record = orjson.loads(line)
    assert record.pop("time").endswith("Z")
    assert record == {
        "level": "warning",
        "logger": "runcast.test",
        "message": "hello world",
        "run_id": "run_1",
        "thread_id": "thread_1",
    }
    assert "run_id" not in orjson.loads(fmt.format(_record("after")))


def test_text_line_names_the_ids() -> None:
    fmt = logs.formatter("text")
    with logs.bound(response_id="resp_9"):
        line = fmt.format(_record("x"))
    assert line.endswith("WARNING runcast.test: x [response_id=resp_9]")


@pytest.mark.parametrize(
    "text",
    [
        "key my-configured-secret-value in a message",
        "headers {'Authorization': 'Bearer abc.def'}",
        "GET /streams/runs/run_1?since=3&token=abc.def.ghi",
        "upstream said: invalid key sk-proj-0123456789abcdefghij",
        "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "broker redis://:redisPW@127.0.0.1:6379/0, node n1",
        "upstream http://user:upPW@10.0.0.1:8000/v1",
        "webhook HTTPS://hookPW@h.example/hook failed",
        "GET /v1/models?api-key=abc.def 401",
    ],
)
def test_secrets_and_secret_shapes_are_redacted(text: str) -> None:
    redact = logs.Redactor(["my-configured-secret-value", None, ""])
    out = redact(text)
    leaks = ("my-configured-secret-value", "abc.def", "0123456789abcdefghij", "eyJ", "PW@", "PW")
    for leaked in leaks:
        assert leaked not in out
    assert "***" in out


def test_a_secret_too_short_to_mask_leaves_ordinary_text_alone() -> None:
    text = "tool lookup failed: KeyError 'k' in kwargs"
    assert logs.Redactor(["k", "ok", "err"])(text) == text
    assert logs.Redactor(["sk-1"])("key sk-1 refused") == "key *** refused"


@pytest.mark.parametrize(
    "text",
    [
        "GET /v1/models?key=Kx%2By%2Fz%3Dw%20q 401",
        "GET /v1/models?x=Kx%2By%2Fz%3Dw+q 401",
        "GET /v1/models?x=Kx+y/z=w q 401",
    ],
)
def test_a_configured_secret_is_redacted_in_its_url_encoded_forms(text: str) -> None:
    # A caller that puts a key with URL-special characters in a query string sends it encoded.
    out = logs.Redactor(["Kx+y/z=w q"])(text)
    assert "Kx" not in out
    assert out.startswith("GET /v1/models?") and out.endswith(" 401")


def _every_shape(text: str) -> str:
    # Every pattern run over every text: what the redactor's substring tests may only speed up.
    for pattern, replacement in logs._SHAPES:
        text = pattern.sub(replacement, text)
    return text


_PIECES = [
    "Bearer ", "BEARER\t", "bEaReR  ", "\u212aey=", "?token=", "&TOKEN=", "&access_token=",
    "?api_key=", "?Api-Key=", "?Key=", "sk-", "http://", "redis://", "u:p@", ":pw@", "@", "/", "sk-proj-0123456789abcdefghij", "eyJ", "eyJa.b.c", "abc", "=",
    "&", "?", " ", ".", "-", "\u017f", "\u0130", "ß", "\u212a",
]  # fmt: skip


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=4), max_size=12).map("".join))
def test_the_redactor_redacts_exactly_what_every_pattern_would(text: str) -> None:
    assert logs.Redactor()(text) == _every_shape(text)


def test_exceptions_are_redacted_too() -> None:
    line = orjson.loads(logs.formatter("json").format(_record("failed", exc=True)))
    assert "ValueError" in line["exception"]
    assert "abcdefghij" not in line["exception"]


@pytest.mark.asyncio
async def test_bind_stays_in_its_task_and_children_inherit() -> None:
    seen: dict[str, dict[str, str]] = {}

    async def child() -> None:
        seen["child"] = logs.context_ids()

    async def relay() -> None:
        logs.bind(run_id="run_2", thread_id="thread_2")
        await asyncio.create_task(child())
        seen["relay"] = logs.context_ids()

    await asyncio.create_task(relay())
    assert seen["relay"] == seen["child"] == {"run_id": "run_2", "thread_id": "thread_2"}
    assert logs.context_ids() == {}


def test_configure_replaces_the_root_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    try:
        logs.configure("json", "warning", ["hidden-value"])
        handler = logs.configure("json", "warning", ["hidden-value"])
        assert [h for h in root.handlers if isinstance(h, logging.StreamHandler)] == [handler]
        logging.getLogger("runcast.x").info("dropped")
        logging.getLogger("runcast.x").warning("shown hidden-value")
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    assert orjson.loads(line)["message"] == "shown ***"


def test_a_repeated_warning_is_worth_a_line_at_each_power_of_ten() -> None:
    lines = [n for n in range(1, 100_001) if logs.worth_a_line(n)]
    assert lines == [1, 10, 100, 1_000, 10_000, 100_000]


def test_masked_url_can_mask_the_path() -> None:
    url = "https://user:pw@hooks.example:8443/services/T0001/B0002/SECRET?code=KEY#frag"
    assert (
        logs.masked_url(url)
        == "https://***@hooks.example:8443/services/T0001/B0002/SECRET?code=***#frag"
    )
    assert logs.masked_url(url, path=False) == "https://***@hooks.example:8443/***?code=***"
    assert logs.masked_url("http://h:1/", path=False) == "http://h:1/"


def test_a_lone_surrogate_keeps_the_json_line_one_object() -> None:
    # OpenTelemetry logs a client's undecodable tracestate byte as a lone surrogate: orjson
    # refused it, and logging wrote a 53-line traceback to stderr instead, per request.
    line = logs.formatter("json").format(_record("Member doesn't match: %s", "k=\udc9b"))
    assert orjson.loads(line)["message"] == "Member doesn't match: k=\\udc9b"


@pytest.mark.parametrize("forged", ["\r", "\n", "\x1b[2K", "\x85", "\u2028", "\x00", "\x7f"])
def test_text_lines_show_control_characters_escaped(forged: str) -> None:
    # A request path or an upstream id with CR, LF, ESC or NEL forged a line of its own (or
    # rewrote the terminal showing the log).
    fmt = logs.formatter("text")
    with logs.bound(run_id=f"run_1{forged}x"):
        line = fmt.format(_record("GET /v1/models%sFAKE CRITICAL line", forged))
    assert line.isprintable()
    assert "FAKE CRITICAL line [run_id=run_1\\" in line


def test_a_traceback_keeps_its_lines_in_text() -> None:
    line = logs.formatter("text").format(_record("failed", exc=True))
    assert "\nTraceback (most recent call last):\n" in line


def test_a_traceback_cannot_forge_a_line_in_text() -> None:
    # Only the message was escaped: an exception quoting a model's tool arguments wrote a line
    # of its own into the log, and raw terminal escapes.
    forged = "bad args\n2026-01-01 00:00:00,000 ERROR runcast: FORGED \x1b[2J\r\u2028x"
    try:
        raise ValueError(forged)
    except ValueError:
        record = logging.LogRecord(
            "runcast", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    fmt = logs.formatter("text")
    for text in (fmt.format(record), fmt.format(_cached(record))):
        lines = text.split("\n")
        assert lines[1] == "Traceback (most recent call last):"
        assert all(line.isprintable() for line in lines)
        assert not [line for line in lines[1:] if not line.startswith((" ", "Traceback"))]
        assert "  2026-01-01 00:00:00,000 ERROR runcast: FORGED \\x1b[2J\\x0d\\u2028x" in lines


def _cached(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` as another handler left it: its traceback formatted, unescaped, in exc_text."""
    record.exc_text = (
        logging.Formatter().formatException(record.exc_info) if record.exc_info else None
    )
    record.exc_info = None
    return record


def test_configure_quiets_opentelemetrys_per_request_tracestate_warnings() -> None:
    logs.configure("json", "info")
    try:
        assert not logging.getLogger("opentelemetry.trace.span").isEnabledFor(logging.WARNING)
    finally:
        logs.configure("text", "info")


@pytest.mark.parametrize(
    "text",
    [
        "GET /v1/models?k=rk%2fZm9v%2bYmFy%3dSecret9 401",  # lowercase hex
        "GET /v1/models?k=rk/Zm9v%2BYmFy=Secret9 401",  # partly encoded
        "GET /v1/models?k=%72k/Zm9v+YmFy=Secret9 401",  # an unreserved character encoded
        "GET /v1/models?k=rk%2FZm9v%2BYmFy%3DSecret%39 401",
    ],
)
def test_a_configured_secret_is_redacted_in_any_percent_encoding(text: str) -> None:
    # Only Python's own quote() form was masked: a client's other encodings reached the log.
    out = logs.Redactor(["rk/Zm9v+YmFy=Secret9"])(text)
    assert out == "GET /v1/models?k=*** 401"


def test_credential_query_values_are_told_by_name_or_length() -> None:
    url = (
        "https://h/x?code=abcdefgh&format=json&version=2024-06-01&client_secret=s%2Fx12345"
        "&v=0123456789abcdefXY&sig="
    )
    assert logs.credential_values(url) == [
        "abcdefgh",
        "s/x12345",
        "s%2Fx12345",
        "0123456789abcdefXY",
    ]
    # Not credentials: a name holding a credential word only inside another word, a short
    # value (it would mask every `true` of an answer), a long value with no run of 16 letters
    # and digits (a version).
    ordinary = (
        "https://h/x?use_session=true&api-version=2025-04-01-preview&unicode=auto"
        "&author=none&encode=json&passthrough=yes&code=abc"
    )
    assert logs.credential_values(ordinary) == []
    names = ("clientSecret", "X-Amz-Signature", "api_key", "accesstoken", "sessionid", "key1")
    assert all(logs.credential_name(name) for name in names)
    named = "https://h/x?accesstoken=Ab3d-E6gH&token=abcdefgh&apitoken=Zq8W-x2Yv"
    assert logs.credential_values(named) == ["Ab3d-E6gH", "abcdefgh", "Zq8W-x2Yv"]
    assert logs.credential_values("http://[bad/x?code=secret") == []
