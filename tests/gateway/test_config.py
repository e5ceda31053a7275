"""gateway.config: defaults < TOML file < RUNCAST_* variables < flags, errors naming key, value
and source, and ``runcast config`` printing the effective configuration."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway import config
from gateway.cli import build_parser, settings_from_args
from gateway.errors import ConfigError

SECRET = "s" * 40


def _load(tmp_path: Path, toml: str | None, env: dict[str, str], *argv: str) -> config.Effective:
    if toml is not None:
        path = tmp_path / "runcast.toml"
        path.write_text(toml)
        env = {"RUNCAST_CONFIG": str(path), **env}
    from gateway.cli import _SERVE_RULES

    return config.load(build_parser().parse_args(["serve", *argv]), env, rules=_SERVE_RULES)


def test_each_layer_overrides_the_one_before(tmp_path: Path) -> None:
    toml = 'port = 9001\nhost = "127.0.0.2"\ndrain_timeout = 5\n[hub]\nretention = 60\n'
    env = {"RUNCAST_PORT": "9002", "RUNCAST_HUB_RETENTION": "70"}
    effective = _load(tmp_path, toml, env, "--port", "9003")
    settings, sources = effective.settings, effective.sources
    assert (settings.port, settings.host, settings.drain_timeout) == (9003, "127.0.0.2", 5.0)
    assert settings.hub.retention == 70.0
    assert sources["port"] == "flag --port"
    assert sources["host"] == f"file {tmp_path / 'runcast.toml'}"
    assert sources["hub.retention"] == "env RUNCAST_HUB_RETENTION"
    assert "token_ttl" not in sources  # a default


def test_every_key_has_a_variable_and_lists_and_maps_parse(tmp_path: Path) -> None:
    env = {
        "RUNCAST_UPSTREAM_BASE_URL": "http://127.0.0.1:9/v1",
        "RUNCAST_UPSTREAM_IDLE_TIMEOUT": "7.5",
        "RUNCAST_UPSTREAM_ANSWER_TIMEOUT": "900",
        "RUNCAST_API_KEYS": "k1, k2",
        "RUNCAST_TOKEN_SECRET": SECRET,
        "RUNCAST_CORS_ORIGINS": "https://a.example,https://b.example",
        "RUNCAST_TOOLS_WEBHOOKS": "get=https://hooks.example/get,*=https://hooks.example/any",
        "RUNCAST_TOOLS_WEBHOOK_SECRET": "w" * 16,
        "RUNCAST_ACCESS_LOG": "false",
        "RUNCAST_HUB_MEMORY_BUDGET": "64MiB",
        "RUNCAST_SIMULATOR_SCENARIO": "tool_call",
        "RUNCAST_LOG_FORMAT": "json",
    }
    settings = _load(tmp_path, None, env).settings
    assert settings.upstream is not None and settings.upstream.idle_timeout == 7.5
    assert settings.upstream.answer_timeout == 900.0
    assert settings.api_keys == ("k1", "k2")
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.tools.webhooks == {
        "get": "https://hooks.example/get",
        "*": "https://hooks.example/any",
    }
    assert settings.access_log is False and settings.log_format == "json"
    assert settings.hub.memory_budget == 64 << 20
    assert settings.simulator.scenario == "tool_call"
    names = {config.env_name(key) for key in config.setting_keys()}
    assert {"RUNCAST_PORT", "RUNCAST_HUB_RETENTION", "RUNCAST_TOOLS_TIMEOUT"} <= names


def test_the_answer_timeout_comes_from_its_flag(tmp_path: Path) -> None:
    argv = ("--upstream", "http://127.0.0.1:9/v1", "--upstream-answer-timeout", "1200")
    effective = _load(tmp_path, None, {"RUNCAST_API_KEYS": "rk-1"}, *argv)
    assert effective.settings.upstream is not None
    assert effective.settings.upstream.answer_timeout == 1200.0
    assert effective.sources["upstream.answer_timeout"] == "flag --upstream-answer-timeout"


def test_documented_aliases_and_the_upstream_key_variable(tmp_path: Path) -> None:
    env = {
        "RUNCAST_UPSTREAM_URL": "http://127.0.0.1:9/v1",
        "MY_KEY": "sk-upstream",
        "RUNCAST_API_KEYS": "k",
    }
    effective = _load(tmp_path, None, env, "--upstream-key-env", "MY_KEY")
    assert effective.settings.upstream is not None
    assert effective.settings.upstream.api_key == "sk-upstream"
    assert effective.sources["upstream.api_key"] == "env MY_KEY"
    assert effective.sources["upstream.base_url"] == "env RUNCAST_UPSTREAM_URL"


def test_every_serve_flag_is_a_settings_key() -> None:
    parser = build_parser()
    serve = next(a for a in parser._actions if a.dest == "command").choices["serve"]  # type: ignore[union-attr]
    keys = config.setting_keys()
    for action in serve._actions:
        if action.option_strings and action.dest not in ("help", *config.NOT_SETTINGS):
            assert config.FLAG_KEYS.get(action.dest, action.dest) in keys, action.dest


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        (
            None,
            {"RUNCAST_PORT": "eighty"},
            "port = 'eighty' (from env RUNCAST_PORT): invalid int value",
        ),
        ("[hub]\nretention = -1\n", {}, "hub.retention = -1 (from file "),
        ("[hub]\nretentoin = 5\n", {}, "unknown key 'hub.retentoin'"),
        ("port = [", {}, "not TOML"),
        (
            None,
            {"RUNCAST_TOKEN_SECRET": "short"},
            "token_secret = *** (from env RUNCAST_TOKEN_SECRET)",
        ),
        ('log_format = "xml"\n', {}, "log_format = 'xml' (from file "),
        (
            None,
            {"RUNCAST_ACCESS_LOG": "maybe"},
            "access_log = 'maybe' (from env RUNCAST_ACCESS_LOG)",
        ),
        (
            None,
            {"RUNCAST_TOKEN_TTL": "inf"},
            "token_ttl = inf (from env RUNCAST_TOKEN_TTL): token_ttl must be a finite number",
        ),
        (
            # Its rule is > 0 (0 is refused so): infinity is refused in the same words.
            None,
            {"RUNCAST_HUB_RETENTION": "inf"},
            "hub.retention = 'inf' (from env RUNCAST_HUB_RETENTION): must be a finite number > 0,",
        ),
        (
            None,
            {"RUNCAST_METRICS_ADDRESS": "nope"},
            "metrics_address = 'nope' (from env RUNCAST_METRICS_ADDRESS): metrics_address must",
        ),
    ],
)
def test_refusals_name_key_value_and_source(
    tmp_path: Path, toml: str | None, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, toml, env)
    assert message in str(refused.value)
    assert "short" not in str(refused.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope\.toml"):
        settings_from_args(
            build_parser().parse_args(["serve", "--config", str(tmp_path / "nope.toml")]), {}
        )


def test_rendered_config_is_toml_that_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    env = {
        "RUNCAST_UPSTREAM_URL": "http://127.0.0.1:9/v1",
        "OPENAI_API_KEY": "sk-upstream-secret",
        "RUNCAST_API_KEYS": "rk-one,rk-two",
        "RUNCAST_TOKEN_SECRET": SECRET,
        "RUNCAST_TOOL_WEBHOOK_SECRET": "w" * 16,
    }
    effective = _load(
        tmp_path, "[hub]\nretention = 42\n", env, "--tool-webhook", "*=https://h.example"
    )
    text = config.render(effective)
    for secret in ("sk-upstream-secret", "rk-one", SECRET):
        assert secret not in text
    lines = text.splitlines()
    assert 'api_keys = ["***", "***"]  # env RUNCAST_API_KEYS' in lines
    assert "retention = 42.0  # file " + str(tmp_path / "runcast.toml") in lines
    assert 'webhooks = { "*" = "https://h.example" }  # flag --tool-webhook' in lines
    assert "token_ttl = 3600.0  # default" in lines
    parsed = tomllib.loads(text)
    parsed["api_keys"] = ["rk-one", "rk-two"]
    parsed["token_secret"] = SECRET
    parsed["upstream"]["api_key"] = "sk-upstream-secret"
    parsed["tools"]["webhook_secret"] = "x" * 16
    round_trip = tmp_path / "effective.toml"
    import tomli_w

    round_trip.write_text(tomli_w.dumps(parsed))
    again = config.load(build_parser().parse_args(["serve", "--config", str(round_trip)]), {})
    assert again.settings.hub == effective.settings.hub
    assert again.settings.upstream == effective.settings.upstream
    assert again.settings.api_keys == effective.settings.api_keys


def test_rendered_config_masks_credentials_inside_urls(tmp_path: Path) -> None:
    # A Redis password and a webhook's userinfo and query key are secrets too.
    env = {"RUNCAST_TOKEN_SECRET": SECRET, "RUNCAST_TOOL_WEBHOOK_SECRET": "w" * 16}
    effective = _load(
        tmp_path,
        None,
        env,
        "--broker",
        "redis://:redisPW@127.0.0.1:6379/0",
        "--tool-webhook",
        "x=https://hookuser:hookPW@h.example/hook?code=AZUREKEY&v=2",
        "--upstream",
        "https://api.example.com/v1",
        "--upstream-proxy",
        "http://egress:proxyPW@proxy.corp:3128",
    )
    assert effective.settings.upstream is not None
    assert effective.settings.upstream.proxy == "http://egress:proxyPW@proxy.corp:3128"
    text = config.render(effective)
    for secret in ("redisPW", "hookuser", "hookPW", "AZUREKEY", "proxyPW"):
        assert secret not in text
    lines = text.splitlines()
    assert 'proxy = "http://***@proxy.corp:3128"  # flag --upstream-proxy' in lines
    assert 'broker = "redis://***@127.0.0.1:6379/0"  # flag --broker' in lines
    assert 'webhooks = { x = "https://***@h.example/***?code=***&v=***" }' in text


SLACK = "https://hooks.slack.com/services/T000/B000/XOXSLACKPATHSECRET42"


def test_a_webhook_urls_path_is_masked_in_the_config_and_its_refusals(tmp_path: Path) -> None:
    # A Slack-style webhook's path is its credential: logs showed it /***, but `runcast config`
    # and a refused configuration (no signing secret) printed it whole.
    env = {"RUNCAST_TOKEN_SECRET": SECRET, "RUNCAST_TOOL_WEBHOOK_SECRET": "w" * 16}
    text = config.render(_load(tmp_path, None, env, "--tool-webhook", f"notify={SLACK}"))
    assert 'webhooks = { notify = "https://hooks.slack.com/***" }' in text
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, None, {"RUNCAST_TOKEN_SECRET": SECRET}, "--tool-webhook", f"n={SLACK}")
    assert "signing secret" in str(refused.value)
    assert "XOXSLACK" not in str(refused.value) and "/services" not in str(refused.value)
    assert "https://hooks.slack.com/***" in str(refused.value)


def test_an_upstream_url_with_credentials_is_refused_without_showing_them(tmp_path: Path) -> None:
    # aiohttp refuses every request whose URL has userinfo beside an Authorization header, and
    # runcast always sends one: the upstream key belongs in OPENAI_API_KEY.
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, None, {}, "--upstream", "http://user:upPW@127.0.0.1:9/v1")
    assert "credentials" in str(refused.value)
    assert "upPW" not in str(refused.value)
    assert "http://***@127.0.0.1:9/v1" in str(refused.value)


def _runcast_config(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """``runcast config`` run as a process in ``env`` alone."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "config", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_runcast_config_process_prints_the_effective_configuration(tmp_path: Path) -> None:
    path = tmp_path / "runcast.toml"
    path.write_text('log_format = "json"\n')
    env = {"PATH": "/usr/bin:/bin", "RUNCAST_CONFIG": str(path), "RUNCAST_TOKEN_SECRET": SECRET}
    done = _runcast_config(env, "--port", "9100")
    assert done.returncode == 0, done.stderr
    assert "port = 9100  # flag --port" in done.stdout.splitlines()
    assert f'log_format = "json"  # file {path}' in done.stdout.splitlines()
    assert 'token_secret = "***"  # env RUNCAST_TOKEN_SECRET' in done.stdout.splitlines()
    assert SECRET not in done.stdout
    bad = _runcast_config({**env, "RUNCAST_HUB_HEARTBEAT_INTERVAL": "-3"})
    assert bad.returncode == 2
    assert bad.stderr.startswith(
        "runcast config: error: hub.heartbeat_interval = '-3' (from env "
        "RUNCAST_HUB_HEARTBEAT_INTERVAL)"
    )


