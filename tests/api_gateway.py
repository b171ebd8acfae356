"""Deployed-shape requests: an API Gateway REST proxy event (stage ``api``) run through the real handler.

``chalice local`` never sets a stage, repeated headers (``multiValueHeaders``) or
a caller address other than 127.0.0.1; API Gateway does. These events carry
what API Gateway sends, so a test sees what the deployed function would answer.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from chalice.local import LambdaContext


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def event(method: str, path: str, resource: str, path_params: dict[str, str],
          query: dict[str, list[str]] | None = None, headers: dict[str, list[str]] | None = None,
          body: bytes | None = None, stage: str = "api", source_ip: str = "203.0.113.7",
          identity: dict[str, str] | None = None) -> dict[str, Any]:
    """The REST API proxy event for ``method path`` (``path`` as the client sent it, without the stage)."""
    headers = {"Host": ["abc123.execute-api.us-east-1.amazonaws.com"], "X-Forwarded-Proto": ["https"],
               **(headers or {})}
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": {k: v[-1] for k, v in headers.items()}, "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_params, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": f"/{stage}{path}",
                           "stage": stage, "requestId": str(uuid.uuid4()), "accountId": "123456789012",
                           "apiId": "abc123", "identity": {"sourceIp": source_ip, **(identity or {})}},
        "body": body.decode() if body is not None else None, "isBase64Encoded": False,
    }


def invoke(system, request: dict[str, Any]) -> Answer:
    """Run the event through the app's Lambda handler, as API Gateway would."""
    raw = system.app.app(request, LambdaContext("api_handler", 256))
    headers = {k: v for k, v in (raw.get("headers") or {}).items()}
    for k, values in (raw.get("multiValueHeaders") or {}).items():
        headers[k] = values[-1]
    return Answer(raw["statusCode"], headers, raw.get("body") or "")
