"""The upload page: one HTML file, one script and one stylesheet shipped in the package.

No build step, no CDN, nothing fetched from outside: the page works on an offline line PC. A strict
Content-Security-Policy allows only this origin's script and style (no inline script), and images
from ``data:``/``blob:`` URLs (the Grad-CAM overlay and the local preview of the upload).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> str:
    """A file of the page (only the fixed names below are ever asked for)."""
    return resources.files("defectlens.serve").joinpath("static", name).read_text(encoding="utf-8")


def router() -> APIRouter:
    api = APIRouter(tags=["page"])

    @api.get("/", response_class=HTMLResponse, summary="The upload page (open; it asks for the API key if needed)")
    def index() -> HTMLResponse:
        return HTMLResponse(asset("index.html"), headers=HEADERS)

    @api.get("/static/app.js", summary="The upload page's script")
    def script() -> Response:
        return Response(asset("app.js"), media_type="text/javascript; charset=utf-8", headers=HEADERS)

    @api.get("/static/style.css", summary="The upload page's stylesheet")
    def style() -> Response:
        return Response(asset("style.css"), media_type="text/css; charset=utf-8", headers=HEADERS)

    return api
