"""Signing in to the console as production runs it (`prethrift console`, ENVIRONMENT=production):
a weak password never starts it, and guessing is slowed, then locked out, per client."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from console.auth import LoginGuard, password_weakness
from webapp.adapters.cache import free_port
from webapp.config import ConsoleLoginSettings

PASSWORD = "Ops-console-7f3k9QzL2w"
WRONG = "not-the-password-0000"


def production_env(database_url: str, password: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRETHRIFT_") and k != "ENVIRONMENT"}
    return env | {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "PRETHRIFT_CONSOLE_PASSWORD": password,
        "PRETHRIFT_HOST": "127.0.0.1",
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


@contextlib.contextmanager
def console(database_url: str, log: Path, **extra: str) -> Iterator[str]:
    """`prethrift console` in production mode; yields its base URL once it answers."""
    port = free_port()
    env = production_env(database_url, PASSWORD, PRETHRIFT_CONSOLE_PORT=str(port), **extra)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "console"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/", timeout=2).status_code == 401:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the console did not answer within 60 s: " + log.read_text()[-3000:])
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("password", ["x", "P@ssw0rd2024!"])
def test_a_weak_password_never_starts_the_console(database_url: str, password: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "console"],
        env=production_env(database_url, password, PRETHRIFT_CONSOLE_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "PRETHRIFT_CONSOLE_PASSWORD" in result.stderr and "openssl rand" in result.stderr, output
    assert "Traceback" not in output
    assert len(password) < 4 or password not in output  # named, never shown


def test_what_passes_and_what_does_not() -> None:
    for strong in (PASSWORD, "correct horse battery staple", "s3cret-words", "hV8q2Lr0xW5nB3tY6pZ1mK4c"):
        assert password_weakness(strong) is None, strong
    weak = ["Password1234", "Welcome2026!!", "Pr3thr1ft-2026", "1qaz2wsx3edc", "abcdefgh1234", "short1!"]
    for password in [*weak, "qwertyuiop1234", "a" * 24, "abcabcabcabc"]:
        assert password_weakness(password) is not None, password


def test_the_brake_doubles_locks_out_and_forgets_a_quiet_client() -> None:
    now = [0.0]
    guard = LoginGuard(ConsoleLoginSettings(), clock=lambda: now[0])  # 5 free, 1 s doubling, 20, 900 s
    for _ in range(5):
        assert guard.attempt("a", correct=False) == 0.0  # counted, let through
    assert guard.attempt("a", correct=True) == 1.0  # even the right password waits
    waits = []
    for _ in range(14):  # failures 6..19
        waits.append(guard.wait("a"))
        now[0] += waits[-1]
        assert guard.attempt("a", correct=False) == 0.0
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60, 60]
    now[0] += guard.wait("a")
    guard.attempt("a", correct=False)  # the 20th
    assert guard.wait("a") == 900
    now[0] += 900
    guard.attempt("a", correct=False)  # still guessing after the lockout: locked again at once
    assert guard.wait("a") == 900
    now[0] += 900 + 900  # a quiet lockout_s after the wait ends: forgotten
    assert guard.wait("a") == 0
    for _ in range(4):
        guard.attempt("a", correct=False)
    assert guard.wait("a") == 0 and guard.wait("b") == 0


def signed_in(base: str, password: str, client: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": client} if client else {}
    return httpx.get(base + "/", auth=("ops", password), headers=headers, timeout=10)


def test_guesses_wait_after_five_failures_and_a_forged_address_does_not_help(
    database_url: str, tmp_path: Path
) -> None:
    # No trusted proxy: the socket's peer is the client, whatever X-Forwarded-For says.
    with console(database_url, tmp_path / "console.log") as base:
        for _ in range(5):
            assert signed_in(base, WRONG).status_code == 401
        refused = signed_in(base, PASSWORD, client="203.0.113.9")
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        time.sleep(1.2)
        assert signed_in(base, PASSWORD).status_code == 200  # the wait is over, the right password works


def test_lockout_is_per_client_behind_the_trusted_proxy(database_url: str, tmp_path: Path) -> None:
    fast = {
        "PRETHRIFT_LIMITS_TRUSTED_PROXIES": "1",
        "PRETHRIFT_CONSOLE_LOGIN_DELAY_S": "0.05",
        "PRETHRIFT_CONSOLE_LOGIN_MAX_DELAY_S": "0.1",
        "PRETHRIFT_CONSOLE_LOGIN_LOCKOUT_FAILURES": "10",
        "PRETHRIFT_CONSOLE_LOGIN_LOCKOUT_S": "600",
    }
    guesser, colleague = "198.51.100.7", "198.51.100.8"
    with console(database_url, tmp_path / "console.log", **fast) as base:
        answers = []
        for _ in range(60):  # as fast as it may: each refusal is answered without checking
            answers.append(signed_in(base, WRONG, guesser).status_code)
            if answers[-1] == 429 and answers.count(401) >= 10:
                break
            time.sleep(0.02)
        assert answers.count(401) == 10, answers  # 10 guesses checked, then no more
        locked = signed_in(base, PASSWORD, guesser)
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) > 500  # locked out for the configured time
        # A proxy appends the address it saw; what the client wrote before it proves nothing.
        assert signed_in(base, PASSWORD, f"{colleague}, {guesser}").status_code == 429
        # Another client is not held up by the guesser, and a right password clears its failures.
        for _ in range(2):
            for _ in range(4):
                assert signed_in(base, WRONG, colleague).status_code == 401
            assert signed_in(base, PASSWORD, colleague).status_code == 200
