"""Tool automation: answering ``requires_action`` with Python handlers and signed webhooks.

Modules, one job each: ``registry`` (the ``@tool`` marker, ``ToolRegistry``), ``handlers`` (a
call, the Python-function handler, output encoding), ``webhook`` (HTTP handler, request signing
and :func:`verify_signature` for receivers), ``executor`` (one action's calls: concurrency,
timeouts, failures, deadline), ``events`` (``runcast.tool_call.*`` visibility events),
``outcome`` (``Submit | Skip | Cancel``), ``settings`` (``ToolSettings``) and ``automation``
(``ToolAutomation``, the seam the run relay and the Responses/Chat tool chains call).

``runcast serve --tools my_pkg.tools`` registers the module's ``@tool`` functions; code that
embeds runcast passes a registry instead::

    tools = ToolRegistry()
    tools.register(get_weather)                     # or ToolRegistry.from_module(my_tools)
    app = gateway.http.create_app(Settings(tools=ToolSettings(timeout=10)), tools=tools)
"""

from .automation import AutomationStatistics, ToolAutomation
from .events import Emit
from .executor import ActionResult, CallResult, ExecutorStatistics, ToolExecutor
from .handlers import Handler, PythonHandler, ToolCall
from .outcome import ActionOutcome, Cancel, Skip, Submit, ToolOutput
from .registry import ToolRegistry, tool
from .settings import ToolSettings, parse_webhook_args
from .webhook import WebhookHandler, sign, verify_signature

__all__ = [
    "ActionOutcome",
    "ActionResult",
    "AutomationStatistics",
    "CallResult",
    "Cancel",
    "Emit",
    "ExecutorStatistics",
    "Handler",
    "PythonHandler",
    "Skip",
    "Submit",
    "ToolAutomation",
    "ToolCall",
    "ToolExecutor",
    "ToolOutput",
    "ToolRegistry",
    "ToolSettings",
    "WebhookHandler",
    "parse_webhook_args",
    "sign",
    "tool",
    "verify_signature",
]
