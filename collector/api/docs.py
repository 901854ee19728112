"""`/docs` without internet: Swagger UI from the installed `swagger-ui-py` package.

FastAPI's own /docs page loads Swagger UI from a CDN, and a province's collector often has no
route to the internet. This page names only local assets, served from the package's folder
by an allow-list (no other file of it is reachable). Swagger UI 5 is needed: FastAPI writes
OpenAPI 3.1, which Swagger UI 4 refuses to render. Its online validator badge is turned off.

These pages need a token like every route (`collector.api.admission`); from a browser, a
token is typed as the password of the browser's own login prompt (`is_docs_path` says where).
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, HTTPException, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

DOCS_PATH: Final = "/docs"
ASSETS_PATH: Final = "/docs/assets"
_ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


OPENAPI_PATH: Final = "/openapi.json"
_PROBLEM_NOTE: Final = re.compile(r" \(RFC 9457[^)]*\)")  # what a GET's error carries


def is_docs_path(path: str) -> bool:
    """Whether `path` is one of the docs pages (where a browser may log in with HTTP Basic)."""
    return path in (DOCS_PATH, OPENAPI_PATH) or path.startswith(f"{ASSETS_PATH}/")


def document_head_without_content(openapi: dict[str, Any]) -> None:
    """Say in an OpenAPI document that HEAD answers carry no content (RFC 9110 9.3.2).

    FastAPI documents a HEAD route's answers as its GET's, JSON body and problem documents
    included; the server sends the headers alone. Changes `openapi` in place.
    """
    for path_item in openapi.get("paths", {}).values():
        for response in path_item.get("head", {}).get("responses", {}).values():
            response.pop("content", None)
            description = _PROBLEM_NOTE.sub("", response.get("description", ""))
            response["description"] = f"{description} (headers only)"


def swagger_ui_folder() -> Path:
    """The folder of the Swagger UI files that the `swagger-ui-py` package ships."""
    return Path(str(importlib.resources.files("swagger_ui").joinpath("static")))


def add_offline_docs(app: FastAPI, folder: Path | None = None) -> None:
    """Serve `/docs` and its assets under `/docs/assets/` from `folder` (default: the package).

    The app must be built with `docs_url=None`, so that FastAPI's CDN page is not there too.
    """
    assets = swagger_ui_folder() if folder is None else folder
    openapi_url = app.openapi_url or OPENAPI_PATH

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        media_type = _ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no docs asset {name!r}")
        return FileResponse(assets / name, media_type=media_type)
