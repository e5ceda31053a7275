"""Which HTTP proxy upstream requests go through (:func:`upstream_proxy`).

The configured one (``--upstream-proxy``), else the environment's, read as the openai SDK and
curl read it: ``https_proxy`` for an ``https://`` upstream, ``http_proxy`` for ``http://``, then
``all_proxy`` (each also upper case, lower case first), unless ``no_proxy`` names the host (a
name, a domain suffix, ``*``). An upstream on a loopback address never goes through the
environment's proxy: a shell's ``HTTPS_PROXY`` must not capture the embedded simulator or a
sidecar's local model server. An explicit ``--upstream-proxy`` applies whatever the upstream.

The choice is made once, at start: the upstream's URL does not change while runcast runs. A
variable that is no HTTP proxy URL (``socks5://...``) is the caller's to warn about and ignore
(:func:`check_proxy_url`); a configured one is refused with the configuration.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["ProxyChoice", "check_proxy_url", "upstream_proxy"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class ProxyChoice(NamedTuple):
    url: str
    source: str
    """Where it came from: ``--upstream-proxy`` or the variable's name."""


def check_proxy_url(url: str) -> str | None:
    """Why ``url`` cannot be a proxy, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "a proxy is an http:// or https:// URL"
    if not parts.hostname:
        return "a proxy URL names a host"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
    except ValueError:
        return "a proxy URL's port is a number in 0..65535"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "a proxy URL is scheme://[user:password@]host[:port], nothing after"
    return None


def upstream_proxy(
    base_url: str, configured: str | None, env: Mapping[str, str]
) -> ProxyChoice | None:
    """The proxy for requests to ``base_url``, or None for a direct connection."""
    if configured:
        return ProxyChoice(configured, "--upstream-proxy")
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if _is_loopback(host):
        return None
    found = _from_env(env, parts.scheme) or _from_env(env, "all")
    if found is None:
        return None
    no_proxy = _get(env, "no_proxy")
    if no_proxy is not None and _bypassed(host, no_proxy[1]):
        return None
    name, url = found
    return ProxyChoice(url, name)


def _from_env(env: Mapping[str, str], scheme: str) -> tuple[str, str] | None:
    return _get(env, f"{scheme}_proxy")


def _get(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for variable in (name, name.upper()):
        value = env.get(variable, "").strip()
        if value:
            return variable, value
    return None


def _bypassed(host: str, no_proxy: str) -> bool:
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:  # [::1]:8080
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:  # host:port; the port is not told apart
            entry = entry.partition(":")[0]
        entry = entry.removeprefix("*").strip(".")
        if not entry:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if host == entry or host.endswith("." + entry):
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the forms the resolver also reads as IPv4: 127.1, 0x7f.1, 2130706433
            return ipaddress.IPv4Address(socket.inet_aton(host)).is_loopback
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1
    return address.is_loopback
