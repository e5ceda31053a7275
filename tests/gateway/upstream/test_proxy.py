"""Which proxy upstream requests go through: the configured one, the environment's, or none."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from gateway.upstream import UpstreamSettings
from gateway.upstream.proxy import ProxyChoice, check_proxy_url, upstream_proxy

API = "https://api.openai.com/v1"


def test_the_configured_proxy_wins_over_the_environment_and_applies_to_loopback() -> None:
    env = {"HTTPS_PROXY": "http://env-proxy:3128"}
    assert upstream_proxy(API, "http://flag:8080", env) == ProxyChoice(
        "http://flag:8080", "--upstream-proxy"
    )
    local = "http://127.0.0.1:8001/v1"
    assert upstream_proxy(local, "http://flag:8080", {}) == ("http://flag:8080", "--upstream-proxy")


@pytest.mark.parametrize(
    ("base_url", "env", "expected"),
    [
        (API, {"HTTPS_PROXY": "http://p:1"}, ("http://p:1", "HTTPS_PROXY")),
        (
            API,
            {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"},
            ("http://low:1", "https_proxy"),
        ),
        (API, {"HTTP_PROXY": "http://p:1"}, None),  # an https:// upstream takes https_proxy
        ("http://llm.internal:8000/v1", {"HTTP_PROXY": "http://p:1"}, ("http://p:1", "HTTP_PROXY")),
        (API, {"ALL_PROXY": "http://all:1"}, ("http://all:1", "ALL_PROXY")),
        (
            API,
            {"HTTPS_PROXY": "http://p:1", "ALL_PROXY": "http://all:1"},
            ("http://p:1", "HTTPS_PROXY"),
        ),
        (API, {"HTTPS_PROXY": "  "}, None),
        (API, {}, None),
    ],
)
def test_the_environment_names_the_proxy_by_the_upstream_scheme(
    base_url: str, env: dict[str, str], expected: tuple[str, str] | None
) -> None:
    assert upstream_proxy(base_url, None, env) == expected


@pytest.mark.parametrize(
    "no_proxy",
    [
        "api.openai.com",
        "openai.com",
        ".openai.com",
        "*.openai.com",
        "API.OpenAI.com:443",
        "*",
        "other.example, api.openai.com",
    ],
)
def test_no_proxy_names_hosts_and_domains_that_go_direct(no_proxy: str) -> None:
    env = {"HTTPS_PROXY": "http://p:1", "NO_PROXY": no_proxy}
    assert upstream_proxy(API, None, env) is None
    assert upstream_proxy("https://api.example.net/v1", None, env) == (
        None if no_proxy == "*" else ("http://p:1", "HTTPS_PROXY")
    )


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8001/v1",
        "http://127.9.9.9/v1",
        "http://localhost:8001/v1",
        "http://[::1]:8001/v1",
        "http://127.1:8001/v1",
        "http://0x7f.1:8001/v1",
        "http://[::ffff:127.0.0.1]:8001/v1",
    ],
)
def test_a_loopback_upstream_never_takes_the_environments_proxy(base_url: str) -> None:
    env = {"HTTP_PROXY": "http://p:1", "ALL_PROXY": "http://p:1"}
    assert upstream_proxy(base_url, None, env) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://proxy:3128", None),
        ("https://user:pw@proxy.corp", None),
        ("http://proxy:3128/", None),
        ("socks5://proxy:1080", "http:// or https://"),
        ("proxy:3128", "http:// or https://"),
        ("http://:3128", "names a host"),
        ("http://proxy:99999", "port"),
        ("http://proxy:3128/path", "nothing after"),
    ],
)
def test_a_proxy_url_is_checked(url: str, problem: str | None) -> None:
    found = check_proxy_url(url)
    assert found is None if problem is None else problem in (found or "")


def test_a_configured_proxy_that_is_no_url_is_a_config_error_without_its_password() -> None:
    with pytest.raises(ConfigError, match="http:// or https://") as raised:
        UpstreamSettings(base_url=API, proxy="socks5://user:hunter2@proxy:1080")
    assert "hunter2" not in str(raised.value)
    shown = repr(UpstreamSettings(base_url=API, proxy="http://user:hunter2@proxy:3128"))
    assert "hunter2" not in shown and "proxy:3128" in shown


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("10.0.0.0/8", True),
        ("10.1.2.3", True),
        ("10.1.2.3:8000", True),
        ("11.0.0.0/8", False),
        ("0.1.2.3", False),
        (",, ", False),
    ],
)
def test_no_proxy_names_addresses_and_blocks(no_proxy: str, bypassed: bool) -> None:
    env = {"HTTP_PROXY": "http://p:1", "NO_PROXY": no_proxy}
    assert (upstream_proxy("http://10.1.2.3:8000/v1", None, env) is None) is bypassed
    assert upstream_proxy("http://api.openai.com/v1", None, env) == ("http://p:1", "HTTP_PROXY")


def test_a_domain_entry_matches_whole_labels_only() -> None:
    env = {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "penai.com"}
    assert upstream_proxy(API, None, env) == ("http://p:1", "HTTPS_PROXY")
