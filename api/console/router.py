"""Serves the operator console at ``/console``: plain static files, no build step, no server-side rendering.

The pages are public (they hold no data); every figure they show comes from the ``/v1`` routes with the bearer
token the operator pasted, kept in sessionStorage, so the console has exactly the API's authentication and roles.
"""

from __future__ import annotations

import os
from importlib import resources
from os import stat_result
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

#: Package data of ``api.console`` (installed unzipped by pip, so a real directory StaticFiles can serve).
STATIC_DIR = Path(str(resources.files("api.console").joinpath("static")))
MOUNT = "/console"

#: The page may load only its own files and call only its own origin; no inline script. Inline styles are allowed:
#: lightweight-charts sets style attributes on the elements it builds.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class ConsoleFiles(StaticFiles):
    """Static files with the console's security headers; no caching of the HTML so a deploy is seen at once."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"
        return response


def add_console(app: FastAPI) -> None:
    """Mount the console: ``/console`` redirects to ``/console/``, which serves ``index.html``."""

    @app.get(MOUNT, include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse(f"{MOUNT}/", status_code=307)

    app.mount(MOUNT, ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
