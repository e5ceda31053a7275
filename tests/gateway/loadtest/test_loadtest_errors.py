"""What a target said about an error, as the load test report shows it."""

from __future__ import annotations

import orjson

from gateway.loadtest.errors import MAX_TEXT, error_text


def test_code_and_message_of_an_openai_shaped_body() -> None:
    body = {"error": {"message": "slow down", "type": "rate_limit", "param": None, "code": "x_1"}}
    assert error_text(orjson.dumps(body)) == "x_1: slow down"
    assert error_text(b'{"error": {"message": "no code", "code": null}}') == "no code"
    assert error_text(b'{"error": "plain"}') == "plain"


def test_what_is_not_an_error_body_says_nothing() -> None:
    for body in (b"", b"<html>502</html>", b"[]", b'{"detail": "x"}', b'{"error": {}}'):
        assert error_text(body) is None


def test_a_hostile_body_cannot_reach_the_terminal_raw() -> None:
    body = orjson.dumps({"error": {"code": "a\x1b[2J", "message": "line\nbreak\r" + "z" * 500}})
    text = error_text(body)
    assert text is not None and text.isprintable() and len(text) == MAX_TEXT
    assert text.startswith("a [2J: line break ")
