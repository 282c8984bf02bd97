"""Photos for imports, from ``http(s)://`` URLs, ``s3://bucket/key`` objects and local paths.

Every source is bounded the same way: at most ``concurrency`` fetches at once, at most the
upload size read (counted while streaming, so an endless answer stops at the cap), the content
recognised from its first bytes rather than from what the server says it is. URLs go through
the address guard (webapp/imports/guard.py) on every hop, redirects included.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import random
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import aioboto3
import httpcore
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from webapp.config import ImportSettings, StorageSettings
from webapp.imports.guard import (
    AddressGuard,
    GuardedBackend,
    RefusedAddress,
    Resolver,
    parse_allowed,
    system_resolver,
)

USER_AGENT = "Prethrift-Import/1 (+catalog photo fetch)"
_REDIRECTS = {301, 302, 303, 307, 308}
_RETRIED = {429, 500, 502, 503, 504}


class FetchError(Exception):
    """A photo that could not be fetched; ``kind`` is a short machine word for the summary."""

    def __init__(
        self, kind: str, message: str, *, retry_after: float | None = None, retry: bool = False
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry = retry or retry_after is not None
        self.retry_after = retry_after


@dataclass(frozen=True)
class Validators:
    """What a previous fetch of the same source answered, for a conditional request."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    """A photo's bytes (None when the source answered "not modified" to the validators)."""

    data: bytes | None
    validators: Validators
    content_type: str | None = None

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else None


