"""Every app container of every stack boots from its task definition and does its job.

The task definitions come from the Pulumi program run under mocks (dev, prod, and prod with
the GPU worker). Each app container's command is started as the image's entry point would
start it, with exactly the environment and the secret names it declares. Secret values point
at the test PostgreSQL and Redis, and the bucket is the declared one, on the S3 API over HTTP.
Only endpoints, ports and the weights are replaced (the tiny CLIP config and a checkpoint file
in `prethrift export-weights` format: real weights cannot be downloaded here), and a CUDA device
where this machine has none. Then: migrate exits 0 on an empty database, the API reaches
/readyz, each worker embeds an upload the API accepted, and the console answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra import resource_types as T
from infra.stacks import REPO_ROOT
from tests.conftest import scratch_database
from tests.infra.conftest import Record, http_server, of_type
from tests.webapp.conftest import listing, photo
from webapp.adapters.cache import free_port
from webapp.embedding.embedder import ClipModel

# Values a leak would make easy to spot in any output.
ADMIN_TOKEN = "boot-admin-token-LEAKCHECK-0001"
CONSOLE_PASSWORD = "boot-console-password-LEAKCHECK-0002"
SENTRY_KEY = "bootsentrykeyleakcheck0003"
# What the test may change in a declared environment, and nothing else.
OVERRIDABLE = frozenset(
    {
        "AWS_ENDPOINT_URL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "PRETHRIFT_PORT",
        "PRETHRIFT_CONSOLE_PORT",
        "PRETHRIFT_WORKER_METRICS_PORT",
        "PRETHRIFT_CLIP_MODEL",
        "PRETHRIFT_CLIP_PRETRAINED",
        "PRETHRIFT_CLIP_DEVICE",
    }
)
WAIT_S = 180.0


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT, with the installed `prethrift` script run from this tree."""
    found = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found, "the Dockerfile declares no ENTRYPOINT"
    command: list[str] = json.loads(found.group(1))
    assert command == ["prethrift"], f"the test knows how to run the `prethrift` entry point, not {command}"
    return [sys.executable, "-m", "webapp.cli"]


@dataclass(frozen=True)
class Container:
    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    secrets: tuple[str, ...]


def app_containers(record: Record) -> dict[str, Container]:
    found: dict[str, Container] = {}
    for task in of_type(record, T.ECS_TASK_DEFINITION):
        for definition in json.loads(task["inputs"]["containerDefinitions"]):
            if definition["name"] == "otel-collector":
                continue
            found[definition["name"]] = Container(
                name=definition["name"],
                command=tuple(definition.get("command") or ()),
                environment={e["name"]: e["value"] for e in definition.get("environment", [])},
                secrets=tuple(s["name"] for s in definition.get("secrets", [])),
            )
    return found


class _Sink(BaseHTTPRequestHandler):
    """Accepts what the programs send out (OTLP traces, Sentry envelopes) and drops it."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(name="sink", scope="module")
def _sink() -> Iterator[str]:
    with http_server(_Sink) as url:
        yield url


@pytest.fixture(name="checkpoint", scope="module")
def _checkpoint(tiny_clip: ClipModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's weights as `prethrift export-weights` writes them (torch.save of the state dict)."""
    import torch

    path = tmp_path_factory.mktemp("weights") / "prethrift-tiny.pt"
    torch.save(tiny_clip.model.state_dict(), path)
    return path


@pytest.fixture(name="empty_database")
async def _empty_database(postgres_dsn: str) -> AsyncIterator[str]:
    """A database nothing has migrated, as a new deployment's RDS instance is."""
    async with scratch_database(postgres_dsn, "boot_") as url:
        yield url


class Program:
    """One container's command, running with its declared environment; output kept in a file."""

    def __init__(self, container: Container, env: dict[str, str], folder: Path) -> None:
        self.container = container
        self.log_path = folder / f"{container.name}.log"
        self.stopped = False
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*entrypoint(), *container.command],
            env=env,
            cwd=folder,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.stopped:
            return
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"{self.container.name} exited with {code}:\n{self.output()[-4000:]}")

    def stop(self) -> int:
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.container.name} ignored SIGTERM:\n{self.output()[-4000:]}") from None
        finally:
            self._log.close()


