"""The Pulumi program's mock records, made once per session in fresh processes (Pulumi's
runtime state is process-global, so nothing Pulumi runs inside the pytest process)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra import resource_types as T
from infra.mocks import read_stack_file, record

Record = dict[str, Any]

# prod with the optional GPU worker (and the digest of its CUDA image, as CI passes it) and a
# Sentry DSN: the branches the stack files leave off.
GPU_OVERRIDES = {
    "gpuWorker": {"enabled": True, "instanceType": "g5.xlarge", "maxInstances": 2, "desiredCount": 1},
    "gpuImageDigest": "sha256:" + "cd" * 32,
    "sentryDsn": "https://key@sentry.example/1",
}

# dev as CI deploys it: the image built once for the commit, by digest.
DIGEST_OVERRIDES = {"imageTag": "0123abc", "imageDigest": "sha256:" + "ab" * 32}


@pytest.fixture(name="records", scope="session")
def _records() -> dict[str, Record]:
    jobs = {
        "dev": ("dev", None),
        "prod": ("prod", None),
        "gpu": ("prod", GPU_OVERRIDES),
        "digest": ("dev", DIGEST_OVERRIDES),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {k: pool.submit(record, stack, overrides=o) for k, (stack, o) in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


@pytest.fixture(name="stack_files", scope="session")
def _stack_files() -> dict[str, dict[str, Any]]:
    return {stack: read_stack_file(stack) for stack in ("dev", "prod")}


def of_type(rec: Record, typ: str) -> list[dict[str, Any]]:
    return [r for r in rec["resources"] if r["type"] == typ]


def one(rec: Record, typ: str) -> dict[str, Any]:
    found = of_type(rec, typ)
    assert len(found) == 1, f"expected one {typ}, found {len(found)}"
    return found[0]


def containers(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(task["inputs"]["containerDefinitions"])}


def task_for(rec: Record, program: str) -> dict[str, Any]:
    tasks = [t for t in of_type(rec, T.ECS_TASK_DEFINITION) if t["inputs"]["family"].endswith(f"-{program}")]
    assert len(tasks) == 1, program
    return tasks[0]


def walk(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)
    else:
        yield value


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP service answering with `handler` on a free loopback port, until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
