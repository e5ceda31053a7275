"""Who may call runcast: caller keys for ``/v1`` and ``POST /tokens``, subscribe tokens for streams.

Two independent mechanisms:

- :class:`CallerAuth` decides which ``Authorization`` goes upstream. When runcast holds the
  upstream key, callers must present one of runcast's own keys and the upstream key is added by
  the upstream client (never echoed); when it holds none, the caller's bearer is passed on as is.
- :class:`TokenAuthority` mints and checks subscribe tokens: HS256 JWTs (PyJWT) whose ``sub``
  claim names exactly one channel (``run:<id>``, ``thread:<id>``, ``response:<id>`` ...) and
  which expire (``exp``). A thread token also opens the run channels of that thread's runs, and a
  conversation token the response channels of that conversation's responses, so a chat UI holding
  the thread's or conversation's token can fetch the current run's or response's snapshot. A runcast key in ``Authorization`` is
  accepted in place of a token (backends subscribing directly), never in ``?token=``: keys must
  not travel in URLs, in either mode. In open mode every other subscribe request is allowed
  (tokens are still minted, so clients need not know which mode they talk to), except a
  WebSocket from a page of another site (``cors.cross_site``; WebSocket has no CORS): it is
  checked as in token mode, and one without a credential gets 403 ``cors_origin``.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Sequence

import jwt
import msgspec
import orjson
from aiohttp import web
from jwt.utils import base64url_encode

from gateway.settings import MIN_TOKEN_SECRET_BYTES

from .cors import cross_site
from .errors import RequestError
from .headers import forwardable

__all__ = ["CallerAuth", "MintedToken", "TokenAuthority", "bearer"]

_ISSUER = "runcast"
_ALGORITHMS = ["HS256"]
_HS256 = jwt.get_algorithm_by_name("HS256")
_HEADER = base64url_encode(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
"""The JWS header every token has: encoded once (``jwt.encode`` re-encodes it per token)."""


class MintedToken(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    channel: str
    expires_at: int


def bearer(request: web.Request) -> str | None:
    """The bearer credential of ``Authorization``, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _matches(candidate: str, keys: Sequence[bytes]) -> bool:
    # compare_digest against every key, without an early exit, so timing says nothing about which.
    # Header bytes that are not UTF-8 reach us as surrogate escapes: encoded back as they came,
    # they match no key.
    raw = candidate.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(raw, key)
    return found


class CallerAuth:
    """Authenticates ``/v1`` callers and ``POST /tokens`` with runcast's own API keys."""

    __slots__ = ("_keys", "_upstream_key_held")

    def __init__(self, api_keys: Sequence[str], *, upstream_key_held: bool) -> None:
        self._keys = tuple(key.encode() for key in api_keys)
        self._upstream_key_held = upstream_key_held

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    def is_runcast_key(self, credential: str | None) -> bool:
        return credential is not None and bool(self._keys) and _matches(credential, self._keys)

    def upstream_api_key(self, request: web.Request) -> str | None:
        """The bearer token to send upstream (None: the upstream client adds runcast's key).

        Raises 401 when runcast holds the upstream key and the caller has no runcast key, 400
        when the caller's own key would go upstream but is not UTF-8 (``headers.forwardable``).
        """
        if not self._upstream_key_held:
            credential = bearer(request)
            return None if credential is None else forwardable("Authorization", credential)
        if not self.is_runcast_key(bearer(request)):
            raise RequestError(
                401,
                "missing or invalid runcast API key (Authorization: Bearer <runcast key>)",
                code="invalid_api_key",
            )
        return None

    def require_key(self, request: web.Request) -> None:
        """Raise 401/403 unless the request carries one of runcast's keys."""
        if not self._keys:
            raise RequestError(
                403,
                "no runcast API keys are configured (--api-key / RUNCAST_API_KEYS), "
                "so this endpoint is disabled",
                code="no_api_keys",
            )
        if not self.is_runcast_key(bearer(request)):
            raise RequestError(401, "missing or invalid runcast API key", code="invalid_api_key")


