"""The gateway's configuration: one frozen, strictly validated :class:`Settings` passed down.

Built by ``gateway.config`` from defaults, a TOML file, ``RUNCAST_*`` variables and flags (or
directly by code that embeds runcast) and handed to ``gateway.http.app.create_app``; nothing
reads the environment or keeps configuration anywhere else. Components keep their own settings types
(:class:`~gateway.upstream.UpstreamSettings`, :class:`~gateway.hub.HubSettings`,
:class:`~gateway.mock.settings.MockSettings`, :class:`~gateway.tools.ToolSettings`), nested here.

Security defaults (documented in the README):

- ``upstream`` None means the embedded simulator; its bearer handling is pass-through and
  subscribers need no token unless ``subscribe_auth="token"``.
- With an upstream key held by runcast, at least one runcast API key is required (otherwise any
  caller could spend the upstream key), and callers never see the upstream key.
- With a real upstream, subscribe tokens are required unless ``subscribe_auth="open"`` is set
  explicitly; without a configured ``token_secret`` an ephemeral one is generated at startup
  (tokens then do not survive a restart and are not shared between processes).
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from gateway.errors import ConfigError
from gateway.flags import host_port, is_origin
from gateway.hub import HubSettings
from gateway.hub.redis.tail import TailLimits
from gateway.logs import LogFormat, LogLevel, masked_url
from gateway.mock.settings import MockSettings
from gateway.tools.settings import ToolSettings
from gateway.upstream import UpstreamSettings

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""URL schemes of ``broker`` meaning Redis mode (redis-py's ``from_url``)."""

__all__ = ["MAX_BACKLOG", "MIN_TOKEN_SECRET_BYTES", "Settings", "SubscribeAuth"]

SubscribeAuth = Literal["auto", "token", "open"]

