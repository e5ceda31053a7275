"""gateway.tracing without the otel extra: every function a no-op, nothing imported."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from gateway import tracing
assert tracing.ENABLED is False
headers = {}
tracing.inject(headers)
assert headers == {}
with tracing.span("runcast.relay", a=1) as span, tracing.extracted({"traceparent": "00-x"}):
    assert span is None
tracing.set_attribute("a", 1)
import gateway.http.app, gateway.runs.relay  # the whole gateway imports without it
assert not [m for m in sys.modules if m.startswith("opentelemetry.")]
print("ok")
"""


def _run(script: str) -> str:
    """What ``script`` prints, run in a Python process of its own (a global tracer provider, or
    none, without touching this one's)."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_off_and_free_without_the_extra() -> None:
    assert _run(PROBE) == "ok"


def test_enabled_with_the_extra() -> None:
    from gateway import tracing

    assert tracing.ENABLED
    headers: dict[str, str] = {}
    tracing.inject(headers)  # no span is current: nothing to propagate
    assert "traceparent" not in headers


NO_PROVIDER = """
from gateway import tracing
parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
with tracing.extracted({"traceparent": parent}), tracing.span("runcast.upstream") as span:
    tracing.set_attribute("a", 1)
    headers = {}
    tracing.inject(headers)
print(span is None, headers.get("traceparent") == parent)
"""


def test_without_a_provider_no_span_is_made_and_the_callers_trace_still_travels() -> None:
    # No provider set: the no-op span is skipped (it is CPU on every run), and the upstream
    # still gets the creator's traceparent, as through OpenTelemetry's no-op span.
    assert _run(NO_PROVIDER) == "True True"


LATE_PROVIDER = """
from gateway import tracing
with tracing.span("runcast.relay"):  # before any provider: OpenTelemetry's no-op
    pass
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)
with tracing.span("runcast.upstream", attempt=1):
    pass
print([(s.name, s.kind.name, dict(s.attributes)) for s in memory.get_finished_spans()])
"""


def test_spans_reach_a_provider_set_after_the_first_span() -> None:
    # Operators may configure the provider after runcast is imported and has traced once.
    assert _run(LATE_PROVIDER) == "[('runcast.upstream', 'CLIENT', {'attempt': 1})]"


LEAKY_ERROR = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from gateway import logs, tracing
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)
logs.configure("text", "info", ["upstream-key-0123456789"])
try:
    with tracing.span("runcast.upstream"):
        # What aiohttp says of an answer that quotes the request: the key, as configured and as
        # a bearer credential.
        raise ValueError("Bad status line: b'HTTP/1.1 2x0 upstream-key-0123456789 Bearer tok9'")
except ValueError:
    pass
(span,) = memory.get_finished_spans()
print(span.to_json(indent=None))
"""


def test_span_errors_never_carry_a_secret() -> None:
    # The upstream's malformed answer quoted runcast's key; aiohttp's error text repeats it. The
    # span says what failed, redacted as a log line would be.
    exported = _run(LEAKY_ERROR)
    assert "upstream-key-0123456789" not in exported
    assert "tok9" not in exported
    span = json.loads(exported)
    assert span["status"]["status_code"] == "ERROR"
    assert span["status"]["description"].startswith("ValueError: Bad status line")
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert "***" in event["attributes"]["exception.message"]
    assert "in <module>" in event["attributes"]["exception.stacktrace"]
