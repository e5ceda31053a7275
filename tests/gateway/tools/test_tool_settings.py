"""ToolSettings validation and webhook argument parsing (gateway/tools/settings.py)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.errors import ConfigError
from gateway.tools import ToolSettings, parse_webhook_args


def test_defaults() -> None:
    settings = ToolSettings()
    assert settings.policy == "all"
    assert settings.on_error == "output"
    assert settings.show_requires_action is False
    assert settings.emit_tool_events_to_creator is False
    assert settings.fallback_webhook is None


def test_parse_webhook_args() -> None:
    assert parse_webhook_args(
        ["get_weather=http://127.0.0.1:9000/weather", "*=https://tools.example/any"]
    ) == {"get_weather": "http://127.0.0.1:9000/weather", "*": "https://tools.example/any"}


@pytest.mark.parametrize(
    "spec",
    ["get_weather", "=http://x/", "get_weather=", "t=ftp://x/", "t=not a url"],
)
def test_malformed_webhook_args(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_webhook_args([spec])


def test_a_webhook_given_twice_is_rejected() -> None:
    with pytest.raises(ConfigError, match="twice"):
        parse_webhook_args(["t=http://a/", "t=http://b/"])


@pytest.mark.parametrize(
    "fields",
    [
        {"policy": "some"},
        {"on_error": "ignore"},
        {"timeout": 0},
        {"concurrency": 0},
        {"threads": 0},
        {"max_rounds": 0},
        {"expiry_margin": -1},
        {"webhook_retries": -1},
        {"webhooks": {"t": "http://127.0.0.1/x"}},  # no secret to sign with
    ],
)
def test_invalid_settings(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        ToolSettings(**fields)


def test_unknown_fields_are_rejected_when_decoding_config() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"polcy": "all"}, ToolSettings)
    settings = msgspec.convert({"policy": "error", "modules": ["a.b"]}, ToolSettings)
    assert settings.policy == "error"
    assert settings.modules == ("a.b",)


@pytest.mark.parametrize(
    "spec",
    [
        "wx=htps://hookuser:HOOKPASS@hooks.example/h?sig=HOOKSIG",  # a typo'd scheme
        "https://hookuser:HOOKPASS@hooks.example/h?sig=HOOKSIG",  # NAME= forgotten
        "wx=htps://hooks.example/services/T0/B0/HOOKPATH",  # a Slack-style path
        "https://hooks.example/services/T0/B0/HOOKPATH",
    ],
)
def test_a_refused_webhook_url_is_shown_without_its_credentials(spec: str) -> None:
    # The error went to the terminal (and to `runcast config`'s) with the password and the
    # query's signature in it.
    with pytest.raises(ConfigError) as info:
        parse_webhook_args([spec])
    message = str(info.value)
    assert "HOOKPASS" not in message and "HOOKSIG" not in message and "HOOKPATH" not in message
    assert "hooks.example" in message  # still says which URL
