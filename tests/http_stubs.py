"""Local HTTP servers standing in for an OpenAI-compatible endpoint and for LangSmith.

They speak real HTTP on 127.0.0.1, so the real clients (openai via langchain-openai, the langsmith
SDK) are exercised end to end; only the far side is scripted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[str, str, bytes], tuple[int, dict[str, Any] | None]]


@contextmanager
def http_server(respond: Responder) -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    """Serve ``respond(method, path, body) -> (status, json)`` and record every request."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append((self.command, self.path, dict(self.headers), body))
            status, payload = respond(self.command, self.path, body)
            data = json.dumps(payload if payload is not None else {}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = _handle

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def completion(content: str | None = None, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}_{c['name']}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c.get("args", {}))},
            }
            for i, c in enumerate(tool_calls)
        ]
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ScriptedOpenAI:
    """An OpenAI-compatible chat endpoint: structured output from a fixed spec, then a scripted plan."""

    def __init__(self, spec_request: dict[str, Any], plan: list[str], final: str):
        self.spec_request = spec_request
        self.plan = plan
        self.final = final

    def __call__(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"no route {path}"}}
        request = json.loads(body)
        if "response_format" in request:
            return 200, completion(json.dumps(self.spec_request))
        tool_names = {t["function"]["name"] for t in request.get("tools", [])}
        if "SpecRequest" in tool_names:
            return 200, completion(tool_calls=[{"name": "SpecRequest", "args": self.spec_request}])
        done = sum(1 for m in request["messages"] if m["role"] == "tool")
        if done < len(self.plan):
            return 200, completion(tool_calls=[{"name": self.plan[done]}])
        return 200, completion(self.final)