def declared_env(
    container: Container, secret_values: Mapping[str, str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """Exactly what ECS would give the container, plus the permitted overrides."""
    assert set(overrides) <= OVERRIDABLE, set(overrides) - OVERRIDABLE
    unknown = set(container.secrets) - set(secret_values)
    assert not unknown, f"{container.name} declares secrets the test cannot point at a service: {unknown}"
    env = {
        # The process basics a container image has, and credentials for the S3 API stand-in.
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path(overrides.get("PRETHRIFT_CLIP_PRETRAINED", "/tmp")).parent),
        "PYTHONPATH": str(REPO_ROOT),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env |= container.environment
    env |= {name: secret_values[name] for name in container.secrets}
    env |= {k: v for k, v in overrides.items() if k in container.environment or k.startswith("AWS_")}
    return env


async def wait_for(what: str, check: Any, programs: list[Program]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for program in programs:
            program.check_alive()
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(p.output()[-3000:] for p in programs))


async def embed_one_upload(client: httpx.AsyncClient, api: str, seed: int, programs: list[Program]) -> None:
    response = await client.post(
        f"{api}/api/items",
        data=listing(title=f"Boot check {seed}"),
        files={"image": ("photo.jpg", photo(seed), "image/jpeg")},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 202, response.text
    item_id = response.json()["id"]

    async def embedded() -> bool:
        item = await client.get(
            f"{api}/api/items/{item_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert item.status_code == 200, item.text
        status = item.json()["status"]
        assert status != "failed", item.text
        return bool(status == "ready")

    await wait_for(f"item {item_id} to be embedded", embedded, programs)


def test_each_container_is_given_exactly_the_secrets_its_program_reads() -> None:
    from infra.containers import SERVICE_SECRETS
    from webapp.cli.programs import PROGRAM_SECRETS
    from webapp.config import Program

    programs = {
        "api": Program.API,
        "worker": Program.WORKER,
        "gpu-worker": Program.WORKER,
        "console": Program.CONSOLE,
        "migrate": Program.MIGRATE,
    }
    assert set(SERVICE_SECRETS) == set(programs)
    for container, program in programs.items():
        assert set(SERVICE_SECRETS[container]) == set(PROGRAM_SECRETS[program]), container


@pytest.mark.parametrize("variant", ["dev", "prod", "gpu"])
async def test_every_app_container_boots_from_its_task_definition(
    variant: str,
    records: dict[str, Record],
    empty_database: str,
    redis_url: str,
    s3_endpoint: str,
    sink: str,
    checkpoint: Path,
    tmp_path: Path,
) -> None:
    containers = app_containers(records[variant])
    workers = sorted(name for name in containers if name.endswith("worker"))
    expected = {"api", "migrate", "console", "worker"} | ({"gpu-worker"} if variant == "gpu" else set())
    assert set(containers) == expected

    bucket = containers["api"].environment["IMAGES_BUCKET"]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=containers["api"].environment["AWS_REGION"])
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)
    secret_values = {
        "DATABASE_URL": empty_database,
        # A stack with replicas gives the API their DSN; the primary stands in for its own
        # replica here (replica routing has its own test against a real standby).
        "DATABASE_READ_URL": empty_database,
        "REDIS_URL": redis_url,
        "PRETHRIFT_ADMIN_TOKEN": ADMIN_TOKEN,
        "PRETHRIFT_CONSOLE_PASSWORD": CONSOLE_PASSWORD,
        "SENTRY_DSN": f"{sink.replace('://', f'://{SENTRY_KEY}@')}/1",
    }
    api_port, console_port, worker_metrics_port = free_port(), free_port(), free_port()
    import torch

    def env_for(name: str) -> dict[str, str]:
        overrides = {
            "AWS_ENDPOINT_URL": s3_endpoint,
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
            "PRETHRIFT_PORT": str(api_port),
            "PRETHRIFT_CONSOLE_PORT": str(console_port),
            "PRETHRIFT_WORKER_METRICS_PORT": str(worker_metrics_port),
            "PRETHRIFT_CLIP_MODEL": "prethrift-tiny",
            "PRETHRIFT_CLIP_PRETRAINED": str(checkpoint),
        }
        if (
            containers[name].environment.get("PRETHRIFT_CLIP_DEVICE") == "cuda"
            and not torch.cuda.is_available()
        ):
            overrides["PRETHRIFT_CLIP_DEVICE"] = "cpu"
        return declared_env(containers[name], secret_values, overrides)

    migrate = subprocess.run(
        [*entrypoint(), *containers["migrate"].command],
        env=env_for("migrate"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert re.search(r"applied [1-9]\d* migration", migrate.stdout), migrate.stdout

    started: list[Program] = []
    try:
        api = Program(containers["api"], env_for("api"), tmp_path)
        console = Program(containers["console"], env_for("console"), tmp_path)
        first = Program(containers[workers[0]], env_for(workers[0]), tmp_path)
        started += [api, console, first]
        url = f"http://127.0.0.1:{api_port}"
        async with httpx.AsyncClient(timeout=30) as client:

            async def ready() -> bool:
                try:
                    return (await client.get(f"{url}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for("the API's /readyz", ready, started)

            async def console_answers() -> httpx.Response | None:
                try:
                    return await client.get(f"http://127.0.0.1:{console_port}/", auth=("ops", CONSOLE_PASSWORD))
                except httpx.TransportError:
                    return None

            page = await wait_for("the console", console_answers, started)
            assert page.status_code == 200 and "Prethrift console" in page.text
            locked = await client.get(f"http://127.0.0.1:{console_port}/")
            assert locked.status_code == 401

            # Each worker on its own, so that each is seen embedding.
            await embed_one_upload(client, url, 1, started)
            # What the queue alarms read: the worker's own metrics, on loopback for the collector.
            scraped = await client.get(f"http://127.0.0.1:{worker_metrics_port}/metrics")
            assert re.search(r"^prethrift_embeddings_total [1-9]", scraped.text, re.M), scraped.text[-2000:]
            assert "prethrift_embedding_queue_depth" in scraped.text
            assert first.stop() == 0, first.output()[-3000:]
            for seed, name in enumerate(workers[1:], start=2):
                worker = Program(containers[name], env_for(name), tmp_path)
                started.append(worker)
                await embed_one_upload(client, url, seed, started)
                assert worker.stop() == 0, worker.output()[-3000:]
        for program in (api, console):
            assert program.stop() == 0, program.output()[-3000:]
    finally:
        for program in started:
            if not program.stopped:
                program.stop()

    everything = migrate.stdout + migrate.stderr + "".join(p.output() for p in started)
    for secret in (ADMIN_TOKEN, CONSOLE_PASSWORD, SENTRY_KEY):
        assert secret not in everything
