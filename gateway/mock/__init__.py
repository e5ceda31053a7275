"""A faithful simulated Assistants API (``runcast mock``): the gateway's default upstream.

Serves the run surface of spec §1 under ``/v1`` with protocol-faithful SSE streams (spec §2, §5),
scenario-driven behaviour per run (``metadata["mock_scenario"]``, see ``scenarios.py``), bounded
memory and pre-encoded frames fast enough to be a load-test target.
"""

from gateway.mock.app import create_app
from gateway.mock.scenarios import SCENARIOS, Scenario
from gateway.mock.settings import MockSettings

__all__ = ["SCENARIOS", "MockSettings", "Scenario", "create_app"]
