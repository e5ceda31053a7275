"""The public surface of gateway.upstream: fails when it drifts."""

from __future__ import annotations

import gateway.upstream as upstream

EXPECTED = {
    "IDEMPOTENT_METHODS",
    "Body",
    "Page",
    "Query",
    "QueryValue",
    "RetryPolicy",
    "RunStream",
    "StreamItem",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamResponse",
    "UpstreamSettings",
    "UpstreamStatistics",
    "retry_after",
}


def test_all_is_the_expected_surface() -> None:
    assert set(upstream.__all__) == EXPECTED
    assert len(upstream.__all__) == len(EXPECTED)
    for name in upstream.__all__:
        assert getattr(upstream, name) is not None
