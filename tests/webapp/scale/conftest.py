"""Two API processes behind Debian's HAProxy, as the ALB spreads traffic over tasks."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webapp.adapters.cache import free_port

HAPROXY_INSTALL = "sudo apt-get update && sudo apt-get install -y haproxy"


def find_haproxy() -> str:
    """Debian's haproxy; a missing one fails the test with the install command (never a skip)."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).is_file()), None
    )
    if found is None:
        pytest.fail(
            f"HAProxy is not installed, so the scale-out test cannot put a proxy in front of two API "
            f"processes. Install it with:  {HAPROXY_INSTALL}",
            pytrace=False,
        )
    return found


@contextlib.contextmanager
def haproxy(backends: dict[str, int], folder: Path) -> Iterator[int]:
    """HAProxy on loopback, round robin over ``backends`` (name: port); yields its port.

    Like the ALB it appends the peer's address to X-Forwarded-For (the service trusts one hop),
    and it names the backend that answered in X-Served-By, so a test can tell the tasks apart.
    """
    binary = find_haproxy()
    port = free_port()
    servers = "\n".join(f"    server {name} 127.0.0.1:{p}" for name, p in backends.items())
    config = folder / "haproxy.cfg"
    config.write_text(
        f"""global
    maxconn 2000

defaults
    mode http
    option forwardfor
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout tunnel 60s

frontend public
    bind 127.0.0.1:{port}
    default_backend tasks

backend tasks
    balance roundrobin
    http-response set-header X-Served-By %s
{servers}
"""
    )
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    log = (folder / "haproxy.log").open("wb")
    process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, (folder / "haproxy.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "haproxy did not listen within 10 s"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
