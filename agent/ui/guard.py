"""Refuse any HTTP request or websocket that a page from another origin sends.

Chainlit's socket server accepts every origin, so without this any web page could connect to the chat and
press its buttons; browsers always send Origin on websockets and on requests that change something.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("aegis.ui")


class OriginGuard:
    """ASGI middleware: requests without Origin (not a browser page) or from an allowed one pass."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = Headers(scope=scope).get("origin") if scope["type"] in ("http", "websocket") else None
        if origin is None or origin.rstrip("/") in self.allowed:
            await self.app(scope, receive, send)
            return
        log.warning("refused a %s request from origin %r", scope["type"], origin[:200])
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await PlainTextResponse("This origin may not use the Aegis-ML chat.", status_code=403)(scope, receive, send)
