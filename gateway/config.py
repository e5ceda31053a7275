"""Where each setting of ``runcast serve`` comes from: defaults, a TOML file, the environment, flags.

:func:`load` fills the one :class:`~gateway.settings.Settings` in that order, each layer over the
one before: the defaults in the settings classes; a TOML file (``--config PATH`` or
``RUNCAST_CONFIG``) laid out like the settings (top-level keys, then ``[upstream]``, ``[hub]``,
``[tools]``, ``[simulator]`` tables); a ``RUNCAST_*`` variable for every key (``hub.retention`` is
``RUNCAST_HUB_RETENTION``; lists comma-separated, maps ``name=value,...``; the upstream key in the
variable ``--upstream-key-env`` names, ``OPENAI_API_KEY`` by default); then the flags. Every key
is a dotted path into the settings (:func:`keys`), and every value keeps its source, so a refused
value is reported with its key, the value and where it came from (:class:`ConfigError`), and
``runcast config`` prints the effective configuration with each value's source (:func:`render`).
"""

from __future__ import annotations

import argparse
import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec
import tomli_w

from gateway.errors import ConfigError
from gateway.logs import masked_url
from gateway.settings import Settings
from gateway.tools import parse_webhook_args

__all__ = [
    "FLAG_KEYS",
    "Effective",
    "env_name",
    "ignored",
    "load",
    "render",
    "setting_keys",
]

Kind = Literal["scalar", "list", "map"]

FLAG_KEYS: Mapping[str, str] = {
    "upstream": "upstream.base_url",
    "upstream_organization": "upstream.organization",
    "upstream_project": "upstream.project",
    "upstream_proxy": "upstream.proxy",
    "upstream_connect_timeout": "upstream.connect_timeout",
    "upstream_first_byte_timeout": "upstream.first_byte_timeout",
    "upstream_answer_timeout": "upstream.answer_timeout",
    "upstream_idle_timeout": "upstream.idle_timeout",
    "max_stream_bytes": "upstream.max_stream_bytes",
    "api_key": "api_keys",
    "cors_origin": "cors_origins",
    "allowed_host": "allowed_hosts",
    "history_events": "hub.max_history_events",
    "history_bytes": "hub.max_history_bytes",
    "retention": "hub.retention",
    "subscriber_buffer_bytes": "hub.subscriber_buffer_bytes",
    "max_subscribers_per_channel": "hub.max_subscribers_per_channel",
    "max_subscribers": "hub.max_subscribers",
    "heartbeat": "hub.heartbeat_interval",
    "max_pending_per_client": "hub.max_pending_channels_per_client",
    "memory_budget": "hub.memory_budget",
    "coalesce_ms": "hub.coalesce_ms",
    "tools": "tools.modules",
    "tool_webhook": "tools.webhooks",
    "tool_webhook_secret": "tools.webhook_secret",
    "tool_policy": "tools.policy",
    "tool_timeout": "tools.timeout",
    "tool_concurrency": "tools.concurrency",
    "tool_max_rounds": "tools.max_rounds",
    "tool_on_error": "tools.on_error",
    "tool_expiry_margin": "tools.expiry_margin",
    "show_requires_action": "tools.show_requires_action",
    "tool_events_to_creator": "tools.emit_tool_events_to_creator",
    "sim_port": "simulator_port",
    "sim_scenario": "simulator.scenario",
    "sim_delay_ms": "simulator.delay_ms",
    "sim_deltas": "simulator.deltas",
}
"""``runcast serve`` flags (by argparse ``dest``) whose key is not their own name; any other
flag's ``dest`` is a top-level key (``--port`` is ``port``)."""

NOT_SETTINGS = frozenset({"command", "config", "upstream_key_env"})
"""Arguments that choose where settings come from rather than being one."""

_ENV_ALIASES: Mapping[str, str] = {
    # Names documented before every key had a variable; both are read, the alias first.
    "upstream.base_url": "RUNCAST_UPSTREAM_URL",
    "tools.webhook_secret": "RUNCAST_TOOL_WEBHOOK_SECRET",
}
_OTHER_VARIABLES = frozenset({"RUNCAST_CONFIG", "RUNCAST_WORKER_INDEX"})
"""Variables read besides one per key: the config file, and a ``--workers`` worker's index."""
SECRETS = frozenset({"api_keys", "token_secret", "upstream.api_key", "tools.webhook_secret"})
# URLs may carry credentials (a Redis password, a webhook's userinfo or query key): shown masked.
URLS = frozenset({"broker", "upstream.base_url", "upstream.proxy", "tools.webhooks"})
# A webhook URL's path may be its credential (Slack's /services/T.../B.../<secret>): shown /***,
# as the logs show it.
PATH_SECRETS = frozenset({"tools.webhooks"})
_AT = re.compile(r" - at `\$\.?([\w.\[\]]*)`$")
_UNKNOWN = re.compile(r"unknown field `(\w+)`")


