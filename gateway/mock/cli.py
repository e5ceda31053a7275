"""Command-line face of the simulator: ``runcast mock`` flags, settings, and the server loop.

One server speaks the Assistants API, the Responses API and Chat Completions under ``/v1``.

The top-level ``runcast`` CLI adds these flags to its ``mock`` sub-command with
:func:`add_arguments`, builds :class:`MockSettings` with :func:`settings_from_args` and calls
:func:`run`. ``python -m gateway.mock.cli`` does the same on its own. As for ``runcast serve``, a
``--port`` out of range is an argparse error (exit status 2) and an address that cannot be listened
on is one line on stderr (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from gateway import flags
from gateway.errors import ConfigError, ListenError
from gateway.heap import tune_collector
from gateway.mock.app import create_app
from gateway.mock.settings import SCENARIO_NAMES, MockSettings
from gateway.mock.site import start_site

__all__ = ["add_arguments", "main", "run", "serve", "settings_from_args"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001

# (flag, MockSettings field, type, help)
_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--deltas", "deltas", int, "text deltas per assistant message"),
    ("--tokens-per-delta", "tokens_per_delta", int, "words per text delta"),
    ("--delay-ms", "delay_ms", float, "pause between deltas (0 = as fast as possible)"),
    ("--seed", "seed", int, "seed of the generated text and tool arguments"),
    ("--model", "model", str, "model name reported on runs"),
    ("--expires-in", "expires_in", float, "seconds from run creation to expiry"),
    ("--slow-start-ms", "slow_start_ms", float, "first-byte delay of slow_start runs"),
    ("--retry-after", "retry_after_s", int, "Retry-After seconds of rate_limited answers"),
    ("--poll-after-ms", "poll_after_ms", int, "openai-poll-after-ms hint on run answers"),
    ("--max-assistants", "max_assistants", int, "assistants kept (LRU)"),
    ("--max-threads", "max_threads", int, "threads kept (LRU), with their messages and runs"),
    ("--max-messages-per-thread", "max_messages_per_thread", int, "messages kept per thread"),
    ("--max-runs-per-thread", "max_runs_per_thread", int, "runs kept per thread"),
    ("--ttl", "ttl_s", float, "seconds an unused thread or assistant is kept"),
    ("--batch-bytes", "batch_bytes", int, "bytes of SSE frames coalesced per socket write"),
    ("--yield-every", "yield_every", int, "text deltas generated between event-loop yields"),
    ("--max-responses", "max_responses", int, "stored responses kept (LRU), with their events"),
    ("--max-conversations", "max_conversations", int, "conversations kept (LRU)"),
    (
        "--stream-window",
        "stream_window_s",
        float,
        "seconds a background response can be re-streamed after its creation",
    ),
)
# (flag, MockSettings field, help): the wire deviations of other servers, off by default
_WIRE_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--data-only", "data_only", "Responses frames without the `event:` line (LiteLLM)"),
    ("--responses-done", "responses_done", "`data: [DONE]` after a Responses terminal event"),
    ("--chat-no-index", "chat_no_index", "chat tool-call deltas without `index` (Gemini)"),
)
_DESCRIPTION = (
    "The simulated Assistants, Responses and Chat Completions APIs under /v1, with "
    "protocol-faithful streams. Each run, response or completion picks its scenario with "
    "metadata.mock_scenario (default --scenario)."
)
_WIRE_HELP = (
    "Deviations some servers put on the wire, for every request; each can also be chosen per "
    "request with a metadata key or, where metadata cannot be sent, a header: mock_keepalive_every "
    "(X-Mock-Keepalive-Every), mock_data_only, mock_done, mock_no_index, and mock_drop_after=N "
    "(cut the connection after event N). mock_scenario (X-Mock-Scenario) picks the scenario."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port``, ``--scenario`` and every MockSettings knob to ``parser``."""
    defaults = MockSettings()
    if parser.description is None:
        parser.description = _DESCRIPTION
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on")
    parser.add_argument("--port", type=flags.port, default=DEFAULT_PORT, help="port (0 = any free)")
    parser.add_argument(
        "--scenario",
        choices=SCENARIO_NAMES,
        default=defaults.scenario,
        help="default scenario of runs without metadata.mock_scenario",
    )
    for flag, field, kind, text in _FLAGS:
        default = getattr(defaults, field)
        parser.add_argument(
            flag, dest=field, type=kind, default=default, help=f"{text} (default {default})"
        )
    wire = parser.add_argument_group("wire deviations (Responses and Chat)", _WIRE_HELP)
    wire.add_argument(
        "--keepalive-every",
        dest="keepalive_every",
        type=int,
        default=defaults.keepalive_every,
        metavar="N",
        help="a Responses `keepalive` event after every N deltas (default 0: none)",
    )
    for flag, field, text in _WIRE_FLAGS:
        wire.add_argument(flag, dest=field, action="store_true", help=f"{text} (default off)")


def settings_from_args(ns: argparse.Namespace) -> MockSettings:
    """MockSettings from parsed arguments; raises ``ConfigError`` on invalid values."""
    values = {field: getattr(ns, field) for _, field, _, _ in _FLAGS}
    wire = {field: getattr(ns, field) for _, field, _ in _WIRE_FLAGS}
    return MockSettings(scenario=ns.scenario, keepalive_every=ns.keepalive_every, **values, **wire)


async def serve(
    settings: MockSettings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled or SIGTERM; ``on_ready`` gets the base URL once listening.
    :class:`ListenError` when ``host:port`` cannot be listened on."""
    runner = web.AppRunner(create_app(settings), shutdown_timeout=5.0)
    await runner.setup()
    try:
        url = await start_site(runner, host, port) + "/v1"
        if on_ready is not None:
            on_ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signal.SIGTERM)
    finally:
        await runner.cleanup()


def run(settings: MockSettings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the simulator in the foreground (uvloop when installed) until Ctrl+C or SIGTERM.
    When ``host:port`` cannot be listened on, says so in one line on stderr and exits with
    status 1 (``SystemExit``, as argparse exits with 2 on a bad flag)."""

    def ready(url: str) -> None:
        tune_collector()  # as runcast serve: the upstream's own pauses would delay every stream
        print(f"runcast mock listening on {url}", flush=True)

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with (
            contextlib.suppress(KeyboardInterrupt),
            asyncio.Runner(loop_factory=loop_factory) as runner,
        ):
            runner.run(serve(settings, host, port, on_ready=ready))
    except ListenError as exc:
        print(f"runcast mock: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runcast mock")
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        settings = settings_from_args(ns)
    except ConfigError as exc:
        parser.error(str(exc))
    run(settings, ns.host, ns.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