_NAMESPACE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A ``redis_namespace``: no braces (a channel's keys share the hash tag ``{<channel>}``), no
spaces."""

MIN_TOKEN_SECRET_BYTES = 32
"""RFC 7518 §3.2: an HS256 key at least as long as the hash output."""


MAX_BACKLOG = 2**31 - 1
"""The largest accept backlog ``listen(2)`` takes (a C int; the kernel caps it at somaxconn)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything ``runcast serve`` needs. Sizes are bytes, times seconds."""

    host: str = "127.0.0.1"
    port: int = 8080

    upstream: UpstreamSettings | None = None
    """The upstream Assistants API; None starts the embedded simulator."""
    simulator: MockSettings = msgspec.field(default_factory=MockSettings)
    """Settings of the embedded simulator (used only when ``upstream`` is None)."""
    simulator_host: str = "127.0.0.1"
    simulator_port: int = 0
    """Port of the embedded simulator (0: any free port, logged at startup)."""

    hub: HubSettings = msgspec.field(default_factory=HubSettings)
    broker: str = "memory"
    """``memory`` (one process), or ``redis://HOST:PORT/DB``: channel logs and run state shared by
    every node of a cluster."""
    node_id: str | None = None
    """This node's name in a Redis cluster (generated when None)."""
    redis_namespace: str = "rc"
    """The prefix of every key and pub/sub channel runcast uses on Redis (``rc:...``, the state
    under ``rc:state:...``): two clusters on one Redis db each need their own."""
    broker_tail: TailLimits = msgspec.field(default_factory=TailLimits)
    """Redis mode: what a node holds of its publishes while Redis is unreachable, to re-append
    once it is back (past it, publishing waits: ``gateway/hub/redis/tail.py``)."""
    workers: int = 1
    """Processes serving one port (``SO_REUSEPORT``); more than one needs the Redis broker."""

    tools: ToolSettings = msgspec.field(default_factory=ToolSettings)
    """Tool automation: which ``requires_action`` runcast answers itself, and how."""

    api_keys: tuple[str, ...] = ()
    """runcast's own API keys (``Authorization: Bearer``), for ``/v1`` and ``POST /tokens``."""
    subscribe_auth: SubscribeAuth = "auto"
    """``auto``: open with the embedded simulator, tokens otherwise; ``token``; ``open``."""
    token_secret: str | None = None
    """HS256 secret for subscribe tokens (>= 32 bytes); generated at startup when missing."""
    token_ttl: float = 3600.0
    """Lifetime of the subscribe tokens runcast mints."""

    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call runcast from a browser (``*`` for any); empty disables CORS."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names requests may name besides loopback ones (``*`` for any); empty: loopback names
    only when bound to a loopback address, any otherwise (``gateway.http.hosts``)."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted (413 above). Run bodies carry instructions of up to 256,000
    characters plus tool schemas (spec §1.3), so a few MiB."""
    body_buffer_bytes: int = 256 * 1024 * 1024
    """Request bodies held in memory at once, while they arrive and until their request is
    answered (a body sent chunked counts as ``max_body_bytes``); past it new bodies get a 503, so
    stalled uploads cannot exhaust memory."""

    creator_buffer_bytes: int = 4 * 1024 * 1024
    """Bytes of a run's events waiting for its creator's socket before the creator is cut off."""
    creator_write_timeout: float = 30.0
    """A single write to the creator stalled this long cuts the creator off; the same bound
    applies to every answer written whole (snapshots, proxied error bodies) and to each write of a
    proxied body, relayed as it comes."""
    recovery_timeout: float = 30.0
    """After an upstream stream broke off, how long runcast polls the run for its final status
    (0 disables the recovery)."""
    lease_ttl: float = 10.0
    """How long a node's hold on a run it pumps lasts unless renewed (renewed every third of it);
    with ``--broker redis://``, another node takes a run over this long after its owner died."""
    expiry_grace: float = 2.0
    """A run left at an unanswered ``requires_action`` is read this long after its ``expires_at``
    (spec §5) and, once expired, its channels are ended."""
    shutdown_timeout: float = 10.0
    """How long relays and connections may take to finish when the server stops."""
    drain_timeout: float = 25.0
    """On SIGTERM/SIGINT, how long running runs may take to finish (new runs and subscriptions
    are refused meanwhile) before every remaining stream is ended; under Kubernetes' default
    30 s grace period. 0 ends them at once."""

    readiness_interval: float = 5.0
    """How often the upstream is probed (a TCP connect) for ``/readyz``."""

    metrics: bool = True
    """Serve Prometheus metrics at ``GET /metrics``."""
    metrics_address: str | None = None
    """``HOST:PORT`` to serve ``/metrics`` on a listener of its own instead of the main one."""

    log_format: LogFormat = "text"
    """``text`` lines or ``json`` objects, one per line (``gateway.logs``)."""
    log_level: LogLevel = "info"
    access_log: bool = True
    """One line per request (never for ``/healthz``, ``/readyz`` or ``/metrics``)."""

    viewer: bool = True
    """Serve the live viewer page at ``/`` and its channel listing (``--no-viewer`` turns it off)."""

    header_timeout: float = 30.0
    """A request's head (request line and headers) must have arrived this long after the
    connection opened or its previous response ended; an idle keep-alive connection is closed
    after the same time. Above the keep-alive expiry of common clients (httpx 5 s, aiohttp 15 s)
    so they never reuse a connection runcast is closing."""
    body_timeout: float = 60.0
    """A request body must have arrived whole this long after its head (408 otherwise): 4 MiB
    (``max_body_bytes``) at about 0.5 Mbit/s."""
    backlog: int = 0
    """The listening socket's accept backlog (connections the kernel completes before runcast
    accepts them). 0: ``net.core.somaxconn``, the most the kernel grants."""
    max_connections: int = 0
    """Open client connections; past it new ones get a 503 and are closed. 0: the open-file limit
    (``ulimit -n``) minus the descriptors runcast keeps for itself."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535 or not 0 <= self.simulator_port <= 65535:
            raise ConfigError("ports must be in 0..65535")
        if self.subscribe_auth not in ("auto", "token", "open"):
            raise ConfigError(
                f"subscribe_auth must be auto, token or open: {self.subscribe_auth!r}"
            )
        if any(not key for key in self.api_keys):
            raise ConfigError("runcast API keys must not be empty")
        if self.upstream_key_held and not self.api_keys:
            raise ConfigError(
                "runcast holds the upstream API key, so callers must authenticate with runcast "
                "keys: set --api-key or RUNCAST_API_KEYS"
            )
        if (
            self.token_secret is not None
            and len(self.token_secret.encode()) < MIN_TOKEN_SECRET_BYTES
        ):
            raise ConfigError(f"token secret must be at least {MIN_TOKEN_SECRET_BYTES} bytes")
        positive = {
            "token_ttl": self.token_ttl,
            "max_body_bytes": self.max_body_bytes,
            "body_buffer_bytes": self.body_buffer_bytes,
            "creator_buffer_bytes": self.creator_buffer_bytes,
            "creator_write_timeout": self.creator_write_timeout,
            "shutdown_timeout": self.shutdown_timeout,
            "header_timeout": self.header_timeout,
            "body_timeout": self.body_timeout,
            "readiness_interval": self.readiness_interval,
        }
        for name, value in positive.items():
            if not 0 < value < float("inf"):
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        if self.recovery_timeout < 0:
            raise ConfigError("recovery_timeout must be >= 0")
        if self.lease_ttl <= 0:
            raise ConfigError("lease_ttl must be > 0")
        if self.expiry_grace < 0:
            raise ConfigError("expiry_grace must be >= 0")
        if not 0 <= self.drain_timeout < float("inf"):
            raise ConfigError(
                f"--drain-timeout must be a finite number >= 0, got {self.drain_timeout!r}"
            )
        for origin in self.cors_origins:
            if not is_origin(origin):
                raise ConfigError(
                    f"CORS origin {origin!r} (--cors-origin / RUNCAST_CORS_ORIGINS) is not an "
                    "origin: use scheme://host[:port], or *"
                )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json: {self.log_format!r}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log_level must be debug, info, warning or error: {self.log_level!r}"
            )
        if not 0 <= self.backlog <= MAX_BACKLOG:
            raise ConfigError(
                f"backlog must be in 0..{MAX_BACKLOG} (0: net.core.somaxconn), got {self.backlog!r}"
            )
        if self.metrics_address is not None:
            try:
                host_port(self.metrics_address)
            except ValueError:
                raise ConfigError(
                    f"metrics_address must be HOST:PORT, got {self.metrics_address!r}"
                ) from None
        if self.max_connections < 0:
            raise ConfigError("max_connections must be >= 0 (0: from the open-file limit)")
        self._check_cluster()

    def _check_cluster(self) -> None:
        if self.broker != "memory" and not self.broker.startswith(REDIS_SCHEMES):
            raise ConfigError(
                f"broker must be 'memory' or redis://HOST:PORT/DB: {masked_url(self.broker)!r}"
            )
        if self.clustered:
            from redis.asyncio.connection import parse_url

            try:
                parse_url(self.broker)
            except ValueError as exc:
                raise ConfigError(f"broker {masked_url(self.broker)!r}: {exc}") from None
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers!r}")
        if self.workers > 1 and not self.clustered:
            raise ConfigError(
                "--workers needs --broker redis://HOST:PORT/DB: worker processes share channels, "
                "runs and tool state only through Redis"
            )
        if self.workers > 1 and (self.port == 0 or self.embedded):
            raise ConfigError(
                "--workers needs a fixed --port and an --upstream (each worker would otherwise "
                "listen on its own port or start its own simulator)"
            )
        if not _NAMESPACE.fullmatch(self.redis_namespace):
            raise ConfigError(
                f"--redis-namespace must be 1 to 64 letters, digits, '_', '-', '.' or ':', got "
                f"{self.redis_namespace!r}"
            )
        if self.clustered and self.token_secret is None:
            raise ConfigError(
                "--broker redis:// needs --token-secret (RUNCAST_TOKEN_SECRET), the same on every "
                "node: a subscribe token minted by one node must open channels on all of them"
            )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value configured, for the log redaction."""
        held = (
            *self.api_keys,
            self.token_secret,
            self.upstream.api_key if self.upstream is not None else None,
            self.tools.webhook_secret,
        )
        return tuple(value for value in held if value)

    @property
    def clustered(self) -> bool:
        """True in Redis mode (``broker`` is a Redis URL)."""
        return self.broker != "memory"

    @property
    def embedded(self) -> bool:
        """True when the embedded simulator is the upstream."""
        return self.upstream is None

    @property
    def upstream_key_held(self) -> bool:
        return self.upstream is not None and self.upstream.api_key is not None

    @property
    def open_subscribe(self) -> bool:
        """Whether subscribers need no token."""
        if self.subscribe_auth == "auto":
            return self.embedded
        return self.subscribe_auth == "open"

    def __repr__(self) -> str:
        # Settings reach logs and tracebacks; keys and secrets must not.
        return (
            f"Settings(host={self.host!r}, port={self.port}, upstream={self.upstream!r}, "
            f"api_keys=<{len(self.api_keys)}>, subscribe_auth={self.subscribe_auth!r}, "
            f"token_secret={'***' if self.token_secret else None}, "
            f"cors_origins={self.cors_origins!r}, tools={self.tools!r})"
        )
