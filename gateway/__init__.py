"""runcast's network side: upstream client, simulator, fan-out hub, HTTP gateway and tool automation.

Top-level modules: ``cli`` (the ``runcast`` command), ``settings`` (the one settings object),
``config`` (where each setting comes from: file, environment, flags), ``flags`` (flag checks and
documented defaults), ``logs`` (log format, ids in context, redaction), ``metrics`` (the
Prometheus registry and its hooks), ``tracing`` (OpenTelemetry spans, optional), ``workers``
(``--workers N``: worker processes on one port), ``errors`` (the ``RuncastError`` hierarchy).
"""