def test_the_redis_tail_bound_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    toml = "[broker_tail]\nmax_events = 500\nmax_bytes = 65536\n"
    effective = _load(tmp_path, toml, {"RUNCAST_BROKER_TAIL_MAX_EVENTS": "700"})
    tail = effective.settings.broker_tail
    assert (tail.max_events, tail.max_bytes, tail.max_total_bytes) == (700, 65536, 64 << 20)
    assert effective.sources["broker_tail.max_events"] == "env RUNCAST_BROKER_TAIL_MAX_EVENTS"


def test_upstream_settings_without_an_upstream_are_named_as_ignored(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-from-the-shell", "RUNCAST_UPSTREAM_IDLE_TIMEOUT": "5"}
    simulator = _load(tmp_path, None, env, "--max-stream-bytes", "1MiB")
    assert config.ignored(simulator) == [
        "upstream.idle_timeout (env RUNCAST_UPSTREAM_IDLE_TIMEOUT)",
        "upstream.max_stream_bytes (flag --max-stream-bytes)",
    ]
    upstream = ("--upstream", "http://127.0.0.1:9/v1", "--max-stream-bytes", "1MiB")
    env["RUNCAST_API_KEYS"] = "rk-1"
    assert config.ignored(_load(tmp_path, None, env, *upstream)) == []


def test_unknown_runcast_variables_are_named_with_the_closest_known_one() -> None:
    env = {
        "RUNCAST_HUB_RETENTON": "10m",  # a typo: its setting would stay at the default unseen
        "RUNCAST_SOMETHING_ELSE": "1",
        "RUNCAST_HUB_RETENTION": "10m",
        "RUNCAST_UPSTREAM_URL": "http://127.0.0.1:1/v1",  # an alias
        "RUNCAST_CONFIG": "runcast.toml",
        "RUNCAST_WORKER_INDEX": "0",
        "HOME": "/root",
    }
    assert config.unknown_variables(env) == [
        "RUNCAST_HUB_RETENTON is not a runcast variable and is ignored "
        "(did you mean RUNCAST_HUB_RETENTION?)",
        "RUNCAST_SOMETHING_ELSE is not a runcast variable and is ignored",
    ]
    every_key = {config.env_name(key): "x" for key in config.setting_keys()}
    assert config.unknown_variables(every_key) == []


def test_runcast_config_warns_of_a_misspelt_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "RUNCAST_HUB_RETENTON": "10m", "RUNCAST_TOKEN_SECRET": SECRET}
    done = _runcast_config(env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "runcast config: warning: RUNCAST_HUB_RETENTON is not a runcast variable and is "
        "ignored (did you mean RUNCAST_HUB_RETENTION?)\n"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RUNCAST_HUB_SWEEP_INTERVAL", "0"),
        ("RUNCAST_HUB_SWEEP_INTERVAL", "-1"),
        ("RUNCAST_HUB_SWEEP_INTERVAL", "nan"),
        ("RUNCAST_HUB_IDLE_TTL", "inf"),
        ("RUNCAST_HUB_PENDING_GRACE", "-1"),
        ("RUNCAST_HUB_CLOSE_TIMEOUT", "nan"),
        ("RUNCAST_BROKER_TAIL_MAX_EVENTS", "-1"),
        ("RUNCAST_BROKER_TAIL_MAX_TOTAL_BYTES", "-1"),
        ("RUNCAST_UPSTREAM_BACKOFF_MAX", "nan"),
        ("RUNCAST_UPSTREAM_RETRY_AFTER_MAX", "nan"),
        ("RUNCAST_UPSTREAM_KEEPALIVE_TIMEOUT", "nan"),
        ("RUNCAST_UPSTREAM_ANSWER_TIMEOUT", "0"),
        ("RUNCAST_UPSTREAM_ANSWER_TIMEOUT", "nan"),
    ],
)
def test_impossible_hub_tail_and_upstream_times_are_refused(
    tmp_path: Path, name: str, value: str
) -> None:
    # A sweep interval of 0 spun a core, NaN stopped the heartbeats and the expiry of channels;
    # -1 and NaN were taken for every other of these times and sizes.
    env = {name: value, "RUNCAST_TOKEN_SECRET": SECRET}
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, None, env, "--upstream", "http://127.0.0.1:9/v1")
    key = name.removeprefix("RUNCAST_").lower().replace("hub_", "hub.", 1)
    key = key.replace("broker_tail_", "broker_tail.").replace("upstream_", "upstream.", 1)
    assert str(refused.value).startswith(f"{key} = '{value}' (from env {name}): ")


