"""The simulated Chat Completions API (reference responses-and-chat.md §4), beside the others.

Map: ``requests`` (the body, and the turn read from its messages), ``frames`` (chunk bytes, the
no-``index`` deviation), ``driver`` (the script of one completion, a task of the shared engine),
``service`` (the rules), ``routes`` (HTTP).
"""

from gateway.mock.chat.routes import CHAT_KEY, add_routes
from gateway.mock.chat.service import ChatService

__all__ = ["CHAT_KEY", "ChatService", "add_routes"]
