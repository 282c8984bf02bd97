"""The services a benchmark run needs: PostgreSQL, redis-server and the app as production starts it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from webapp.adapters.cache import free_port

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench" / ".data"

# The benchmark's PostgreSQL gets the buffer cache the production instance gets. Amazon RDS for
# PostgreSQL's default parameter group sets shared_buffers to {DBInstanceClassMemory/32768} 8 kB
# pages, a quarter of the instance's memory: about 1 GB on the db.t4g.medium the stacks declare
# (infra/config.py). PostgreSQL's own default, 128 MB, would hold a fraction of the 100k catalog's
# 0.46 GB, and every search would read index pages back from the OS page cache.
POSTGRES_SETTINGS = {"shared_buffers": "1GB"}

# Inherited settings would make runs differ from machine to machine; the benchmark sets its own.
_SCRUBBED_PREFIXES = (
    "PRETHRIFT_",
    "DATABASE_URL",
    "REDIS_URL",
    "IMAGES_BUCKET",
    "AWS_ENDPOINT_URL",
    "SENTRY_DSN",
)


@dataclass
class ServerProcess:
    """``python -m webapp.cli serve`` on 127.0.0.1, with the given search-path switches."""

    name: str
    database_url: str
    redis_url: str
    switches: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = DATA / "server.log"
    # CPU cores the server may run on (Linux affinity, inherited by its every thread); None: any.
    cores: set[int] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "PRETHRIFT_ADMIN_TOKEN": "bench-admin-token-not-secret",
                "PRETHRIFT_CLIP_MODEL": "ViT-B-32",
                "PRETHRIFT_CLIP_PRETRAINED": "none",
                "PRETHRIFT_HOST": "127.0.0.1",
                "PRETHRIFT_PORT": str(self.port),
                "PRETHRIFT_WORKER_INLINE": "false",
                "PRETHRIFT_DATA_DIR": str(DATA / "app"),
                # Every simulated shopper is the one load generator: per-client limits would
                # measure themselves, not the service. A bench of the limits turns them on.
                "PRETHRIFT_LIMITS_RATE_LIMITS": "false",
            }
        )
        env.update(self.switches)
        return env

    async def start(self, timeout_s: float = 300.0) -> dict[str, object]:
        """Start the server and wait until /readyz answers 200; returns its readiness body."""
        self.log_path = DATA / f"server-{self.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "serve"],
            cwd=REPO,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if self.cores is None else partial(os.sched_setaffinity, 0, self.cores),
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"server {self.name} exited with code {self.process.returncode}; see {self.log_path}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.base_url + "/readyz") as response:
                        if response.status == 200:
                            body: dict[str, object] = await response.json()
                            return body
                await asyncio.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server {self.name} was not ready within {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def server_rss_mb(process: subprocess.Popen[bytes] | None) -> float | None:
    """Resident memory of the server process (Linux), for the record."""
    if process is None:
        return None
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _machine_busy_s() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / _TICK, sum(values[:8]) / _TICK


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class CpuMeter:
    """Where the cores went during a phase: load generator, server, PostgreSQL, Redis, the rest.

    PostgreSQL counts the backends connected to this run's database plus the server's shared
    processes (WAL writer, I/O workers, ...), not backends of other databases on the same
    server. The machine is shared, so "other" is everything else running on it.
    """

    server_pid: int | None
    postgres_pid: int | None
    redis_pid: int | None
    database: str = ""

    def _postgres(self) -> dict[int, float]:
        if not self.postgres_pid:
            return {}
        pids = [self.postgres_pid]
        for child in _children(self.postgres_pid):
            title = _title(child)
            is_backend = "[local]" in title or "127.0.0.1" in title
            if not is_backend or f" {self.database} " in f"{title} ":
                pids.append(child)
        return {pid: _process_cpu_s(pid) for pid in pids}

    def snapshot(self) -> dict[str, Any]:
        busy, _ = _machine_busy_s()
        return {
            "wall": time.perf_counter(),
            "machine_busy": busy,
            "load_generator": time.process_time(),
            "server": _process_cpu_s(self.server_pid) if self.server_pid else 0.0,
            "postgres": self._postgres(),
            "redis": _process_cpu_s(self.redis_pid) if self.redis_pid else 0.0,
        }

    @staticmethod
    def cores(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        """Average cores each used between two snapshots (2.0 = both cores busy)."""
        wall = after["wall"] - before["wall"]
        if wall <= 0:
            return {}
        used = {k: (after[k] - before[k]) / wall for k in ("load_generator", "server", "redis")}
        # Per process, so a backend that exits mid-phase cannot make the sum go negative.
        pg_before = before["postgres"]
        used["postgres"] = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in after["postgres"].items()) / wall
        machine = (after["machine_busy"] - before["machine_busy"]) / wall
        out = {k: round(max(0.0, v), 2) for k, v in used.items()}
        out["other"] = round(max(0.0, machine - sum(used.values())), 2)
        out["machine"] = round(machine, 2)
        return out


def pin(pid: int, cores: set[int]) -> None:
    """Move a running process, its threads and its children to ``cores`` (processes they start
    later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cores)
    for child in _children(pid):
        pin(child, cores)


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
