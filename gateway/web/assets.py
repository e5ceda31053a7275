"""Static files of the viewer and the client, read once from the package and served from memory.

Each file gets a strong ``ETag`` (a hash of its bytes) and ``Cache-Control: no-cache``: browsers
keep it and revalidate (a 304 without a body), so an upgraded runcast is picked up at once.
JavaScript is served as ``text/javascript`` (RFC 9239), which module scripts require. The page
carries a Content-Security-Policy allowing only its own origin, and ``Referrer-Policy:
no-referrer`` because stream URLs may hold subscribe tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Final

from aiohttp import hdrs, web

__all__ = ["Assets"]

FILES: Final = ("runcast-client.js", "viewer.html", "viewer.js", "viewer.css")

_TYPES: Final[Mapping[str, str]] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Assets:
    """The packaged files, with their headers, keyed by file name."""

    __slots__ = ("_files",)

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._files = dict(files)

    @classmethod
    def load(cls) -> Assets:
        root = resources.files(__package__).joinpath("static")
        return cls({name: root.joinpath(name).read_bytes() for name in FILES})

    def handler(self, name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        body = self._files[name]
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {
            hdrs.CONTENT_TYPE: _TYPES[name[name.rindex(".") :]],
            hdrs.CACHE_CONTROL: "no-cache",
            hdrs.ETAG: etag,
            "Referrer-Policy": "no-referrer",
        }
        if name.endswith(".html"):
            headers["Content-Security-Policy"] = _CSP

        async def serve(request: web.Request) -> web.Response:
            if etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
                return web.Response(status=304, headers=headers)
            return web.Response(body=body, headers=headers)

        return serve