def test_a_config_file_not_in_utf8_is_one_line_error(tmp_path: Path) -> None:
    # A Latin-1 file ended in UnicodeDecodeError's traceback.
    path = tmp_path / "latin1.toml"
    path.write_bytes('log_format = "t\xe9xt"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml: not UTF-8"):
        _load(tmp_path, None, {"RUNCAST_CONFIG": str(path)})


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (["--tool-webhook", "w=http://[bad/x"], {}, "is not a URL"),
        ([], {"RUNCAST_TOOLS_WEBHOOKS": "w=http://[bad/x"}, "is not a URL"),
        (["--broker", "redis://127.0.0.1:notaport/0"], {}, "Port could not be cast"),
        (["--broker", "redis://127.0.0.1:6379/0?socket_timeout=abc"], {}, "socket_timeout"),
        ([], {"RUNCAST_BACKLOG": "99999999999999999999999"}, "at most 2147483647"),
    ],
)
def test_values_that_ended_in_a_traceback_are_config_errors(
    tmp_path: Path, argv: list[str], env: dict[str, str], said: str
) -> None:
    # A webhook URL's IPv6 host left open, a broker URL redis could not parse and a backlog past
    # a C int all passed the configuration and ended runcast in a traceback.
    env = {"RUNCAST_TOKEN_SECRET": SECRET, "RUNCAST_TOOL_WEBHOOK_SECRET": "w" * 16, **env}
    with pytest.raises(ConfigError, match=said):
        _load(tmp_path, None, env, *argv)
