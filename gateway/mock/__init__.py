"""A faithful simulated Assistants, Responses and Chat Completions API (``runcast mock``): the
gateway's default upstream.

Serves the run surface of spec §1 under ``/v1`` with protocol-faithful SSE streams (spec §2, §5),
scenario-driven behaviour per run (``metadata["mock_scenario"]``, see ``scenarios.py``), bounded
memory and pre-encoded frames fast enough to be a load-test target. Beside it, ``responses/`` and
``chat/`` (reference responses-and-chat.md) reuse the scenarios, the text generator, the argument
faker and the engine; their streams are event logs (``eventlog.py``) read out by
``logstream.py`` and paced by ``pacing.py``; ``turns.py`` reads where a conversation's tool
rounds stand, ``wire.py`` the per-request scenario and wire deviations.
"""

from gateway.mock.app import create_app
from gateway.mock.scenarios import SCENARIOS, Scenario
from gateway.mock.settings import MockSettings

__all__ = ["SCENARIOS", "MockSettings", "Scenario", "create_app"]
