"""OpenTelemetry traces, when the ``runcast[otel]`` extra is installed; nothing otherwise.

Spans: ``runcast.relay`` per relayed run (a child of the creator's W3C ``traceparent``, taken
from its request by :func:`extracted`), ``runcast.upstream`` per upstream request,
``runcast.tool_call`` per tool call and ``runcast.submission`` per submission of tool outputs.
:func:`inject` puts the current ``traceparent`` on upstream requests and tool webhooks, so the
upstream and the webhook join the creator's trace.

Spans go to the global tracer provider: operators configure it (exporter, sampler) with the
OpenTelemetry SDK or ``opentelemetry-instrument``; without one it is OpenTelemetry's no-op. The
context rides on context variables, so a relay task started inside the creator's request, and
everything it calls, is part of that request's trace. Without the extra every function here is a
no-op: :func:`span` returns a shared null context and the others return at once. With the API but
no provider set, :func:`span` returns the null context too: the no-op tracer's span would only
carry its parent's context, which is current already, so what :func:`inject` sends is the same
(this saves about 10 us a span, two or three a run).

An exception leaving a span is recorded on it (status ``ERROR``, an ``exception`` event) with its
message and stack trace redacted as log lines are (``gateway.logs.redact``): an HTTP client's
error can quote what the upstream sent back, runcast's key included, and spans leave the process.
"""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from gateway import logs

try:
    from opentelemetry import context as _context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is not installed
    _trace = None  # type: ignore[assignment]

__all__ = ["ENABLED", "extracted", "inject", "span"]

ENABLED = _trace is not None
"""Whether the OpenTelemetry API is installed (the ``otel`` extra)."""

_NULL = contextlib.nullcontext()


def span(
    name: str, **attributes: str | int | float | bool | None
) -> contextlib.AbstractContextManager[Any]:
    """A span named ``name`` around a ``with`` block, a child of the current one (None
    attributes are left out); exceptions are recorded on it, redacted."""
    if _trace is None or _untraced():
        return _NULL
    return _span(name, {k: v for k, v in attributes.items() if v is not None})


def _untraced() -> bool:
    """Whether no tracer provider is set (asked each time: an operator may set one late)."""
    return isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, str | int | float | bool]) -> Iterator[Any]:
    with _tracer().start_as_current_span(
        name,
        kind=_trace.SpanKind.CLIENT if name in _CLIENT_SPANS else _trace.SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except Exception as exc:
            if current.is_recording():
                _record(current, exc)
            raise


def _record(current: Any, exc: Exception) -> None:
    kind = type(exc).__name__
    message = logs.redact(str(exc))
    current.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{kind}: {message}"))
    current.add_event(
        "exception",
        {
            "exception.type": kind,
            "exception.message": message,
            "exception.stacktrace": logs.redact("".join(traceback.format_exception(exc))),
        },
    )


_CLIENT_SPANS = frozenset({"runcast.upstream", "runcast.submission"})


@functools.cache
def _tracer() -> _trace.Tracer:
    # Got once: `get_tracer` reads the environment on every call. A tracer got before the
    # operator sets the global provider is OpenTelemetry's proxy, which follows it once set.
    return _trace.get_tracer("runcast")


def set_attribute(name: str, value: str | int | float | bool) -> None:
    """Set an attribute on the current span (an id learnt after the span began)."""
    if _trace is not None and not _untraced():
        _trace.get_current_span().set_attribute(name, value)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (``traceparent``, ``tracestate``) to outgoing ``headers``."""
    if _trace is not None and (_context.get_current() or not _untraced()):
        # Untraced with nothing in the context (no traceparent came in), the propagators
        # would find nothing to send: skip them.
        _propagate.inject(headers)


@contextlib.contextmanager
def extracted(headers: Mapping[str, str]) -> Iterator[None]:
    """Within the block, the trace context of an incoming request's ``headers`` is current."""
    if _trace is None or "traceparent" not in headers:
        yield
        return
    token = _context.attach(_propagate.extract(headers))
    try:
        yield
    finally:
        _context.detach(token)