def sniff(data: bytes) -> str | None:
    """The image type the bytes begin with (the formats uploads accept), else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _checked_photo(data: bytes, where: str) -> str:
    kind = sniff(data)
    if kind is None:
        raise FetchError("not_image", f"{where} is not a JPEG, PNG, WebP or GIF photo (by its first bytes)")
    return kind


def _retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    return None


class PhotoFetcher:
    """Fetches photos for imports; use as ``async with PhotoFetcher(...) as fetcher``."""

    def __init__(
        self,
        settings: ImportSettings,
        storage: StorageSettings,
        *,
        local_root: Path | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.max_bytes = storage.max_image_bytes
        self.local_root = local_root.resolve() if local_root else None
        self._storage = storage
        self.guard = AddressGuard(resolver, settings.allow_private_hosts, parse_allowed(settings.allowed_hosts))
        self._slots = asyncio.Semaphore(settings.concurrency)
        # httpcore reads no proxy settings from the environment: a proxy would connect to
        # addresses the guard never saw.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=settings.concurrency,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(self.guard),
        )
        self._stack = contextlib.AsyncExitStack()
        self._s3: Any = None

    async def __aenter__(self) -> PhotoFetcher:
        await self._stack.enter_async_context(self._pool)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def fetch(self, source: str, validators: Validators | None = None) -> Fetched:
        """The photo at ``source``, retried as the settings say; FetchError says why not."""
        source = source.strip()
        scheme = urlsplit(source).scheme.lower()
        async with self._slots:
            if scheme in ("http", "https"):
                return await self._with_retries(lambda: self._http(source, validators), source)
            if scheme == "s3":
                return await self._with_retries(lambda: self._s3_get(source, validators), source)
            if scheme:
                raise FetchError(
                    "bad_source", f"{source!r}: photos come from http(s)://, s3:// or a local path"
                )
            return await asyncio.to_thread(self._local, source)

    async def _with_retries(self, once: Any, source: str) -> Fetched:
        s = self.settings
        for attempt in range(s.attempts):
            try:
                async with asyncio.timeout(s.total_timeout_s):
                    result: Fetched = await once()
                    return result
            except TimeoutError:
                error = FetchError("timeout", f"{source} did not answer within the time allowed", retry=True)
            except FetchError as failed:
                error = failed
            if not error.retry or attempt + 1 == s.attempts:
                raise error
            wait = s.backoff_base_s * 2**attempt * (0.5 + random.random())  # jitter: retries spread out
            if error.retry_after is not None:
                if error.retry_after > s.max_retry_after_s:
                    raise FetchError(error.kind, f"{error.message}; it asks to wait {error.retry_after:.0f}s")
                wait = max(wait, error.retry_after)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    # -- http(s) --------------------------------------------------------------------------------

    async def _http(self, url: str, validators: Validators | None) -> Fetched:
        for _hop in range(self.settings.max_redirects + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchError("bad_source", f"{url!r} is not an http(s) URL with a host")
            headers = [
                ("Host", parts.netloc.rpartition("@")[2]),
                ("User-Agent", USER_AGENT),
                ("Accept", "image/*"),
                ("Accept-Encoding", "identity"),
            ]
            if validators and validators.etag:
                headers.append(("If-None-Match", validators.etag))
            if validators and validators.last_modified:
                headers.append(("If-Modified-Since", validators.last_modified))
            s = self.settings
            timeout = {"connect": s.connect_timeout_s, "read": s.read_timeout_s, "write": s.read_timeout_s,
                       "pool": s.total_timeout_s}  # fmt: skip
            try:
                async with self._pool.stream(
                    "GET", url, headers=headers, extensions={"timeout": timeout}
                ) as answer:
                    found = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in answer.headers}
                    if answer.status in _REDIRECTS and "location" in found:
                        url = urljoin(url, found["location"])
                        continue
                    return await self._answer(url, answer, found, validators)
            except RefusedAddress as refused:
                raise FetchError("refused_address", str(refused)) from None
            except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.RemoteProtocolError) as error:
                raise FetchError("unreachable", f"{url}: {type(error).__name__} {error}", retry=True) from None
            except ConnectionError as error:
                raise FetchError("unreachable", f"{url}: {error}") from None
        raise FetchError("too_many_redirects", f"more than {self.settings.max_redirects} redirects")

    async def _answer(
        self, url: str, answer: httpcore.Response, headers: dict[str, str], validators: Validators | None
    ) -> Fetched:
        got = Validators(headers.get("etag"), headers.get("last-modified"))
        if answer.status == 304 and validators is not None:
            return Fetched(
                None, Validators(got.etag or validators.etag, got.last_modified or validators.last_modified)
            )
        if answer.status in _RETRIED:
            raise FetchError(
                "http_error",
                f"{url} answered {answer.status}",
                retry_after=_retry_after(headers.get("retry-after"), time.time()),
                retry=True,
            )
        if answer.status != 200:
            raise FetchError("not_found" if answer.status in (404, 410) else "http_error",
                             f"{url} answered {answer.status}")  # fmt: skip
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError("too_large", f"{url} is {declared} bytes; photos may be {self.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.aiter_stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchError("too_large", f"{url} is over {self.max_bytes} bytes; photos may be that")
            chunks.append(chunk)
        data = b"".join(chunks)
        return Fetched(data, got, _checked_photo(data, url))

    # -- s3 -------------------------------------------------------------------------------------

    async def _s3_client(self) -> Any:
        if self._s3 is None:
            session = aioboto3.Session()
            self._s3 = await self._stack.enter_async_context(
                session.client(  # type: ignore[call-overload]
                    "s3",
                    region_name=self._storage.region,
                    endpoint_url=self._storage.endpoint_url,
                    config=Config(
                        signature_version="s3v4",
                        connect_timeout=self.settings.connect_timeout_s,
                        read_timeout=self.settings.read_timeout_s,
                        retries={"max_attempts": 1},  # this module retries, with its own backoff
                    ),
                )
            )
        return self._s3

    async def _s3_get(self, source: str, validators: Validators | None) -> Fetched:
        parts = urlsplit(source)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if not bucket or not key:
            raise FetchError("bad_source", f"{source!r} is not s3://BUCKET/KEY")
        client = await self._s3_client()
        ask: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if validators and validators.etag:
            ask["IfNoneMatch"] = validators.etag
        try:
            answer = await client.get_object(**ask)
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            code = str(error.response.get("Error", {}).get("Code", status))
            if status == 304 and validators is not None:
                return Fetched(None, validators)
            if status in _RETRIED or code in ("SlowDown", "RequestTimeout"):
                raise FetchError("http_error", f"{source}: {code}", retry=True) from None
            kind = "not_found" if code in ("NoSuchKey", "NoSuchBucket", "404") else "http_error"
            raise FetchError(kind, f"{source}: {code}") from None
        except BotoCoreError as error:
            raise FetchError("unreachable", f"{source}: {error}", retry=True) from None
        got = Validators(answer.get("ETag"), None)
        body = answer["Body"]
        async with body:  # closes the connection, read to the end or not
            if int(answer.get("ContentLength") or 0) > self.max_bytes:
                raise FetchError(
                    "too_large", f"{source} is {answer['ContentLength']} bytes; photos may be {self.max_bytes}"
                )
            data = bytearray()
            while chunk := await body.read(64 * 1024):
                data += chunk
                if len(data) > self.max_bytes:
                    raise FetchError("too_large", f"{source} is over {self.max_bytes} bytes")
        return Fetched(bytes(data), got, _checked_photo(bytes(data), source))

    # -- local ----------------------------------------------------------------------------------

    def _local(self, name: str) -> Fetched:
        if self.local_root is None:
            raise FetchError(
                "bad_source", f"{name!r} is a local path, and no photo folder was given (--images)"
            )
        path = (self.local_root / name).resolve()
        if not path.is_relative_to(self.local_root):
            raise FetchError("bad_source", f"{name!r} is not a file inside {self.local_root}")
        try:
            with path.open("rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except OSError as error:
            raise FetchError("not_found", f"cannot read {name!r}: {error.strerror}") from None
        if len(data) > self.max_bytes:
            raise FetchError("too_large", f"{name!r} is over {self.max_bytes} bytes")
        return Fetched(data, Validators(), _checked_photo(data, repr(name)))
