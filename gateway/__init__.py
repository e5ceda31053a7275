"""runcast's network side: upstream client, simulator, fan-out hub, HTTP gateway and tool automation.

Top-level modules: ``cli`` (the ``runcast`` command), ``settings`` (the one settings object),
``flags`` (flag checks and documented defaults), ``logs`` (log format, ids in context, redaction),
``errors`` (the ``RuncastError`` hierarchy).
"""
