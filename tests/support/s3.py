"""An S3-compatible server on loopback for the tests: moto's server mode, in a thread of
the test process, spoken to over HTTP with boto3 exactly as a real bucket would be.

It checks credentials as S3 does (SigV4 signatures, IAM policies): `writer` may do
anything with S3, `nobody` is a real user with no permission, and any other key is
unknown. Use `s3_server` (session-wide) and `s3_env` (a test's AWS_* environment, pointing
boto3's standard credential chain at `writer`), or `running_s3()` directly.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@contextmanager
def running_s3() -> Iterator[S3Server]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # Users are made before authentication is switched on (moto's own way to start).
        iam = boto3.session.Session().client(
            "iam", endpoint_url=endpoint, region_name=REGION,
            aws_access_key_id="setup", aws_secret_access_key="setup")
        writer = _iam_user(iam, "writer", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
        nobody = _iam_user(iam, "nobody", None)
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10
                      ).raise_for_status()
        yield S3Server(endpoint, writer, nobody)
    finally:
        # moto keeps authentication in a process-wide setting: leave it as found.
        with_auth_off = requests.post(f"{endpoint}/moto-api/reset-auth",
                                      data=str(float("inf")).encode(), timeout=10)
        with_auth_off.raise_for_status()
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_s3() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """boto3's standard chain, in this test, finds the `writer` credentials."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return s3_server
