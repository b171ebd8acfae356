"""The function URL door on this machine: what AWS does in front of ``app.channel_door``.

An HTTP request becomes the payload 2.0 event a Lambda function URL sends (raw path and query as sent,
``cookies`` split out, header names lower-case, repeats comma-joined, the body base64-encoded), the handler's
answer becomes the HTTP response (``cookies`` as ``Set-Cookie`` lines). So the local system has both doors:
``chalice local`` for API Gateway's, this for the function URL's.
"""
from __future__ import annotations

import base64
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from chalice.local import LambdaContext

from tools.local_server import BurstServer

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def url_event(method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str) -> dict:
    """The payload 2.0 event for one request (``target`` = path and query exactly as sent)."""
    raw_path, _, raw_query = target.partition("?")
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        joined.setdefault(name.lower(), []).append(value)
    cookies = [c.strip() for v in joined.pop("cookie", []) for c in v.split(";") if c.strip()]
    pairs: dict[str, list[str]] = {}
    for part in raw_query.split("&") if raw_query else ():
        key, _, value = part.partition("=")
        pairs.setdefault(key, []).append(value)
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": raw_query,
        "headers": {name: ",".join(values) for name, values in joined.items()},
        "queryStringParameters": {k: ",".join(v) for k, v in pairs.items()} or None,
        "requestContext": {"accountId": "anonymous", "apiId": "local", "domainName": joined.get("host", [""])[0],
                           "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                           "timeEpoch": int(time.time() * 1000),
                           "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                                    "sourceIp": source_ip, "userAgent": joined.get("user-agent", [""])[0]}},
        "body": base64.b64encode(body).decode() if body else None, "isBase64Encoded": bool(body),
    }
    if cookies:
        event["cookies"] = cookies
    return event


class LocalDoor:
    """A threaded HTTP server handing each request to the door's handler as a function URL would."""

    def __init__(self, handler: Handler, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        door = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event = url_event(self.command, self.path, list(self.headers.items()), body, self.client_address[0])
                door.answer(self, handler(event, LambdaContext("channel_door", 1024)))

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
                pass

        self._server = BurstServer(("127.0.0.1", port), Request)

    @staticmethod
    def answer(request: BaseHTTPRequestHandler, response: dict[str, Any]) -> None:
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
        request.send_response(response["statusCode"])
        for name, value in (response.get("headers") or {}).items():
            if name.lower() != "content-length":
                request.send_header(name, value)
        for cookie in response.get("cookies") or []:
            request.send_header("Set-Cookie", cookie)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def start(self) -> "LocalDoor":
        threading.Thread(target=self._server.serve_forever, daemon=True, name="function-url-door").start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

