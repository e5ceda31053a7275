"""Sans-I/O parsing of run streams: bytes -> SSE events -> typed run events -> run snapshot.

Nothing in this package performs I/O or imports asyncio, aiohttp or redis.
"""
