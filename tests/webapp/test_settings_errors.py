"""Wrong production settings: the error names the setting and what to do, and never prints a
secret's value, not even part of a token, a password in a DSN, or a Sentry key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from webapp.adapters.cache import free_port

# Each value carries a marker that must not appear anywhere in the program's output.
GOOD = {
    "ENVIRONMENT": "production",
    "DATABASE_URL": "postgresql://prethrift:pw-LEAKDB0@127.0.0.1:{port}/prethrift",
    "REDIS_URL": "redis://:pw-LEAKREDIS0@127.0.0.1:{port}/0",
    "IMAGES_BUCKET": "prethrift-images",
    "PRETHRIFT_ADMIN_TOKEN": "token-LEAKTOKEN0-0123456789",
    "PRETHRIFT_CONSOLE_PASSWORD": "password-LEAKCONSOLE0",
    "SENTRY_DSN": "https://LEAKSENTRY0@o1.ingest.sentry.io/1",
}
CASES = {
    "short admin token": ("serve", {"PRETHRIFT_ADMIN_TOKEN": "sh-LEAKTOKEN1"}, "PRETHRIFT_ADMIN_TOKEN", "16"),
    "database URL of another kind": (
        "migrate",
        {"DATABASE_URL": "mysql://prethrift:pw-LEAKDB1@db.internal/prethrift"},
        "DATABASE_URL",
        "postgresql://",
    ),
    "unreachable database": ("migrate", {}, "DATABASE_URL", "check the host, port, user and password"),
    "Redis URL of another kind": (
        "serve",
        {"REDIS_URL": "http://:pw-LEAKREDIS1@cache.internal:6379"},
        "REDIS_URL",
        "rediss://",
    ),
    "malformed Sentry DSN": ("worker", {"SENTRY_DSN": "https://LEAKSENTRY1@"}, "SENTRY_DSN", "Client Keys"),
    "console without its password": (
        "console",
        {"PRETHRIFT_CONSOLE_PASSWORD": ""},
        "PRETHRIFT_CONSOLE_PASSWORD",
        "SSM",
    ),
    "API without its token": ("serve", {"PRETHRIFT_ADMIN_TOKEN": ""}, "PRETHRIFT_ADMIN_TOKEN", "SSM"),
    "graph build options pgvector refuses": (
        "serve",
        {"PRETHRIFT_DB_HNSW_M": "64", "PRETHRIFT_DB_HNSW_EF_CONSTRUCTION": "100"},
        "PRETHRIFT_DB_HNSW_EF_CONSTRUCTION",
        "at least twice PRETHRIFT_DB_HNSW_M",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_production_settings_are_named_and_never_printed(case: str) -> None:
    command, changes, setting, advice = CASES[case]
    port = str(free_port())  # nothing listens there
    values = {name: value.replace("{port}", port) for name, value in {**GOOD, **changes}.items()}
    env = {k: v for k, v in os.environ.items() if k not in GOOD and not k.startswith("PRETHRIFT_")}
    env |= values
    result = subprocess.run(
        [sys.executable, "-m", "webapp.cli", command], env=env, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert setting in result.stderr and advice in result.stderr, result.stderr
    assert "Traceback" not in output
    assert "LEAK" not in output, output
