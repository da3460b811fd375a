"""An S3-compatible object store for exports, over boto3.

Keys are relative to the store's URL, `s3://bucket/prefix`. Credentials come from boto3's
standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an instance role), the
endpoint from EXPORT_S3_ENDPOINT for stores other than AWS. Every failure is an
ObjectStoreError (bot.domain.export_errors) whose message says what to fix; botocore's standard
retry mode retries throttling, 5xx answers and dropped connections, which is safe because
every call here is idempotent (a part uploaded twice replaces itself).

Nothing is ever overwritten: an upload to a key that exists is refused before it starts,
and its final write is conditional (`If-None-Match: *`), which S3, R2, MinIO and moto
honour, so two writers racing for one key cannot both win.
"""

from __future__ import annotations

from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from bot.domain.export_errors import ObjectStoreError
from bot.domain.exports import split_export_url
from bot.exports.object_streams import MIN_PART_SIZE, PART_SIZE, MiB, ObjectReader, Upload

_ACCESS_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                           "AllAccessDisabled", "ExpiredToken", "InvalidToken",
                           "InvalidSecurity", "AccountProblem", "403", "Forbidden"})
_UNREACHABLE = (botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ResponseStreamingError)
_NO_CREDENTIALS = (botocore.exceptions.NoCredentialsError,
                   botocore.exceptions.PartialCredentialsError)


