"""Schemathesis over the live service's /openapi.json, with and without the admin token:
no 5xx, and every response conforms to the document (status, content type, headers, body)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.webapp.conftest import serve_subprocess
from webapp.config import Settings

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
# Examples per operation and generation mode: the whole run stays well under two minutes.
MAX_EXAMPLES = 20


@pytest.fixture(name="served_base")
def _served_base(settings: Settings, tmp_path: Path) -> Iterator[str]:
    with serve_subprocess(settings, tmp_path / "server.log") as (base, _):
        yield base


def _schemathesis(base: str, tmp_path: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
        "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", "9",
        "--phases", "examples,coverage,fuzzing", "--request-timeout", "30",
        "--report", "junit", "--report-dir", str(tmp_path / "schemathesis"),
        *[arg for header in headers for arg in ("--header", header)],
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=280, env=env)


@pytest.mark.timeout(400)
def test_the_api_honours_its_own_document(served_base: str, tmp_path: Path) -> None:
    for headers in ([], [f"Authorization: Bearer {ADMIN_TOKEN}"]):
        result = _schemathesis(served_base, tmp_path, *headers)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert " 0 failed" not in result.stdout and "passed" in result.stdout, result.stdout[-3000:]
