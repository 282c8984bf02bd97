"""Development's embedded PostgreSQL: a clean exit after an earlier crash leaves no server behind,
and settings given to it take effect."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from webapp.adapters.db import EmbeddedPostgres

# Starts the embedded server the way the CLI does, says so, then waits to be killed.
_HOLD = """
import os, sys, time
from pathlib import Path
from webapp.adapters.db import EmbeddedPostgres
EmbeddedPostgres(Path(sys.argv[1])).start()
print("started", flush=True)
os.close(1)
time.sleep(600)
"""


def postmaster_pid(data_dir: Path) -> int | None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split()[0])
    return pid if psutil.pid_exists(pid) else None


def test_a_clean_exit_after_a_crash_stops_the_embedded_postgres() -> None:
    # Outside pytest's private tmp tree: pgserver runs PostgreSQL as its own user when root.
    folder = Path(tempfile.mkdtemp(prefix="prethrift-embedded-"))
    os.chmod(folder, 0o755)
    data_dir = folder / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT")}
    env["PRETHRIFT_DATA_DIR"] = str(data_dir)
    postgres = data_dir / "postgres"
    crashed = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(postgres)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert crashed.stdout is not None
        lines = [line.strip() for line in crashed.stdout]  # until it says it started (logs come first)
        assert "started" in lines
        crashed.send_signal(signal.SIGKILL)  # the earlier `make run`, killed without cleaning up
        crashed.wait(timeout=30)
        assert postmaster_pid(postgres) is not None  # its server outlived it, as after a real crash

        # The next development run exits cleanly (migrate uses the same embedded server).
        result = subprocess.run(
            [sys.executable, "-m", "webapp.cli", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        assert postmaster_pid(postgres) is None, "the embedded PostgreSQL was left running"
    finally:
        crashed.kill()
        crashed.wait()
        if crashed.stdout is not None:
            crashed.stdout.close()
        leftover = postmaster_pid(postgres)
        if leftover is not None:
            os.kill(leftover, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


def test_settings_that_need_a_restart_take_effect_and_stay() -> None:
    # The benchmark's buffer cache is set this way; a restart-only parameter must really change.
    folder = Path(tempfile.mkdtemp(prefix="prethrift-embedded-"))
    os.chmod(folder, 0o755)
    data_dir = folder / "postgres"
    try:
        for _ in range(2):  # the second start finds it written and needs no restart
            server = EmbeddedPostgres(data_dir, database="settings", settings={"shared_buffers": "48MB"})
            server.start()
            try:
                assert server.psql("SHOW shared_buffers;").split("\n")[2].strip() == "48MB"
            finally:
                server.stop()
            assert postmaster_pid(data_dir) is None
    finally:
        leftover = postmaster_pid(data_dir)
        if leftover is not None:
            os.kill(leftover, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