def parse_store_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; the prefix is '' or ends with '/'. The
    rules are bot.domain.exports.split_export_url's, which the settings check too."""
    return split_export_url(url)


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) or str(
        error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class ObjectStore:
    """One bucket and prefix of an S3-compatible store."""

    def __init__(self, url: str, *, endpoint_url: str | None = None,
                 region: str | None = None, part_size: int = PART_SIZE,
                 max_attempts: int = 5, connect_timeout: float = 10,
                 read_timeout: float = 60) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"parts are at least {MIN_PART_SIZE} bytes")
        self.url = url
        self.bucket, self.prefix = parse_store_url(url)
        self.endpoint_url = endpoint_url or None
        self.part_size = part_size
        options: dict[str, Any] = {
            "retries": {"mode": "standard", "max_attempts": max_attempts},
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        if self.endpoint_url:
            # Stores other than AWS: path-style addressing works on all of them, and
            # botocore's newer default checksums are not understood by every one.
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=region,
            config=botocore.config.Config(**options))

    # Names and errors.

    def key(self, relative: str) -> str:
        """The full key of `relative` (a key under the store's prefix)."""
        if not relative or relative.startswith("/") or ".." in relative.split("/"):
            raise ValueError(f"{relative!r} is not a key under the export URL")
        return self.prefix + relative

    def where(self, relative: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{relative}"

    def error(self, error: Exception, action: str, relative: str = "") -> ObjectStoreError:
        """The ObjectStoreError saying what `error` means for a person."""
        where = self.where(relative)
        if isinstance(error, botocore.exceptions.ClientError):
            code = _code(error)
            if code == "NoSuchBucket":
                return ObjectStoreError(f"bucket {self.bucket!r} does not exist "
                                        f"(EXPORT_URL {self.where()})", "no_bucket")
            if code in _ACCESS_CODES:
                return ObjectStoreError(
                    f"the object store refused to {action} {where} ({code}): check the "
                    "credentials and that they may read, write and delete there",
                    "access_denied")
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload"):
                return ObjectStoreError(f"{where} does not exist", "not_found")
            if code in ("PreconditionFailed", "412"):
                return ObjectStoreError(f"{where} already exists; an export never "
                                        "overwrites an object", "exists")
            message = str(error.response.get("Error", {}).get("Message", ""))[:200]
            return ObjectStoreError(f"the object store failed to {action} {where}: {code}"
                                    + (f" ({message})" if message else ""))
        if isinstance(error, _UNREACHABLE):
            endpoint = self.endpoint_url or "AWS S3"
            return ObjectStoreError(f"cannot reach the object store at {endpoint} to "
                                    f"{action} {where}", "unreachable")
        if isinstance(error, _NO_CREDENTIALS):
            return ObjectStoreError(
                "no object store credentials found: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or give the machine a role)",
                "access_denied")
        return ObjectStoreError(f"the object store failed to {action} {where}: "
                                f"{type(error).__name__}")

    def call(self, action: str, relative: str, method: str, **arguments: Any) -> Any:
        """The client's `method` on this bucket; its failure as an ObjectStoreError."""
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **arguments)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise self.error(error, action, relative) from error

    # Reading.

    def check(self) -> None:
        """ObjectStoreError unless the bucket exists and these credentials reach it; for
        doctor and before an export starts."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as error:
            if _code(error) in ("404", "NoSuchBucket", "NotFound"):
                raise ObjectStoreError(f"bucket {self.bucket!r} does not exist "
                                       f"(EXPORT_URL {self.where()})", "no_bucket") from error
            raise self.error(error, "read", "") from error
        except botocore.exceptions.BotoCoreError as error:
            raise self.error(error, "read", "") from error

    def exists(self, relative: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(relative))
        except botocore.exceptions.ClientError as error:
            if _code(error) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self.error(error, "read", relative) from error
        except botocore.exceptions.BotoCoreError as error:
            raise self.error(error, "read", relative) from error
        return True

    def size(self, relative: str) -> int:
        answer = self.call("read", relative, "head_object", Key=self.key(relative))
        return int(answer["ContentLength"])

    def open_read(self, relative: str) -> ObjectReader:
        """The object as a stream (`read(n)`), read as it is consumed."""
        answer = self.call("read", relative, "get_object", Key=self.key(relative))
        return ObjectReader(self, relative, answer["Body"], int(answer["ContentLength"]))

    def get_bytes(self, relative: str, *, limit: int = 16 * MiB) -> bytes:
        """A small object (a manifest, SHA256SUMS) whole; ObjectStoreError above `limit`."""
        with self.open_read(relative) as reader:
            if reader.size > limit:
                raise ObjectStoreError(f"{self.where(relative)} is {reader.size} bytes, "
                                       f"more than the {limit} expected")
            return reader.read()

    def list_folders(self, relative_prefix: str = "") -> list[str]:
        """Names of the folders directly under `relative_prefix` ('' or ending in '/'),
        sorted, without their trailing '/'."""
        if relative_prefix and not relative_prefix.endswith("/"):
            raise ValueError("a folder prefix ends with '/'")
        prefix = self.prefix + relative_prefix
        names = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/")
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    names.append(common["Prefix"][len(prefix):].rstrip("/"))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise self.error(error, "list", relative_prefix) from error
        return sorted(name for name in names if name)

    def list_keys(self, relative_prefix: str) -> dict[str, int]:
        """Every object under `relative_prefix`: key relative to it -> size."""
        prefix = self.prefix + relative_prefix
        found: dict[str, int] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    found[item["Key"][len(prefix):]] = int(item["Size"])
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise self.error(error, "list", relative_prefix) from error
        return found

    # Writing.

    def _refuse_existing(self, relative: str) -> None:
        if self.exists(relative):
            raise ObjectStoreError(f"{self.where(relative)} already exists; an export never "
                                   "overwrites an object", "exists")

    def conditional_write(self, action: str, relative: str, method: str,
                          **arguments: Any) -> Any:
        """A write with `If-None-Match: *`; a store that does not implement conditional
        writes gets the plain write, the existence check before it standing alone."""
        try:
            return getattr(self.client, method)(Bucket=self.bucket, IfNoneMatch="*",
                                                **arguments)
        except botocore.exceptions.ClientError as error:
            if _code(error) != "NotImplemented":
                raise self.error(error, action, relative) from error
        except botocore.exceptions.BotoCoreError as error:
            raise self.error(error, action, relative) from error
        return self.call(action, relative, method, **arguments)

    def put_bytes(self, relative: str, data: bytes, *,
                  content_type: str = "application/octet-stream") -> None:
        """A small object in one request; ObjectStoreError (reason "exists") when the key
        is taken."""
        self._refuse_existing(relative)
        self.conditional_write("write", relative, "put_object", Key=self.key(relative),
                               Body=data, ContentType=content_type)

    def upload(self, relative: str) -> Upload:
        """A multipart upload to a key that must not exist yet. Use it as a context
        manager: leaving the block without `complete()` (an exception) aborts it."""
        self._refuse_existing(relative)
        return Upload(self, relative)

    def delete_folder(self, relative_prefix: str) -> int:
        """Removes every object under `relative_prefix` (which ends in '/') and aborts the
        multipart uploads in progress there (a killed export's parts); the number of
        objects removed."""
        if not relative_prefix.endswith("/") or relative_prefix == "/":
            raise ValueError("delete_folder takes a folder: a non-empty prefix ending in '/'")
        self.key(relative_prefix)  # the same checks as a key
        prefix = self.prefix + relative_prefix
        removed = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for upload in page.get("Uploads", []):
                    self.abort_upload(upload["Key"], upload["UploadId"])
            keys = [item["Key"] for page in self.client.get_paginator("list_objects_v2")
                    .paginate(Bucket=self.bucket, Prefix=prefix)
                    for item in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):
                batch = keys[start:start + 1000]
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise ObjectStoreError(
                        f"the object store did not delete {len(answer['Errors'])} object(s) "
                        f"under {self.where(relative_prefix)}, e.g. {first.get('Key')}: "
                        f"{first.get('Code')}")
                removed += len(batch)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise self.error(error, "delete", relative_prefix) from error
        return removed

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Aborts a multipart upload (full key); one already gone is not an error."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                               UploadId=upload_id)
        except botocore.exceptions.ClientError as error:
            if _code(error) not in ("NoSuchUpload", "404"):
                raise

