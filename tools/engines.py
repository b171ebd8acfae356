"""The local engines: Dynoxide (DynamoDB) and moto server.

Used by the local runner and by the tests alike, each time on ports chosen
free, so two runs never collide. Nothing here is deployed.
"""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

import logging

import boto3
import requests
from botocore.config import Config
from werkzeug.formparser import parse_form_data
from werkzeug.serving import BaseWSGIServer, make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)
ROOT = Path(__file__).resolve().parent.parent
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DYNOXIDE = ROOT / "tools/node_modules/@dynoxide/linux-x64/dynoxide"


class Dynoxide:
    """Dynoxide (open-source DynamoDB emulator on SQLite), in memory, one native binary.

    Chosen over DynamoDB Local (AWS's own licence terms, Java) and moto's
    DynamoDB (not atomic under concurrency): its transactions are atomic, it
    rejects two operations on one item as DynamoDB does, and honours
    ``ClientRequestToken``.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Dynoxide":
        if not DYNOXIDE.exists():
            raise RuntimeError("Dynoxide is not installed: run `make install` (npm ci in tools/).")
        self._process = subprocess.Popen(
            [str(DYNOXIDE), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = boto3.client(
            "dynamodb", endpoint_url=self.endpoint, region_name="us-east-1",
            config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}), **LOCAL_CREDENTIALS,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"Dynoxide exited with code {self._process.returncode}")
            try:
                client.list_tables()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Dynoxide did not answer ListTables within {timeout}s")
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()


ObjectCreated = Callable[[str, str], None]


class S3EventBridge:
    """WSGI layer in front of moto that emits S3 "Object Created" events.

    In AWS, S3 sends these to EventBridge, which invokes our Lambda; moto does
    not, so this layer calls ``on_created(bucket, key)`` in a thread after a
    successful upload (presigned POST or PUT), as the event would arrive.
    """

    def __init__(self, app: Callable, on_created: ObjectCreated) -> None:
        self._app = app
        self._on_created = on_created

    def __call__(self, environ: dict, start_response: Callable):
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        parts = [p for p in path.split("/") if p]
        key: str | None = None
        bucket = parts[0] if parts else ""
        if method == "POST" and len(parts) == 1 and "multipart/form-data" in environ.get("CONTENT_TYPE", ""):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            probe = dict(environ, **{"wsgi.input": io.BytesIO(body)})
            _, form, _ = parse_form_data(probe)
            key = form.get("key")
        elif method == "PUT" and len(parts) >= 2 and "x-amz-copy-source" not in {
            k.lower().replace("http_", "").replace("_", "-") for k in environ
        }:
            key = "/".join(parts[1:])
        status_holder: dict = {}

        def capture(status: str, headers, exc_info=None):
            status_holder["code"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        result = self._app(environ, capture)
        if key and 200 <= status_holder.get("code", 500) < 300:
            threading.Thread(target=self._on_created, args=(bucket, key), daemon=True).start()
        return result


# The function a Lambda name stands for (None: no such function); called with (event, context).
LambdaHandler = Callable[[dict, object], object]
FindLambda = Callable[[str], "LambdaHandler | None"]
INVOKE_PATH = "/2015-03-31/functions/"


class LambdaInvoke:
    """WSGI layer in front of moto that answers Lambda ``Invoke`` from the app's own handlers.

    moto runs a Lambda only in Docker; its Step Functions executions call Lambda through this
    server (``MOTO_PORT``), so the state machine's Task states reach the app's functions here,
    in this process. The answer is what Lambda gives: the handler's JSON result, or, when it
    raises, ``X-Amz-Function-Error: Unhandled`` with the ``errorType``/``errorMessage`` payload
    that Retry and Catch match on.
    """

    def __init__(self, app: Callable, find: FindLambda) -> None:
        self._app = app
        self._find = find

    def __call__(self, environ: dict, start_response: Callable):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith(INVOKE_PATH) \
                or not path.endswith("/invocations"):
            return self._app(environ, start_response)
        name = unquote(path[len(INVOKE_PATH):-len("/invocations")]).rsplit(":", 1)[-1]
        handler = self._find(name)
        if handler is None:
            return self._answer(start_response, "404 Not Found", {
                "Type": "User", "message": f"Function not found: {name}"}, {"x-amzn-ErrorType": "ResourceNotFoundException"})
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        from chalice.local import LambdaContext

        try:
            result = handler(json.loads(raw or b"{}"), LambdaContext(name, 256))
        except Exception as error:  # noqa: BLE001 - Lambda reports any exception as a function error
            return self._answer(start_response, "200 OK", {
                "errorType": type(error).__name__, "errorMessage": str(error),
                "stackTrace": traceback.format_tb(error.__traceback__)}, {"X-Amz-Function-Error": "Unhandled"})
        return self._answer(start_response, "200 OK", result, {})

    @staticmethod
    def _answer(start_response: Callable, status: str, body: object, headers: dict[str, str]):
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                ("X-Amz-Executed-Version", "$LATEST"), *headers.items()])
        return [data]


class MotoServer:
    """moto server (S3, SNS, Step Functions executing definitions) on a free port, in a thread."""

    def __init__(self, on_object_created: ObjectCreated | None = None, port: int | None = None,
                 find_lambda: FindLambda | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._on_created = on_object_created
        self._find_lambda = find_lambda
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "MotoServer":
        # moto's Step Functions call Lambda (and any service) at localhost:MOTO_PORT, read on every call.
        os.environ["MOTO_PORT"] = str(self.port)
        from moto.server import DomainDispatcherApplication, create_backend_app

        app: Callable = DomainDispatcherApplication(create_backend_app)
        if self._on_created:
            app = S3EventBridge(app, self._on_created)
        if self._find_lambda:
            app = LambdaInvoke(app, self._find_lambda)
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        # Step Functions run the definitions (moto's own default only records executions).
        requests.post(f"{self.endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                      timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()


def aws_environment(dynamodb: Dynoxide, moto: MotoServer, stage: str = "local") -> dict[str, str]:
    """Environment that points the app's boto3 and PynamoDB at the local engines."""
    return {
        "STAGE": stage,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "DYNAMODB_ENDPOINT": dynamodb.endpoint,
        "AWS_ENDPOINT_URL_S3": moto.endpoint,
        "AWS_ENDPOINT_URL_SNS": moto.endpoint,
        "AWS_ENDPOINT_URL_SFN": moto.endpoint,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "ChannelMall",
        "POWERTOOLS_SERVICE_NAME": "channel-mall",
        "POWERTOOLS_DEV": "false",
    }


def apply_environment(values: dict[str, str]) -> None:
    os.environ.update(values)