class TokenAuthority:
    """Mints and verifies subscribe tokens (HS256 JWT scoped to one channel)."""

    __slots__ = ("_callers", "_key", "_open", "_origins", "_secret", "_ttl")

    def __init__(
        self,
        secret: bytes,
        *,
        ttl: float,
        open_mode: bool,
        callers: CallerAuth,
        cors_origins: Sequence[str] = (),
    ) -> None:
        if len(secret) < MIN_TOKEN_SECRET_BYTES:
            raise ValueError(f"subscribe tokens need a secret of >= {MIN_TOKEN_SECRET_BYTES} bytes")
        self._secret = secret
        self._key = _HS256.prepare_key(secret)
        self._ttl = ttl
        self._open = open_mode
        self._callers = callers
        self._origins = tuple(cors_origins)

    @property
    def open_mode(self) -> bool:
        return self._open

    @property
    def ttl(self) -> float:
        """The longest a minted token lives (``--token-ttl``)."""
        return self._ttl

    def mint(self, channel: str, *, ttl: float | None = None) -> MintedToken:
        now = int(time.time())
        # Rounded up: truncating a fractional ttl would mint a token already expired.
        exp = now + math.ceil(ttl if ttl is not None else self._ttl)
        claims = {"sub": channel, "iat": now, "exp": exp, "iss": _ISSUER}
        # The bytes `jwt.encode` makes, signed by PyJWT's HS256, in 6 us instead of 29 (a token
        # is minted for every run a caller starts).
        signing_input = _HEADER + b"." + base64url_encode(orjson.dumps(claims))
        signature = base64url_encode(_HS256.sign(signing_input, self._key))
        token = (signing_input + b"." + signature).decode()
        return MintedToken(token=token, channel=channel, expires_at=exp)

    def authorize(self, request: web.Request, channel: str, *, parent: str | None = None) -> None:
        """Allow the subscribe request for ``channel`` or raise 401 (no/bad token) / 403 (scope).

        ``parent`` is the channel ``channel`` belongs to, when known (a run's thread, a
        response's conversation), so that the parent's token opens it too.
        """
        in_url = request.query.get("token")
        if in_url is not None and self._callers.is_runcast_key(in_url):
            # URLs end up in access logs, proxies and browser history: only tokens that expire
            # and open one channel may travel there.
            raise RequestError(
                401,
                "runcast API keys are not accepted in the URL: send the key in the "
                "Authorization header, or use a subscribe token (POST /tokens) in ?token=",
                code="api_key_in_url",
            )
        credential = in_url or bearer(request)
        if self._open:
            if not self._cross_site_websocket(request):
                return
            if credential is None:
                raise RequestError(
                    403,
                    "a WebSocket from a page of another site needs a subscribe token, or its "
                    "origin allowed with --cors-origin",
                    code="cors_origin",
                )
        if credential is None:
            raise RequestError(
                401,
                "a subscribe token is required (?token= or Authorization: Bearer)",
                code="missing_token",
            )
        if self._callers.is_runcast_key(credential):
            return
        try:
            claims = jwt.decode(
                credential,
                self._secret,
                algorithms=_ALGORITHMS,
                issuer=_ISSUER,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise RequestError(401, "subscribe token has expired", code="token_expired") from None
        except jwt.InvalidTokenError as exc:
            raise RequestError(
                401, f"invalid subscribe token: {exc}", code="invalid_token"
            ) from None
        except UnicodeError:
            # A credential whose bytes are not UTF-8 (no token is): refused as any bad token,
            # never with the codec's text. It is checked here, never forwarded, so not the 400
            # of a header that cannot go upstream (headers.forwardable); a runcast key in that
            # state is a 401 likewise (CallerAuth).
            raise RequestError(
                401, "invalid subscribe token: not UTF-8", code="invalid_token"
            ) from None
        scope = claims.get("sub")
        allowed = {channel}
        if parent is not None:
            allowed.add(parent)
        if scope not in allowed:
            raise RequestError(
                403, f"subscribe token is not valid for {channel}", code="token_scope"
            )

    def _cross_site_websocket(self, request: web.Request) -> bool:
        return request.headers.get("Upgrade", "").lower() == "websocket" and cross_site(
            request, self._origins
        )