class Effective(msgspec.Struct, frozen=True, kw_only=True):
    """The settings and, for every key set anywhere but the defaults, where its value came from."""

    settings: Settings
    sources: dict[str, str]


def setting_keys() -> dict[str, Kind]:
    """Every settings key (``hub.retention``) and whether its value is a scalar, list or map."""
    found: dict[str, Kind] = {}
    _walk(msgspec.inspect.type_info(Settings), "", found)
    return found


def _walk(info: msgspec.inspect.Type, prefix: str, found: dict[str, Kind]) -> None:
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        key = prefix + field.name
        nested = _struct(field.type)
        if nested is not None:
            _walk(nested, key + ".", found)
        elif isinstance(field.type, msgspec.inspect.DictType):
            found[key] = "map"
        elif isinstance(
            field.type,
            msgspec.inspect.VarTupleType | msgspec.inspect.ListType | msgspec.inspect.SetType,
        ):
            found[key] = "list"
        else:
            found[key] = "scalar"


def _struct(info: msgspec.inspect.Type) -> msgspec.inspect.StructType | None:
    if isinstance(info, msgspec.inspect.StructType):
        return info
    if isinstance(info, msgspec.inspect.UnionType):
        structs = [t for t in info.types if isinstance(t, msgspec.inspect.StructType)]
        return structs[0] if len(structs) == 1 else None
    return None


def env_name(key: str) -> str:
    return "RUNCAST_" + key.replace(".", "_").upper()


def load(
    ns: argparse.Namespace,
    env: Mapping[str, str],
    *,
    rules: Mapping[str, Callable[[str], Any]] | None = None,
) -> Effective:
    """The settings of a ``runcast serve`` command line ``ns`` in the environment ``env``.

    ``rules``: the flags' value checks by ``dest`` (``gateway.flags``), applied to the same keys'
    values from the file and the environment too. Raises :class:`ConfigError` naming the key,
    the value and its source when one is refused.
    """
    schema = setting_keys()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = getattr(ns, "config", None) or env.get("RUNCAST_CONFIG") or None
    if path:
        for key, value in _file_values(path, schema).items():
            values[key], sources[key] = value, f"file {path}"
    for key, (value, source) in _env_values(env, schema, ns).items():
        values[key], sources[key] = value, source
    by_key = {FLAG_KEYS.get(dest, dest): rule for dest, rule in (rules or {}).items()}
    for key, value in list(values.items()):
        if key in by_key:
            values[key] = _checked(key, value, sources[key], by_key[key])
    for key, (value, source) in _flag_values(ns).items():
        values[key], sources[key] = value, source
    return Effective(settings=_build(values, sources), sources=sources)


def ignored(effective: Effective) -> list[str]:
    """The keys set (with their source) that do not apply: ``upstream.*`` without an upstream
    (the embedded simulator's settings are its own). The upstream key is left out: a shell's
    ``OPENAI_API_KEY`` is no mistake."""
    if effective.settings.upstream is not None:
        return []
    return [
        f"{key} ({source})"
        for key, source in effective.sources.items()
        if key.startswith("upstream.") and key != "upstream.api_key"
    ]


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A line for each ``RUNCAST_*`` variable set in ``env`` that runcast does not read (a typo
    such as ``RUNCAST_HUB_RETENTON`` would otherwise leave its setting at the default unseen),
    naming the closest variable it does read when one is near."""
    known = {env_name(key) for key in setting_keys()}
    known.update(_ENV_ALIASES.values())
    known.update(_OTHER_VARIABLES)
    lines = []
    for name in sorted(env):
        if not name.startswith("RUNCAST_") or name in known:
            continue
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {near[0]}?)" if near else ""
        lines.append(f"{name} is not a runcast variable and is ignored{hint}")
    return lines


def _checked(key: str, value: Any, source: str, rule: Callable[[str], Any]) -> Any:
    try:
        if isinstance(value, list):
            return [rule(str(item)) for item in value]
        return rule(str(value))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"{key} = {_shown(key, value)} (from {source}): {exc}") from None


def _file_values(path: str, schema: Mapping[str, Kind]) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path}: not UTF-8 (TOML is): {exc.reason} at byte {exc.start}"
        ) from None
    flat: dict[str, Any] = {}

    def visit(table: Mapping[str, Any], prefix: str) -> None:
        for name, value in table.items():
            key = prefix + name
            if key in schema:
                flat[key] = value
            elif isinstance(value, dict) and any(k.startswith(key + ".") for k in schema):
                visit(value, key + ".")
            else:
                raise ConfigError(f"config file {path}: unknown key {key!r}")

    visit(document, "")
    return flat


def _env_values(
    env: Mapping[str, str], schema: Mapping[str, Kind], ns: argparse.Namespace
) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for key, kind in schema.items():
        for name in (_ENV_ALIASES.get(key), env_name(key)):
            raw = env.get(name) if name else None
            if raw:
                found[key] = (_from_text(raw, kind), f"env {name}")
                break
    key_var = getattr(ns, "upstream_key_env", None) or "OPENAI_API_KEY"
    if env.get(key_var) and "upstream.api_key" not in found:
        found["upstream.api_key"] = (env[key_var], f"env {key_var}")
    return found


def _from_text(raw: str, kind: Kind) -> Any:
    if kind == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if kind == "map":
        return parse_webhook_args(item for item in raw.split(",") if item.strip())
    return raw


def _flag_values(ns: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for dest, value in vars(ns).items():
        if value is None or dest in NOT_SETTINGS:
            continue
        key = FLAG_KEYS.get(dest, dest)
        flag = "--" + dest.replace("_", "-")
        if dest == "tool_webhook":
            value = parse_webhook_args(value)
        elif dest in ("access_log", "metrics"):
            value = value == "on"
        elif dest == "viewer":
            flag = "--no-viewer"
        found[key] = (value, f"flag {flag}")
    return found


def _build(values: Mapping[str, Any], sources: Mapping[str, str]) -> Settings:
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith("upstream.") and "upstream.base_url" not in values:
            continue  # no upstream: the embedded simulator, whose settings are its own
        *tables, leaf = key.split(".")
        target = nested
        for table in tables:
            target = target.setdefault(table, {})
        target[leaf] = value
    try:
        return msgspec.convert(nested, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_blame(str(exc), values, sources)) from None
    except ConfigError as exc:
        raise ConfigError(_blame(str(exc), values, sources)) from None


def _blame(message: str, values: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """``message`` with the key it is about, that key's value and its source."""
    at = _AT.search(message)
    if at is not None:
        path = at.group(1).split("[")[0]
        message = message[: at.start()]
        unknown = _UNKNOWN.search(message)
        key = f"{path}.{unknown.group(1)}" if unknown and path else path
    else:
        key = _mentioned(message, values)
    if not key or key not in values:
        return message
    return f"{key} = {_shown(key, values[key])} (from {sources[key]}): {message}"


