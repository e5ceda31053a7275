"""Per-request choices of the Responses and Chat simulators: scenario and wire deviations.

Each choice has a server-wide default (``MockSettings``, set by ``runcast mock`` flags) and can be
overridden per request, first by a ``metadata`` key, else by a header (for clients that cannot
send metadata)::

    metadata key            header                  value
    mock_scenario           X-Mock-Scenario         a scenario name (scenarios.py)
    mock_keepalive_every    X-Mock-Keepalive-Every  N >= 0: a keepalive event after every N deltas
    mock_data_only          X-Mock-Data-Only        true/false: Responses frames without `event:`
    mock_done               X-Mock-Done             true/false: `data: [DONE]` after a Responses end
    mock_no_index           X-Mock-No-Index         true/false: chat tool deltas without `index`
    mock_drop_after         X-Mock-Drop-After       N >= 0: cut the connection after event N

``mock_drop_after`` counts Responses events by ``sequence_number`` and chat chunks from 0; the
generation carries on server-side as in the ``drop`` scenario. A malformed value is a 400 naming
the metadata key, like an unknown scenario.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from gateway.mock.bodies import decimal
from gateway.mock.errors import APIError, quoted
from gateway.mock.scenarios import METADATA_KEY, SCENARIOS, Scenario
from gateway.mock.settings import MockSettings

__all__ = ["Wire", "http_refusal", "request_scenario", "request_wire"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Wire(msgspec.Struct, frozen=True, kw_only=True):
    """How one stream is put on the wire."""

    keepalive_every: int = 0
    data_only: bool = False
    done: bool = False
    no_index: bool = False
    drop_after: int | None = None


def _header(key: str) -> str:
    return "X-" + "-".join(part.capitalize() for part in key.split("_"))


def _raw(key: str, metadata: Mapping[str, str] | None, headers: Mapping[str, str]) -> str | None:
    if metadata is not None and key in metadata:
        return metadata[key]
    return headers.get(_header(key))


def _flag(
    key: str, default: bool, metadata: Mapping[str, str] | None, headers: Mapping[str, str]
) -> bool:
    raw = _raw(key, metadata, headers)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise APIError(400, f"Invalid {key} {quoted(raw)}: expected true or false.", param="metadata")


def _count(key: str, metadata: Mapping[str, str] | None, headers: Mapping[str, str]) -> int | None:
    raw = _raw(key, metadata, headers)
    if raw is None:
        return None
    value = decimal(raw)
    if value is None or value < 0:
        raise APIError(
            400, f"Invalid {key} {quoted(raw)}: expected an integer >= 0.", param="metadata"
        )
    return value


def request_wire(
    settings: MockSettings, metadata: Mapping[str, str] | None, headers: Mapping[str, str]
) -> Wire:
    """The wire options of one request: server defaults, then metadata, then headers."""
    keepalive = _count("mock_keepalive_every", metadata, headers)
    return Wire(
        keepalive_every=settings.keepalive_every if keepalive is None else keepalive,
        data_only=_flag("mock_data_only", settings.data_only, metadata, headers),
        done=_flag("mock_done", settings.responses_done, metadata, headers),
        no_index=_flag("mock_no_index", settings.chat_no_index, metadata, headers),
        drop_after=_count("mock_drop_after", metadata, headers),
    )


def request_scenario(
    metadata: Mapping[str, str] | None, headers: Mapping[str, str], default: str
) -> Scenario:
    """The scenario a request asks for (``default`` when it names none); 400 when unknown.

    The HTTP-level scenarios (``rate_limited``, ``server_error``) are refused by the caller.
    """
    name = _raw(METADATA_KEY, metadata, headers) or default
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise APIError(400, f"Unknown mock_scenario {quoted(name)}.", param="metadata")
    return scenario


def http_refusal(scenario: Scenario, retry_after_s: int) -> APIError | None:
    """The HTTP error a ``rate_limited`` or ``server_error`` scenario answers with, else None."""
    if scenario.http_status == 429:
        return APIError(
            429,
            "Rate limit reached for requests. Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after_s)},
        )
    if scenario.http_status is not None:
        return APIError(
            scenario.http_status,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
            code="server_error",
        )
    return None
