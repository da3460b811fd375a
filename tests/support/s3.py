"""An S3-compatible server on loopback for the tests: moto's server mode, in a thread of
the test process, spoken to over HTTP with boto3 exactly as a real bucket would be.

It checks credentials as S3 does (SigV4 signatures, IAM policies): `writer` may do
anything with S3, `nobody` is a real user with no permission, and any other key is
unknown. Use `s3_server` (session-wide) and `s3_env` (a test's AWS_* environment, pointing
boto3's standard credential chain at `writer`), or `shared_s3()` directly.
"""

from __future__ import annotations

import atexit
import http.client
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.config
import pytest
import requests
from moto.server import ThreadedMotoServer

from tests.support.postgres import free_port

REGION = "us-east-1"
_bucket_numbers = itertools.count(1)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    writer: Credentials  # may do anything with S3
    nobody: Credentials  # a real user with no permission

    def client(self, credentials: Credentials | None = None) -> Any:
        who = credentials or self.writer
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=who.access_key_id, aws_secret_access_key=who.secret_access_key,
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          retries={"mode": "standard", "max_attempts": 2}))

    def environment(self, credentials: Credentials | None = None) -> dict[str, str]:
        """AWS_* variables for boto3's standard chain (a test's or the bot's), and no
        shared files or instance metadata that could answer instead."""
        who = credentials or self.writer
        return {
            "AWS_ACCESS_KEY_ID": who.access_key_id,
            "AWS_SECRET_ACCESS_KEY": who.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"exports-{next(_bucket_numbers)}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def uploads_in_progress(self, bucket: str, prefix: str = "") -> list[str]:
        answer = self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return sorted(upload["Key"] for upload in answer.get("Uploads", []))


def _iam_user(iam: Any, name: str, policy: dict[str, Any] | None) -> Credentials:
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy",
                            PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


_shared: S3Server | None = None
_shared_lock = threading.Lock()


def shared_s3() -> S3Server:
    """The test process's S3 server, started on first use and stopped at exit. One per
    process, because moto keeps its buckets, users and authentication switch in
    process-wide state."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _start()
        return _shared


def _start() -> S3Server:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    atexit.register(server.stop)
    endpoint = f"http://127.0.0.1:{port}"
    # Users are made before authentication is switched on (moto's own way to start).
    iam = boto3.session.Session().client(
        "iam", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="setup", aws_secret_access_key="setup")
    writer = _iam_user(iam, "writer", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    nobody = _iam_user(iam, "nobody", None)
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
    return S3Server(endpoint, writer, nobody)


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    return shared_s3()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """boto3's standard chain, in this test, finds the `writer` credentials."""
    use_credentials(monkeypatch, s3_server)
    return s3_server


def use_credentials(patch: pytest.MonkeyPatch, server: S3Server,
                    credentials: Credentials | None = None) -> None:
    """Points boto3's standard chain at `credentials` (`writer` by default)."""
    for name, value in server.environment(credentials).items():
        patch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        patch.delenv(name, raising=False)


class FailingProxy:
    """A loopback HTTP proxy in front of the S3 server that answers `500 InternalError`
    to every request `fails(method, path)` picks and forwards the rest unchanged (the
    Host header too, so signatures still hold): a store that breaks half-way through an
    upload, yet still answers the abort that cleans up after it."""

    def __init__(self, target: str, fails: Callable[[str, str], bool]) -> None:
        self.target = target.removeprefix("http://")
        self.fails = fails
        self.failed: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.fails(self.command, self.path):
                    proxy.failed.append(f"{self.command} {self.path}")
                    error = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                             b"InternalError</Code><Message>injected</Message></Error>")
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                upstream = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                # A HEAD's Content-Length is the object's; every other answer is resent
                # whole, with its own length.
                dropped = {"transfer-encoding", "connection"}
                if self.command != "HEAD":
                    dropped.add("content-length")
                    self.send_header("Content-Length", str(len(data)))
                for key, value in answer.getheaders():
                    if key.lower() not in dropped:
                        self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FailingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
