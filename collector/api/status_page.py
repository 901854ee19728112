"""The status page at `/`: what an operator looks at (DESIGN section 11, "Looking, not reading").

One HTML page, one script and one style sheet, shipped as package data (collector/api/static/)
and served from here by an allow-list: no front-end build step, nothing fetched from another
host (its Content-Security-Policy forbids that too), so it works on a collector without
internet. The page shows nothing by itself: its script reads the JSON API (`/v1/gateways`,
`/v1/alarms?active=true`, `/v1/gaps?state=open`, `/v1/readings?every=1m`) and follows
`/v1/stream` for status, alarm and gap events, all with the browser's credentials, so it shows
exactly what the token's districts allow, like every endpoint.

Like the docs, the page needs a token (`collector.api.admission`): a browser is asked for a
user name and password and sends a token as the password; it then sends the same HTTP Basic
credentials with the page's own requests (admission takes them on `/v1` from the same origin).
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Final

from fastapi import FastAPI, HTTPException, status
from fastapi.responses import Response

PAGE_PATH: Final = "/"
ASSETS_PATH: Final = "/status"
_PAGE: Final = "status.html"
_ASSETS: Final = {
    "status.js": "text/javascript; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
}
# Only this origin, no inline script or style: an injected gateway name could run nothing, and
# a page that tried to load from a CDN would fail here first (the test proves it loads none).
_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_status_page_path(path: str) -> bool:
    """Whether `path` is the page or one of its assets (where a browser logs in with Basic)."""
    return path == PAGE_PATH or path.startswith(f"{ASSETS_PATH}/")


@functools.cache  # package data: it does not change while the collector runs
def _static(name: str) -> bytes:
    return importlib.resources.files("collector.api").joinpath("static").joinpath(name).read_bytes()


def add_status_page(app: FastAPI) -> None:
    """Serve the page at `/` and its script and style sheet under `/status/`."""

    @app.get(PAGE_PATH, include_in_schema=False)
    async def page() -> Response:
        return Response(_static(_PAGE), media_type="text/html; charset=utf-8", headers=_HEADERS)

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no status page asset {name!r}")
        return Response(_static(name), media_type=media_type, headers=_HEADERS)