def _mentioned(message: str, values: Mapping[str, Any]) -> str | None:
    """The most specific key set anywhere whose name the message mentions."""
    named = [
        k
        for k in values
        if any(
            re.search(rf"\b{re.escape(name)}\b", message)
            for name in (k.rsplit(".", 1)[-1], k.rsplit(".", 1)[-1].replace("_", " "))
        )
    ]
    return max(named, key=len) if len(named) == 1 else None


def render(effective: Effective) -> str:
    """The effective configuration as TOML: every key, secrets masked, each value's source.

    Valid as a config file (top-level keys first, then one table each); unset keys are comments.
    """
    flat = _flatten(msgspec.to_builtins(effective.settings), "")
    sections: dict[str, list[str]] = {}
    for key in setting_keys():
        section, _, leaf = key.rpartition(".")
        lines = sections.setdefault(section, [])
        source = effective.sources.get(key, "default")
        if section == "upstream" and "upstream.base_url" not in flat:
            if not lines:
                lines.append("# not set: the embedded simulator (default)")
            continue
        value = flat.get(key)
        if value is None:
            lines.append(f"# {leaf} is not set  ({source})")
            continue
        if key in SECRETS:
            value = ["***" for _ in value] if isinstance(value, list | tuple) else "***"
        elif key in URLS:
            value = _masked(value, path=key not in PATH_SECRETS)
        if isinstance(value, dict):
            pairs = ", ".join(tomli_w.dumps({k: v}).strip() for k, v in value.items())
            text = f"{leaf} = {{ {pairs} }}" if pairs else f"{leaf} = {{}}"
        elif isinstance(value, list | tuple):
            text = f"{leaf} = [{', '.join(_inline(item) for item in value)}]"
        else:
            text = tomli_w.dumps({leaf: value}).strip()
        lines.append(f"{text}  # {source}")
    out = sections.pop("", [])
    for section, lines in sections.items():
        out += ["", f"[{section}]" if not lines[0].startswith("# not set") else f"# [{section}]"]
        out += lines
    return "\n".join(out) + "\n"


def _masked(value: Any, *, path: bool = True) -> Any:
    if isinstance(value, str):
        return masked_url(value, path=path)
    if isinstance(value, dict):
        return {k: _masked(v, path=path) for k, v in value.items()}
    return value


def _shown(key: str, value: Any) -> str:
    """How a refused value is quoted in its error: never a secret, nor a URL's credentials."""
    if key in SECRETS:
        return "***"
    return repr(_masked(value, path=key not in PATH_SECRETS) if key in URLS else value)


def _inline(value: Any) -> str:
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _flatten(tree: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    schema = setting_keys()
    for name, value in tree.items():
        key = prefix + name
        if isinstance(value, dict) and key not in schema:
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat
