"""Stored objects as streams: the multipart `Upload` written like a file, and the
`ObjectReader` read like one. bot/exports/objects.py makes them (`ObjectStore.upload`,
`ObjectStore.open_read`) and makes the calls they send.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from bot.domain.export_errors import ObjectStoreError

if TYPE_CHECKING:
    from bot.exports.objects import ObjectStore

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PARTS = 10_000  # S3's ceiling


def part_size_for(number: int, base: int = PART_SIZE) -> int:
    """The size of part `number` (from 1). Parts grow late so that S3's 10,000 parts hold
    a large export (8 MiB parts: 39 GiB at the base size, 148 GiB in all) while memory,
    which holds two parts, stays at 16 MiB for any export under 39 GiB."""
    if number <= 5000:
        return base
    return base * 2 if number <= 8000 else base * 4


class ObjectReader:
    """A stored object as a read-only stream; its errors are ObjectStoreErrors."""

    def __init__(self, store: ObjectStore, relative: str, body: Any, size: int) -> None:
        self._store = store
        self._relative = relative
        self._body = body
        self.size = size

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size is None or size < 0 else size)
            return data
        except (botocore.exceptions.BotoCoreError, OSError) as error:
            raise self._store.error(error, "read", self._relative) from error

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._body.close()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1024 * 1024):
            yield chunk

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Upload:
    """A multipart upload written like a file. Parts are buffered in memory and sent by
    one background thread, so at most two parts are held (one filling, one sending) and
    the producer keeps going while a part travels. `complete()` makes the object appear,
    whole, under its key; `abort()` removes the parts sent so far."""

    def __init__(self, store: ObjectStore, relative: str) -> None:
        self.store = store
        self.relative = relative
        self.key = store.key(relative)
        answer = store.call("write", relative, "create_multipart_upload", Key=self.key)
        self.upload_id: str = answer["UploadId"]
        self.size = 0
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._sending: Future[dict[str, Any]] | None = None
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-upload")
        self._finished = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._finished:
            raise ValueError("the upload is finished")
        self._buffer += data
        self.size += len(data)
        wanted = part_size_for(self._next_number(), self.store.part_size)
        while len(self._buffer) >= wanted:
            self._send(bytes(self._buffer[:wanted]))
            del self._buffer[:wanted]
            wanted = part_size_for(self._next_number(), self.store.part_size)
        return len(data)

    def _next_number(self) -> int:
        return len(self._parts) + (1 if self._sending is not None else 0) + 1

    def flush(self) -> None:
        """Parts are sent as they fill; nothing to do (pyrage's writer calls it)."""

    def _send(self, part: bytes) -> None:
        self._collect()
        number = self._next_number()
        if number > MAX_PARTS:
            raise ObjectStoreError(f"{self.store.where(self.relative)} is too large for one "
                                   f"object of {MAX_PARTS} parts")
        self._sending = self._sender.submit(self._upload_part, number, part)

    def _collect(self) -> None:
        """Waits for the part being sent; its error, if any, is raised here."""
        if self._sending is not None:
            sending, self._sending = self._sending, None
            self._parts.append(sending.result())

    def _upload_part(self, number: int, part: bytes) -> dict[str, Any]:
        answer = self.store.call("write", self.relative, "upload_part", Key=self.key,
                                 UploadId=self.upload_id, PartNumber=number, Body=part)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def complete(self) -> int:
        """Sends the last part and makes the object; its size in bytes."""
        if self._finished:
            raise ValueError("the upload is finished")
        if self._buffer or not (self._parts or self._sending):
            self._send(bytes(self._buffer))  # the last part may be small, or empty
            self._buffer.clear()
        self._collect()
        self.store.conditional_write("write", self.relative, "complete_multipart_upload",
                                     Key=self.key, UploadId=self.upload_id,
                                     MultipartUpload={"Parts": self._parts})
        self._finished = True
        self._sender.shutdown()
        return self.size

    def abort(self) -> None:
        """Removes the parts sent so far; the key stays free. Safe to call twice."""
        if self._finished:
            return
        self._finished = True
        self._buffer = bytearray()
        if self._sending is not None:
            self._sending.exception()  # wait: a part still travelling would outlive the abort
            self._sending = None
        self._sender.shutdown()
        try:
            self.store.abort_upload(self.key, self.upload_id)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise self.store.error(error, "abort the upload of", self.relative) from error

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._finished:
            return
        try:
            self.abort()
        except ObjectStoreError as abort_error:
            if error is None:
                raise
            logger.warning("could not abort the upload of %s: %s",
                           self.store.where(self.relative), abort_error)
            error.add_note(f"and its upload could not be aborted: {abort_error}")
