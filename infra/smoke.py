"""`python -m infra.smoke URL`: prove a deployed stack serves, through its public URL.

The deploy workflow runs it after each `pulumi up` with the stack's `url` output, and the job
fails when it fails. It checks what a user needs: /readyz answers 200 (retried until the
deadline: a fresh task loads CLIP first), one text search and one photo search answer 200 with
a page of results, and (with --public) the edge answers 404 for /metrics. Standard library
only, plus Pillow for the photo, so it runs anywhere the project is installed."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _request(req: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 (URL from the stack)
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def _photo() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (180, 30, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _multipart(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _page(status: int, body: bytes) -> tuple[bool, str]:
    if status != 200:
        return False, f"HTTP {status}: {body[:200]!r}"
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return False, f"not JSON: {body[:200]!r}"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("items"), list):
        return False, f"no items list in {body[:200]!r}"
    return True, f"{len(parsed['items'])} result(s)"


def run(
    base_url: str, *, ready_within_s: float = 600, public: bool = False, timeout_s: float = 30
) -> list[Check]:
    """Every check against `base_url`; stops after /readyz if the stack never becomes ready."""
    base = base_url.rstrip("/")
    checks: list[Check] = []
    deadline = time.monotonic() + ready_within_s
    status, body = 0, b""
    while True:
        try:
            status, body = _request(urllib.request.Request(f"{base}/readyz"), timeout_s)
        except (OSError, urllib.error.URLError) as error:
            status, body = 0, str(error).encode()
        if status == 200 or time.monotonic() >= deadline:
            break
        time.sleep(5)
    checks.append(Check("readyz", status == 200, f"HTTP {status}: {body[:200]!r}"))
    if status != 200:
        return checks

    steps: list[tuple[str, Callable[[], urllib.request.Request]]] = [
        ("text search", lambda: urllib.request.Request(f"{base}/api/search?q=red+dress&limit=5")),
    ]

    def photo_request() -> urllib.request.Request:
        body, content_type = _multipart("image", "smoke.jpg", _photo(), "image/jpeg")
        return urllib.request.Request(
            f"{base}/api/search/image?limit=5", data=body, headers={"Content-Type": content_type}, method="POST"
        )

    steps.append(("photo search", photo_request))
    for name, build in steps:
        try:
            ok, detail = _page(*_request(build(), timeout_s))
        except (OSError, urllib.error.URLError) as error:
            ok, detail = False, repr(error)
        checks.append(Check(name, ok, detail))
    if public:
        try:
            status, _ = _request(urllib.request.Request(f"{base}/metrics"), timeout_s)
        except (OSError, urllib.error.URLError) as error:
            status = 0
            checks.append(Check("metrics not public", False, repr(error)))
        else:
            checks.append(Check("metrics not public", status == 404, f"HTTP {status} (want 404 at the edge)"))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the stack's public URL (`pulumi stack output url`)")
    parser.add_argument("--ready-within", type=float, default=600, help="seconds to wait for /readyz")
    parser.add_argument("--public", action="store_true", help="also require /metrics to be closed (404)")
    ns = parser.parse_args(argv)
    checks = run(ns.url, ready_within_s=ns.ready_within, public=ns.public)
    for check in checks:
        print(f"{'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    failed = [c for c in checks if not c.ok]
    print(f"smoke test of {ns.url}: {len(checks) - len(failed)}/{len(checks)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
