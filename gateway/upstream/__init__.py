"""Client for OpenAI-compatible upstreams (the real API or ``runcast mock``).

One :class:`UpstreamClient` per upstream owns one pooled aiohttp session. It offers the run
operations of spec §1.2 (typed results), their streamed variants (:class:`RunStream` yielding
:class:`StreamItem`, one at a time or per upstream read), and the raw :meth:`UpstreamClient.request` used by the transparent proxy.

Modules: ``settings`` (configuration), ``body`` (URLs, queries, JSON bodies), ``retry`` (retry
decisions), ``transport`` (the only code that touches aiohttp), ``scrub`` (masking runcast's
upstream key in everything the upstream sends back), ``events`` (SSE events of any protocol, for
the Responses and Chat relays) and ``client`` (session, headers, retry loop, raw requests): none
of them names a protocol's types. The Assistants API's own pieces are in ``assistants/``:
``assistants/stream`` (SSE -> typed ``thread.run.*`` events and the end-of-stream rules),
``assistants/objects`` (non-streamed JSON -> models) and ``assistants/operations`` (the typed run
calls, a mixin of the client).

Timeouts (never a total timeout; see :class:`UpstreamSettings`): ``UpstreamTimeout.phase`` is
``"connect"``, ``"first_byte"`` (request start -> first body byte, response head included:
``first_byte_timeout``, or ``answer_timeout`` for a non-streamed call the proxy passes through) or
``"idle"`` (between two body chunks).

Retry policy. A request that may have reached the upstream is never repeated unless its method
is idempotent: ``POST .../runs`` carries no idempotency key, so a duplicate starts a second run or
hits the one-active-run rule (spec §1.5, §5). Retries are bounded by ``max_retries`` (per call:
``max_retries=``), wait ``backoff_base * 2**n`` capped at ``backoff_max`` with jitter, or the
server's hint:

====================================================  ===========================  ===========
failure                                               POST (runs, submit, cancel)  GET
====================================================  ===========================  ===========
connection refused / DNS / unreachable (not sent)     retried                      retried
connect timeout (not sent)                            retried                      retried
429 or 503 with ``retry-after-ms`` / ``Retry-After``  retried after the hint [1]   retried [1]
429, 503 without a hint; 408, 500, 502, 504           raised                       retried
other 4xx/5xx, 3xx (redirects are not followed)       raised                       raised
connection reset / closed after sending               raised                       retried
first-byte or idle timeout (the request was sent)     raised                       raised
any status with ``x-should-retry: false``             raised                       raised
TLS failure                                           raised                       retried
====================================================  ===========================  ===========

[1] Only when the hint is at most ``retry_after_max``; a longer wait is the caller's decision, so
the 429/503 is raised. ``request()``/``send()`` follow the same table but return the final
non-2xx answer instead of raising it. A caller's own request (the transparent proxy, a creator's
streamed call) is sent with ``max_retries=0``: retries are the caller's client's to decide. A stream that fails after its first byte is never retried: the events already
relayed cannot be taken back.
"""

from .assistants.objects import Page
from .assistants.stream import RunStream, StreamItem
from .body import Body, Query, QueryValue
from .client import UpstreamClient, UpstreamStatistics
from .retry import IDEMPOTENT_METHODS, RetryPolicy, retry_after
from .settings import UpstreamSettings
from .transport import UpstreamConnectError, UpstreamResponse

__all__ = [
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
]
