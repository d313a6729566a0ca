"""Headers every gateway response carries, and the API docs page.

- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and a Content-Security-Policy
  that allows nothing (the API serves JSON) except on `/docs`, which may load its own scripts
  and styles (from this server: Swagger UI comes from a pip-installed bundle, no CDN).
- `Cache-Control: no-store` on everything under `/api` and `/v2` (account data), unless the
  route set its own.

A plain ASGI middleware (not Starlette's BaseHTTPMiddleware), so streaming responses and
WebSockets pass through untouched.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "console_routes", "docs_routes"]

API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)
# the web console at / (its own scripts and styles from /console/, no inline code, no CDN)
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PRIVATE_PREFIXES = ("/api/", "/v2/", "/v1beta1/")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        csp = DOCS_CSP if path == "/docs" or path.startswith("/docs/") else API_CSP
        if path == "/" or path.startswith("/console/"):
            csp = CONSOLE_CSP
        private = path.startswith(PRIVATE_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", csp.encode()),
                ]
                if private:
                    extra.append((b"cache-control", b"no-store"))
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MBT API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
DOCS_INIT = (
    'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true});\n"
)


def docs_routes() -> list[Route | Mount]:
    """`/docs` (Swagger UI over /openapi.json), its init script and the bundle's assets."""
    from swagger_ui_bundle import swagger_ui_path

    async def page(request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    async def init(request: Request) -> Response:
        return Response(DOCS_INIT, media_type="application/javascript")

    return [
        Route("/docs", page),
        Route("/docs/init.js", init),
        Mount("/docs/static", StaticFiles(directory=Path(swagger_ui_path)), name="docs-static"),
    ]


CONSOLE_DIR = Path(__file__).parent / "console"


def console_routes() -> list[Route | Mount]:
    """The web console's static assets (shipped in the package; no build step)."""
    return [Mount("/console", app=StaticFiles(directory=CONSOLE_DIR), name="console")]


def console_page() -> str:
    return (CONSOLE_DIR / "index.html").read_text()
