"""The simulated Responses API (reference responses-and-chat.md §1-§3), beside the Assistants one.

Map: ``requests`` (bodies read), ``objects`` (Response, items, usage), ``frames`` (SSE bytes,
wire deviations), ``log`` (a response's numbered frames, one writer, pulling readers),
``driver`` (the script of one response, a task of the shared engine), ``store`` (bounded records
of responses and conversations), ``service`` (the rules and the turn logic), ``routes`` (HTTP).
"""

from gateway.mock.responses.routes import RESPONSES_KEY, add_routes
from gateway.mock.responses.service import ResponsesService

__all__ = ["RESPONSES_KEY", "ResponsesService", "add_routes"]
