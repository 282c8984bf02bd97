"""Item images: an S3 bucket through aioboto3, or files under the data directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aioboto3
from botocore.config import Config
from opentelemetry.trace import Span, SpanKind

from webapp.observability.tracing import tracer

_tracer = tracer(__name__)


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    async def url(self, key: str) -> str: ...
    async def close(self) -> None: ...


class ImageNotFound(Exception):
    """No stored image under this key."""


class LocalStorage:
    """Images as files; the app serves them at /images/<key>."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ImageNotFound(key)
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self.path_for(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Write then rename, so a crash never leaves a half image under the final name.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as error:
            raise ImageNotFound(key) from error

    async def delete(self, key: str) -> None:
        """Remove the image; nothing happens when there is none."""
        path = self.path_for(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    async def url(self, key: str) -> str:
        return f"/images/{key}"

    async def close(self) -> None:
        return None


class S3Storage:
    """Images in S3 (or any S3 API, such as moto or LocalStack via AWS_ENDPOINT_URL)."""

    def __init__(
        self,
        bucket: str,
        *,
        region: str,
        endpoint_url: str | None,
        presign_ttl_s: int,
        cdn_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url
        self.presign_ttl_s = presign_ttl_s
        self.cdn_url = cdn_url
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client(  # type: ignore[call-overload]
                "s3",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}),
            )
        )

    def _span(self, operation: str) -> contextlib.AbstractContextManager[Span]:
        # aioboto3 has no OpenTelemetry instrumentation; these spans follow its AWS conventions.
        return _tracer.start_as_current_span(
            f"S3.{operation}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "aws-api", "rpc.service": "S3", "rpc.method": operation,
                        "aws.s3.bucket": self.bucket},
        )  # fmt: skip

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._span("PutObject"):
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes:
        with self._span("GetObject"):
            try:
                response = await self._client.get_object(Bucket=self.bucket, Key=key)
            except self._client.exceptions.NoSuchKey as error:
                raise ImageNotFound(key) from error
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def delete(self, key: str) -> None:
        """Remove the image; S3 answers alike whether or not there was one."""
        with self._span("DeleteObject"):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def url(self, key: str) -> str:
        """Where a browser fetches the photo: under the CDN when there is one (a plain URL, the
        same for every shopper, so the CDN and browsers cache it), else a presigned bucket URL."""
        if self.cdn_url:
            return f"{self.cdn_url}/{quote(key)}"
        url: str = await self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.presign_ttl_s,
        )
        return url

    async def close(self) -> None:
        await self._stack.aclose()
