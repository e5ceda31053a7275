"""``create_app(settings)``: the gateway's aiohttp application, wired.

Long-lived objects are created and closed by ``cleanup_ctx`` (in this order, closed in reverse):
the embedded simulator (only without an upstream: its own aiohttp app on its own 127.0.0.1 port,
reached over a real socket like any upstream), the pooled upstream client, the hub broker, tool
automation (its handler threads and webhook session; started before the relays that call it, closed
after them) and the relay registry. At shutdown (before aiohttp waits for open handlers) relays
are stopped and the broker ends every subscription, so streaming handlers finish at once.

Tool automation. Without an explicit ``action_handler``, ``create_app`` builds a
:class:`~gateway.tools.ToolAutomation` from ``settings.tools`` (``--tools`` modules, webhooks)
plus the handlers of ``tools``, and uses it when it has any handler at all. Code that embeds
runcast registers handlers programmatically::

    from gateway.http import create_app
    from gateway.settings import Settings
    from gateway.tools import ToolRegistry, ToolSettings

    tools = ToolRegistry()
    tools.register(get_weather)                 # named after the function (or its @tool name)
    tools.register(lookup, name="crm_lookup")
    app = create_app(Settings(tools=ToolSettings(timeout=10)), tools=tools)

The automation is reachable as ``app[TOOL_AUTOMATION]`` (absent when no handler is configured).

Routes::

    GET, HEAD, POST, DELETE  /v1/{path}    proxy (streamed run calls are relayed and fanned out)
    GET   /streams/runs/{run_id}           run channel, SSE or WebSocket
    GET   /streams/runs/{run_id}/snapshot  {"seq": n, "snapshot": {...}}
    GET   /streams/threads/{thread_id}     thread channel, SSE or WebSocket
    GET   /streams/responses/{response_id}           a Responses stream (and .../snapshot)
    GET   /streams/conversations/{conversation_id}   a conversation's responses (and .../snapshot)
    GET   /streams/chat/{completion_id}              a Chat Completions stream (and .../snapshot)
    GET   /streams/channels/{name}                   a Runcast-Channel channel (and .../snapshot)
    POST  /tokens                          mint a subscribe token (runcast API key required)
    GET   /healthz                         liveness only: {"status": "ok"}
    GET   /readyz                          readiness: 200, or 503 with the reasons (health.py)
    GET   /, /viewer/*, /client/*          the viewer page and runcast-client.js (gateway.web)

``/v1`` takes the methods of the OpenAI API (GET, HEAD, POST, DELETE); any other (``TRACE``,
``CONNECT``, ``PUT``...) gets runcast's own 405 with ``Allow``, and nothing goes upstream: the
proxy would send it with runcast's key, and a ``TRACE`` echoed by the upstream or a proxy on the
way quotes the request head back, key included. A CORS preflight (``OPTIONS``) is answered before
routing (``cors.py``).

``/healthz`` needs no credentials, so it tells nothing about runs, subscribers or tools; the
counters are :func:`statistics` of the app, in-process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
from collections.abc import AsyncIterator

import msgspec
from aiohttp import web

from gateway import logs
from gateway.hub import BrokerStatistics, MemoryBroker, Reducer
from gateway.hub.redacted import redacting
from gateway.hub.redis import RedisBroker
from gateway.metrics import Metrics
from gateway.mock import create_app as create_simulator
from gateway.runs.actions import ActionHandler, ActionOptions
from gateway.runs.assistants.protocol import ASSISTANTS
from gateway.runs.protocols import reducer_factory as stream_reducer
from gateway.runs.registry import RelayRegistry, RelayStatistics
from gateway.settings import Settings
from gateway.state import SharedState, ToolRounds
from gateway.state.redis import RedisState, state_namespace
from gateway.tasks import cancel_and_wait
from gateway.tools import AutomationStatistics, ToolAutomation, ToolRegistry
from gateway.upstream import UpstreamClient, UpstreamSettings
from gateway.upstream.proxy import check_proxy_url, upstream_proxy
from gateway.upstream.scrub import worth_scrubbing
from gateway.web import add_web_routes
from gateway.workers import generated_node_id

from .access import access_middleware, note_prepared
from .auth import CallerAuth, TokenAuthority
from .bodies import body_deadline_middleware, expect_body
from .body_budget import BodyBudget
from .connections import SubscriberConnections
from .cors import Cors
from .drain import Drain
from .errors import error_middleware
from .exposition import METRICS, AppSources, gc_pauses_ctx, metrics_handler, own_listener_ctx
from .framing import close_unframed
from .headers import nosniff
from .health import READINESS, Readiness, UpstreamProbe, healthz, readyz
from .hosts import HostCheck
from .listener import version_middleware
from .logcontext import log_context_middleware
from .protocol_streams import add_protocol_stream_routes
from .proxy import proxy
from .state import (
    BODY_BUDGET,
    BROKER,
    CALLERS,
    CONNECTIONS,
    DRAIN,
    RELAYS,
    SETTINGS,
    TOKENS,
    TOOL_AUTOMATION,
    UPSTREAM,
    UPSTREAM_KEY,
    UPSTREAM_URL,
)
from .streams import ID_PATTERN, run_snapshot, stream_run, stream_thread
from .tokens import mint_token
from .write_deadline import write_deadline_middleware

__all__ = ["TOOL_AUTOMATION", "GatewayStatistics", "ToolStatistics", "create_app", "statistics"]

log = logging.getLogger("runcast")

_PROXIED_METHODS = ("GET", "HEAD", "POST", "DELETE")
"""What ``/v1`` forwards: the openai SDKs send GET, POST and DELETE; HEAD is GET's head, which
every HTTP server is to answer (RFC 9110 section 9.1)."""


def create_app(
    settings: Settings,
    *,
    tools: ToolRegistry | None = None,
    action_handler: ActionHandler | None = None,
    action_options: ActionOptions | None = None,
    state: SharedState | None = None,
) -> web.Application:
    """The gateway app.

    ``tools``: Python tool handlers registered in code, added to those of ``settings.tools``.
    ``action_handler`` replaces tool automation altogether (it then answers ``requires_action``
    itself); ``action_options`` overrides what the creator's response shows of it (default: from
    ``settings.tools``). ``state`` holds what the run lifecycle shares with other gateway
    processes (default: in-memory, this process only). Raises :class:`~gateway.errors.ConfigError` when a tools module cannot be
    imported or two handlers claim one tool name.
    """
    if action_handler is not None and tools is not None:
        raise TypeError("create_app() takes tools or action_handler, not both")
    metrics = Metrics() if settings.metrics else None
    shared: RedisState | None = None
    if settings.clustered:
        if settings.node_id is None:
            # Named once here, so that the broker and the state see the same node.
            settings = msgspec.structs.replace(settings, node_id=generated_node_id())
        assert settings.node_id is not None
        shared = RedisState(
            settings.broker,
            namespace=state_namespace(settings.redis_namespace),
            node_id=settings.node_id,
        )
        state = shared.state if state is None else state
    automation: ToolAutomation | None = None
    if action_handler is None:
        on_call = metrics.tool_call if metrics is not None else None
        rounds = shared.rounds if shared is not None else None
        automation = ToolAutomation(settings.tools, tools, on_call=on_call, rounds=rounds)
        if not automation.enabled:
            automation = None
    if action_options is None:
        action_options = ActionOptions(
            show_requires_action=settings.tools.show_requires_action,
            events_to_creator=settings.tools.emit_tool_events_to_creator,
        )
    app = web.Application(
        middlewares=[
            version_middleware,
            access_middleware,
            write_deadline_middleware,
            log_context_middleware,
            error_middleware,
            body_deadline_middleware,
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app.on_response_prepare.append(note_prepared)
    app.on_response_prepare.append(nosniff)
    app.on_response_prepare.append(close_unframed)
    upstream_key = settings.upstream.api_key if settings.upstream is not None else None
    app[UPSTREAM_KEY] = upstream_key.encode() if upstream_key else b""
    callers = CallerAuth(settings.api_keys, upstream_key_held=settings.upstream_key_held)
    app[CALLERS] = callers
    app[BODY_BUDGET] = BodyBudget(settings.body_buffer_bytes)
    app[TOKENS] = TokenAuthority(
        _token_secret(settings),
        ttl=settings.token_ttl,
        open_mode=settings.open_subscribe,
        callers=callers,
        cors_origins=settings.cors_origins,
    )
    app[CONNECTIONS] = SubscriberConnections()
    app[DRAIN] = Drain()
    app[READINESS] = Readiness()
    if metrics is not None:
        app[METRICS] = metrics
        app.cleanup_ctx.append(gc_pauses_ctx)
    app[READINESS].add("draining", functools.partial(_draining, app[DRAIN]))
    Cors(settings.cors_origins).install(app)
    HostCheck(settings.host, settings.allowed_hosts).install(app)
    if not settings.embedded and settings.open_subscribe:
        log.warning("--subscribe-auth open: anyone who can reach runcast can follow every run")

    if shared is not None:
        # First in, so last out: the relays and tool automation still write state as they stop.
        app.cleanup_ctx.append(functools.partial(_state_ctx, shared))
    app.cleanup_ctx.append(_simulator_ctx)
    if shared is not None:
        app.cleanup_ctx.append(functools.partial(_upstream_identity_ctx, shared))
    app.cleanup_ctx.append(_upstream_ctx)
    app.cleanup_ctx.append(_hub_ctx)
    if automation is not None:
        app[TOOL_AUTOMATION] = automation
        app.cleanup_ctx.append(_tools_ctx)
    app.cleanup_ctx.append(
        functools.partial(
            _relays_ctx,
            handler=action_handler or automation,
            options=action_options,
            state=state,
            rounds=shared.rounds if shared is not None else None,
        )
    )
    app.on_shutdown.append(_stop_streams)

    for method in _PROXIED_METHODS:
        app.router.add_route(method, "/v1/{tail:.*}", proxy, expect_handler=expect_body)
    app.router.add_get(f"/streams/runs/{{run_id:{ID_PATTERN}}}", stream_run)
    app.router.add_get(f"/streams/runs/{{run_id:{ID_PATTERN}}}/snapshot", run_snapshot)
    app.router.add_get(f"/streams/threads/{{thread_id:{ID_PATTERN}}}", stream_thread)
    add_protocol_stream_routes(app)
    app.router.add_post("/tokens", mint_token, expect_handler=expect_body)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        if settings.metrics_address is None:
            app.router.add_get("/metrics", metrics_handler)
        else:
            app.cleanup_ctx.append(own_listener_ctx)
    add_web_routes(app, viewer=settings.viewer)
    return app


def _token_secret(settings: Settings) -> bytes:
    if settings.token_secret is not None:
        return settings.token_secret.encode()
    if not settings.open_subscribe:
        log.warning(
            "no token secret configured (--token-secret / RUNCAST_TOKEN_SECRET): using an "
            "ephemeral one; subscribe tokens will not survive a restart or work on other nodes"
        )
    return secrets.token_bytes(32)


async def _state_ctx(shared: RedisState, app: web.Application) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await shared.aclose()


async def _upstream_identity_ctx(shared: RedisState, app: web.Application) -> AsyncIterator[None]:
    """Warn when another node of this Redis namespace relays to another upstream (a second
    cluster on the same keys: ``gateway.state.redis.upstreams``): the node's record is kept
    fresh while it serves, and removed when it stops."""
    keeper = asyncio.get_running_loop().create_task(
        shared.keep_upstream_recorded(app[UPSTREAM_URL], cluster=app[SETTINGS].redis_namespace),
        name="runcast-upstream-record",
    )
    try:
        yield
    finally:
        await cancel_and_wait(keeper)
        await shared.forget_upstream()


async def _simulator_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.upstream is not None:
        app[UPSTREAM_URL] = settings.upstream.base_url
        yield
        return
    runner = web.AppRunner(
        create_simulator(settings.simulator), shutdown_timeout=2.0, access_log=None
    )
    # Here, not at the top: gateway.mock.site serves through gateway.http's listener.
    from gateway.mock.site import start_site

    await runner.setup()
    try:
        # Served as `runcast mock` serves it: a malformed request gets a JSON 400, no traceback.
        base = await start_site(
            runner,
            settings.simulator_host,
            settings.simulator_port,
            what="embedded simulator, --sim-port",
        )
        url = f"{base}/v1"
        app[UPSTREAM_URL] = url
        log.info(
            "no upstream configured (--upstream / RUNCAST_UPSTREAM_URL): using the "
            "embedded simulator (Assistants, Responses, Chat) at %s (scenario %r)",
            url,
            settings.simulator.scenario,
        )
        yield
    finally:
        await runner.cleanup()


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    upstream = settings.upstream or UpstreamSettings(base_url=app[UPSTREAM_URL])
    if settings.upstream is not None:
        log.info(
            "upstream %s (%s)",
            logs.masked_url(upstream.base_url),  # a key may ride in its query (Azure's ?code=)
            "runcast holds the upstream key" if upstream.api_key else "callers' keys passed on",
        )
    upstream = _with_proxy(upstream)
    probe = UpstreamProbe(
        upstream.proxy or upstream.base_url,  # through a proxy, the proxy is what must answer
        interval=settings.readiness_interval,
        timeout=min(upstream.connect_timeout, settings.readiness_interval),
    )
    async with UpstreamClient(upstream) as client, probe:
        app[UPSTREAM] = client
        app[READINESS].add("upstream", probe.reason)
        try:
            yield
        finally:
            app[READINESS].discard("upstream")


def _with_proxy(upstream: UpstreamSettings) -> UpstreamSettings:
    """``upstream`` with the proxy its requests go through (configured, or the environment's)."""
    choice = upstream_proxy(upstream.base_url, upstream.proxy, os.environ)
    if choice is None:
        return upstream
    if (problem := check_proxy_url(choice.url)) is not None:
        log.warning(
            "%s=%s ignored (%s): upstream requests go direct",
            choice.source,
            logs.masked_url(choice.url),
            problem,
        )
        return msgspec.structs.replace(upstream, proxy=None)
    log.info(
        "upstream requests go through the proxy %s (%s)", logs.masked_url(choice.url), choice.source
    )
    return msgspec.structs.replace(upstream, proxy=choice.url)


def _draining(drain: Drain) -> str | None:
    return "draining: shutting down" if drain.draining else None


def _reducer(channel: str) -> Reducer | None:
    """Each channel kind's snapshot reducer: Assistants runs, then Responses and Chat streams."""
    return ASSISTANTS.reducer(channel) or stream_reducer(channel)


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    held_key = settings.upstream.api_key if settings.upstream is not None else None
    # A placeholder key is not scrubbed from answers, nor from their snapshots.
    reducers = redacting(_reducer, held_key if worth_scrubbing(held_key) else None)
    broker: MemoryBroker
    if settings.broker == "memory":
        broker = MemoryBroker(settings.hub, reducer_factory=reducers)
    else:
        broker = RedisBroker(
            settings.broker,
            settings.hub,
            reducer_factory=reducers,
            node_id=settings.node_id,
            prefix=settings.redis_namespace,
            tail_limits=settings.broker_tail,
        )
        log.info("broker %s, node %s", settings.broker, broker.node_id)
    async with broker:
        app[BROKER] = broker
        if isinstance(broker, RedisBroker):
            app[READINESS].add("broker", broker.unavailable)
        try:
            yield
        finally:
            app[READINESS].discard("broker")


async def _tools_ctx(app: web.Application) -> AsyncIterator[None]:
    async with app[TOOL_AUTOMATION]:
        yield


async def _relays_ctx(
    app: web.Application,
    *,
    handler: ActionHandler | None,
    options: ActionOptions,
    state: SharedState | None,
    rounds: ToolRounds | None = None,
) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    registry = RelayRegistry(
        app[BROKER],
        app[UPSTREAM],
        action_handler=handler,
        action_options=options,
        recovery_timeout=settings.recovery_timeout,
        shutdown_timeout=settings.shutdown_timeout,
        expiry_grace=settings.expiry_grace,
        lease_ttl=settings.lease_ttl,
        rounds=rounds,
        metrics=app.get(METRICS),
        state=state,
    )
    app[RELAYS] = registry
    if METRICS in app:
        app[METRICS].watch(AppSources(app))
    try:
        yield
    finally:
        await registry.aclose()


async def _stop_streams(app: web.Application) -> None:
    """End every streaming response, before aiohttp waits for open handlers (on_shutdown).

    Without this, SSE and WebSocket handlers would hold shutdown until aiohttp's
    ``shutdown_timeout``: ``cleanup_ctx`` (which closes relays and broker too) runs only after.
    Relays first: a stopped relay publishes nothing more and ends its creator's response after
    what it was given with ``runcast.shutdown`` (an error the openai SDK raises); then the broker
    ends every subscription with ``shutdown`` (SSE: ``runcast.shutdown`` with ``retry:``, then the
    end of the body; WebSocket: the notice and close 1012). Both ``aclose`` are idempotent. The
    graceful drain (``drain.py``, run by ``runner.serve``) comes before all this.
    """
    if RELAYS in app:
        await app[RELAYS].aclose()
    if BROKER in app:
        await app[BROKER].aclose()


class ToolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    python: list[str]
    webhooks: list[str]
    statistics: AutomationStatistics


class GatewayStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The counters of a running gateway app (what ``/healthz`` used to show)."""

    upstream: str
    """``embedded`` (the simulator) or ``external``."""
    relays: RelayStatistics
    hub: BrokerStatistics
    tools: ToolStatistics | None


def statistics(app: web.Application) -> GatewayStatistics:
    """The counters of ``app`` once started (relays, hub, tools), for code in the same process."""
    return GatewayStatistics(
        upstream="embedded" if app[SETTINGS].embedded else "external",
        relays=app[RELAYS].statistics(),
        hub=app[BROKER].statistics(),
        tools=_tools_health(app),
    )


def _tools_health(app: web.Application) -> ToolStatistics | None:
    automation = app.get(TOOL_AUTOMATION)
    if automation is None:
        return None
    return ToolStatistics(
        python=automation.registry.names(),
        webhooks=sorted(automation.settings.webhooks),
        statistics=automation.statistics(),
    )
