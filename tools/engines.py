"""The local engines: Dynoxide (DynamoDB) and moto server.

Used by the local runner and by the tests alike, each time on ports chosen
free, so two runs never collide. Nothing here is deployed.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import logging

import boto3
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


class MotoServer:
    """moto server (S3, SNS, Step Functions) on a free port, in a thread."""

    def __init__(self, on_object_created: ObjectCreated | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._on_created = on_object_created
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "MotoServer":
        from moto.server import DomainDispatcherApplication, create_backend_app

        app: Callable = DomainDispatcherApplication(create_backend_app)
        if self._on_created:
            app = S3EventBridge(app, self._on_created)
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
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
