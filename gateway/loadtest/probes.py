"""What the load test checks of a target before any load: that it answers at all, and whether its
channels need subscribe tokens; and the one line that says why a target could not be reached.

Each refusal is a :class:`~gateway.errors.ConfigError` in one line (no exception reprs): the load
does not start against a target it cannot use.
"""

from __future__ import annotations

import os
import ssl

import aiohttp
import msgspec

from gateway.errors import ConfigError
from parsers.errors import DECODE_ERRORS

__all__ = ["probe_reach", "probe_tokens", "reach_error"]


def reach_error(url: str, exc: BaseException) -> str:
    """One line saying why ``url`` could not be reached (no exception reprs)."""
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ssl.SSLError):
        # Its errno (1) is OpenSSL's error class, not EPERM ("operation not permitted").
        tls = exc.os_error
        what = getattr(tls, "verify_message", None) or (tls.reason or "").replace("_", " ")
        reason = f"TLS handshake failed: {what or tls.strerror}"
        if tls.reason == "WRONG_VERSION_NUMBER":
            reason += " (a plain http:// server?)"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        # uvloop's strerror is "connect call failed (...)": the errno's text says more.
        errno = error.errno or 0
        reason = os.strerror(errno) if errno > 0 else error.strerror or str(error)
    elif isinstance(exc, TimeoutError):
        reason = "timed out"
    else:
        reason = str(exc) or type(exc).__name__
    return f"cannot reach {url}: {reason.rstrip('.').lower()}"


async def probe_reach(
    session: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout
) -> None:
    """ConfigError in one line when ``url`` cannot be reached; any HTTP answer will do (a
    protocol without a setup call would otherwise report every run as a connection error).
    ``limit`` is a non-streamed call's: ``--request-timeout`` in all, ``--connect-timeout`` to
    connect."""
    try:
        async with session.get(url, timeout=limit, allow_redirects=False):
            pass
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(reach_error(url, exc)) from None


async def probe_tokens(
    session: aiohttp.ClientSession, url: str, limit: aiohttp.ClientTimeout
) -> bool:
    """Whether the thread channels of the gateway at ``url`` need a subscribe token.

    A 401 on a channel means tokens (authorisation comes before anything else, so the probe
    creates nothing); a 200 means open mode, and the probe disconnects at once.
    """
    probe = f"{url}/streams/threads/thread_loadtest_probe"
    try:
        headers = {"Accept": "text/event-stream"}
        async with session.get(probe, headers=headers, timeout=limit, allow_redirects=False) as r:
            if r.status == 401 and await _error_code(r) in _TOKEN_CODES:
                return True
            if r.status == 200:
                return False
            raise ConfigError(
                f"{probe} answered {r.status}: is the target a runcast gateway? "
                "(use --subscribers-per-run 0 for a bare API)"
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(reach_error(url, exc)) from None


_TOKEN_CODES = frozenset({"missing_token", "invalid_token"})
"""What a runcast gateway's 401 on a channel says (an API's own 401 is about its key)."""


async def _error_code(response: aiohttp.ClientResponse) -> str | None:
    """The ``error.code`` of an OpenAI-shaped error body, if it is one."""
    try:
        body = msgspec.json.decode(await response.content.read(64 * 1024))
    except (*DECODE_ERRORS, aiohttp.ClientError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None
