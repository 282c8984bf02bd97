"""Every job of every workflow, run as GitHub runs it up to the cloud boundary (tests/infra/gha.py):
fresh interpreters with only what each job's own steps install from the locks, its `run:` steps in
order, and `pulumi`, `aws`, `docker`, `gh` as recording stand-ins over one fake account
(tests/infra/cloud_standins.py) in which `pulumi preview`/`up` run the real program under mocks.

A job whose install misses a module a later step imports fails here, as it would on GitHub.
The first run installs the infra lock into two cached interpreters (about a minute); later runs
re-check them in seconds."""

from __future__ import annotations

import ast
import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import StackConfig
from infra.stacks import list_stacks
from tests.infra import cloud_standins
from tests.infra.conftest import http_server
from tests.infra.gha import REPO, REPOSITORY, WORKFLOWS, Event, JobResult, Runner

FIRST_SHA = "1" * 40
SECOND_SHA = "2" * 40
REPOSITORIES = [StackConfig(stack).name_prefix for stack in list_stacks()]
"""What the bootstrap leaves in a fresh account: one ECR repository per stack, by its name prefix."""


class _Service(BaseHTTPRequestHandler):
    """The deployed API behind the ALB, as far as the smoke test can tell."""

    hits: list[str] = []

    def log_message(self, *args: Any) -> None:
        """Quiet: the test reads the stand-in's answers, not its access log."""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        if self.path == "/readyz":
            self._send(200, {"status": "ready"})
        elif self.path.startswith("/api/search?"):
            self._send(200, {"items": [{"id": 1}]})
        else:
            self._send(404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        parts = list(BytesParser(policy=HTTP).parsebytes(head + body).iter_parts())
        photo = parts[0].get_payload(decode=True) if parts else b""
        if self.path.startswith("/api/search/image") and isinstance(photo, bytes) and photo[:2] == b"\xff\xd8":
            self._send(200, {"items": [{"id": 1}]})
        else:
            self._send(400, {"error": {"code": "bad_image", "message": "not a JPEG"}})


@pytest.fixture(name="edge", scope="module")
def _edge() -> Iterator[str]:
    with http_server(_Service) as url:
        yield url


def _new_account(folder: Path, edge: str) -> Path:
    state = folder / "account"
    cloud_standins.new_account(state, REPOSITORIES, edge)
    return state


def _copy(account: Path, folder: Path) -> Path:
    """A copy of an account to change, so that tests share one first deploy."""
    return Path(shutil.copytree(account, folder / "account"))


def _push(sha: str) -> Event:
    return Event("push", {"ref": "refs/heads/main"}, sha=sha)


def _pull_request(number: int, head_repository: str) -> Event:
    head = {"repo": {"full_name": head_repository}}
    payload = {"number": number, "pull_request": {"number": number, "head": head}}
    return Event("pull_request", payload, ref=f"refs/pull/{number}/merge", base_ref="main")


def _ok(jobs: dict[str, JobResult], *names: str) -> None:
    for name in names:
        assert jobs[name].result == "success", f"{name}: {jobs[name].error}"


def _deploy(account: Path, folder: Path, sha: str, **kwargs: Any) -> dict[str, JobResult]:
    jobs = Runner("deploy.yml", _push(sha), account, folder / f"deploy-{sha[:4]}", **kwargs).run()
    _ok(jobs, "test", "build", "dev", "prod")
    return jobs


def _pulumi(account: Path, command: str) -> list[dict[str, Any]]:
    return [c for c in cloud_standins.calls(account, "pulumi") if c["argv"][0] == command]


@dataclass
class FirstDeploy:
    account: Path
    preview: dict[str, JobResult]
    """A pull request's preview before anything was deployed."""
    deploy: dict[str, JobResult]
    hits: list[str]
    """What the smoke tests asked the service."""


@pytest.fixture(name="first", scope="module")
def _first(tmp_path_factory: pytest.TempPathFactory, edge: str) -> FirstDeploy:
    """An account with nothing but what the bootstrap made: a pull request is previewed, then
    the first push to main deploys."""
    folder = tmp_path_factory.mktemp("first")
    account = _new_account(folder, edge)
    preview = Runner("preview.yml", _pull_request(3, REPOSITORY), account, folder / "pr").run(only={"preview"})
    _Service.hits.clear()
    deploy = _deploy(account, folder, FIRST_SHA)
    return FirstDeploy(account, preview, deploy, list(_Service.hits))


def test_preview_before_the_first_deploy(first: FirstDeploy) -> None:
    _ok(first.preview, "preview")
    previews = _pulumi(first.account, "preview")
    assert sorted(c["argv"][2] for c in previews) == ["dev", "prod"]
    assert {c["config"]["imageTag"] for c in previews} == {"preview-3"}
    assert {c["config"]["imageDigest"] for c in previews} == {""}


def test_first_deploy_builds_once_and_promotes_the_digest(first: FirstDeploy) -> None:
    """Built once into dev's repository (made by the bootstrap, not by a targeted `up`), deployed
    and smoke-tested in dev, copied by digest to prod, deployed and smoke-tested there."""
    digest = first.deploy["build"].outputs["digest"]
    assert digest.startswith("sha256:") and first.deploy["build"].outputs["gpu_digest"] == ""
    pushes = [c["pushed"] for c in cloud_standins.calls(first.account, "docker") if "pushed" in c]
    assert [p["ref"].rsplit("/", 1)[1] for p in pushes] == [f"prethrift-dev:{FIRST_SHA}"]
    state = cloud_standins.load(first.account)
    assert state["repositories"]["prethrift-prod"] == {FIRST_SHA: digest}
    for stack in ("dev", "prod"):
        deployed = state["stacks"][stack]
        assert deployed["outputs"]["image_digest"] == digest
        images = {i for refs in deployed["images"].values() for i in refs if "prethrift-" in i}
        assert images == {f"{cloud_standins.REGISTRY}/prethrift-{stack}:{FIRST_SHA}@{digest}"}
        plan = state["objects"][f"s3://{deployed['outputs']['images_bucket']}/deploy/plan-{stack}.json"]
        assert plan["stack"] == stack
    ups = _pulumi(first.account, "up")
    assert [(c["argv"][2], c["role"].rsplit("/", 1)[1]) for c in ups] == [
        ("dev", "prethrift-dev-deploy"),
        ("prod", "prethrift-prod-deploy"),
    ]
    assert first.hits.count("/readyz") == 2 and first.hits.count("/metrics") == 2
    assert first.hits.count("/api/search/image?limit=5") == 2


def test_second_deploy_builds_and_promotes_the_gpu_image(first: FirstDeploy, tmp_path: Path) -> None:
    """The next push turns on prod's GPU worker: its CUDA image is built once by the build job
    and runs in prod by digest, like the API image."""
    account = _copy(first.account, tmp_path)
    prod_file = (REPO / "Pulumi.prod.yaml").read_text()
    gpu_on = re.sub(r"(prethrift:gpuWorker:\n    enabled:) false", r"\1 true", prod_file)
    assert gpu_on != prod_file
    second = _deploy(account, tmp_path, SECOND_SHA, files={"Pulumi.prod.yaml": gpu_on})
    gpu_digest = second["build"].outputs["gpu_digest"]
    assert gpu_digest.startswith("sha256:") and gpu_digest != second["build"].outputs["digest"]
    pushes = [c["pushed"] for c in cloud_standins.calls(account, "docker") if "pushed" in c]
    assert [p["ref"].rsplit(":", 1)[1] for p in pushes] == [FIRST_SHA, SECOND_SHA, f"{SECOND_SHA}-gpu"]
    assert any("whl/cu128" in arg for arg in pushes[-1]["build_args"])
    prod = cloud_standins.load(account)["stacks"]["prod"]
    assert prod["outputs"]["gpu_image_digest"] == gpu_digest
    gpu_images = [i for n, refs in prod["images"].items() if "gpu" in n for i in refs if "prethrift-" in i]
    assert gpu_images == [f"{cloud_standins.REGISTRY}/prethrift-prod:{SECOND_SHA}-gpu@{gpu_digest}"]


def test_pull_request_preview_uses_the_deployed_image(first: FirstDeploy, tmp_path: Path) -> None:
    """A preview builds nothing and passes back what each stack runs, so it shows no task
    definition replaced; its plan comment is found by its marker, not as the last comment."""
    account = _copy(first.account, tmp_path)
    state = cloud_standins.load(account)
    earlier = "<!-- prethrift:offline-plan -->\nthe plan of an earlier push"
    state["comments"] = [
        {"id": 1, "pr": "7", "body": earlier},
        {"id": 2, "pr": "7", "body": "a reviewer's comment, after the plan"},
    ]
    (account / "account.json").write_text(json.dumps(state))
    deployed = state["stacks"]["dev"]["outputs"]["image_digest"]
    calls_before = len(cloud_standins.calls(account))

    jobs = Runner("preview.yml", _pull_request(7, REPOSITORY), account, tmp_path / "pr").run()
    _ok(jobs, "cost", "preview")
    assert jobs["fork-notice"].result == "skipped"
    assert "Offline plan and monthly cost" in jobs["cost"].summary
    new_calls = cloud_standins.calls(account)[calls_before:]
    assert not [c for c in new_calls if c["tool"] == "docker"], "a preview built or pushed an image"
    previews = [c for c in new_calls if c["tool"] == "pulumi" and c["argv"][0] == "preview"]
    assert sorted(c["argv"][2] for c in previews) == ["dev", "prod"]
    for call in previews:
        assert call["config"]["imageTag"] == FIRST_SHA and call["config"]["imageDigest"] == deployed
        assert call["changed_tasks"] == [], "the preview replaces task definitions it does not change"
        assert call["role"].endswith(f"prethrift-{call['argv'][2]}-preview")
    comments = cloud_standins.load(account)["comments"]
    assert [c["id"] for c in comments] == [1, 2]
    assert "Offline plan and monthly cost" in comments[0]["body"] and "after the plan" in comments[1]["body"]


def test_fork_pull_request_gets_no_credentials(tmp_path: Path, edge: str) -> None:
    account = _new_account(tmp_path, edge)
    jobs = Runner("preview.yml", _pull_request(9, "stranger/prethrift"), account, tmp_path / "fork").run()
    _ok(jobs, "cost", "fork-notice")
    assert jobs["preview"].result == "skipped"
    assert "needs maintainer approval" in jobs["fork-notice"].summary
    assert "Offline plan and monthly cost" in jobs["cost"].summary
    assert cloud_standins.calls(account) == [], "a fork's run reached the cloud or commented"
    # `pull_request` runs a fork's code with a read-only token; `pull_request_target` would not.
    assert "pull_request_target" not in yaml.safe_load((WORKFLOWS / "preview.yml").read_text())[True]


def test_a_maintainer_started_fork_preview_assumes_the_preview_role(first: FirstDeploy, tmp_path: Path) -> None:
    """A fork's cloud preview, started by hand after reading the change, runs in the `preview`
    environment: that is the subject the preview roles trust besides this repository's own pull
    requests (a run on main without an environment would be refused by AWS)."""
    account = _copy(first.account, tmp_path)
    calls_before = len(cloud_standins.calls(account))
    event = Event("workflow_dispatch", inputs={"pr": "9"})
    jobs = Runner("preview.yml", event, account, tmp_path / "dispatch").run(only={"preview"})
    _ok(jobs, "preview")
    assert jobs["preview"].environment == "preview"
    new_calls = cloud_standins.calls(account)[calls_before:]
    previews = [c for c in new_calls if c["tool"] == "pulumi" and c["argv"][0] == "preview"]
    assert sorted(c["argv"][2] for c in previews) == ["dev", "prod"]


def _drop_install(job: str) -> Any:
    def edit(data: dict[str, Any]) -> None:
        steps = data["jobs"][job]["steps"]
        steps[:] = [s for s in steps if "pip install" not in str(s.get("run", ""))]

    return edit


@pytest.mark.parametrize(
    ("workflow", "job", "missing"),
    [("preview.yml", "cost", "No module named 'yaml'"), ("preview.yml", "preview", "'virtualenv'")],
)
def test_a_job_without_its_install_step_fails(
    tmp_path: Path, edge: str, workflow: str, job: str, missing: str
) -> None:
    """The proof reads what a job installs: the same job with its install step removed fails."""
    account = _new_account(tmp_path, edge)
    event = _pull_request(4, REPOSITORY)
    jobs = Runner(workflow, event, account, tmp_path / "broken", edit=_drop_install(job)).run(only={job})
    assert jobs[job].result == "failure" and missing in jobs[job].error


def test_deploy_concurrency_is_per_environment() -> None:
    """dev never waits behind a prod deploy that waits for its reviewers, and no deploy is cancelled."""
    deploy = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    assert "concurrency" not in deploy
    groups = {}
    for name in ("dev", "prod"):
        concurrency = deploy["jobs"][name]["concurrency"]
        assert concurrency["cancel-in-progress"] is False
        groups[name] = concurrency["group"]
    assert groups["dev"] != groups["prod"]


def test_ci_steps_name_real_make_targets() -> None:
    """ci.yml (which deploy.yml calls) installs the dev extra from the lock and runs make targets."""
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert "workflow_call" in ci[True]
    runs = "\n".join(str(s.get("run", "")) for s in ci["jobs"]["test"]["steps"])
    assert "-c requirements.lock -e '.[dev]'" in runs
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    called = re.findall(r"\bmake ([\w-]+)", runs)
    assert called and set(called) <= targets


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _third_party_imports() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "infra").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("infra", "__future__")}


def test_infra_lock_is_the_infra_extra_at_the_main_locks_releases() -> None:
    infra_pins, all_pins = _pins(REPO / "requirements-infra.lock"), _pins(REPO / "requirements.lock")
    assert {name: all_pins.get(name) for name in infra_pins} == infra_pins
    assert "torch" not in infra_pins and "open-clip-torch" not in infra_pins
    # Every module infra/ imports comes from the infra lock, and the infra extra declares nothing
    # that infra/ never imports.
    providers = metadata.packages_distributions()
    needed = {re.sub(r"[-_.]+", "-", d).lower() for m in _third_party_imports() for d in providers[m]}
    assert needed <= set(infra_pins), needed - set(infra_pins)
    pyproject = (REPO / "pyproject.toml").read_text()
    extra = re.search(r"^infra = \[(.*?)^\]", pyproject, flags=re.M | re.S)
    assert extra
    requirements = re.findall(r'"([^"]+)"', extra[1])
    declared = {re.sub(r"[-_.]+", "-", re.split(r"[<>=\[]", d)[0]).lower() for d in requirements}
    assert not declared - needed, f"declared but never imported: {declared - needed}"
    assert "pulumi-awsx" not in all_pins


def test_workflow_jobs_install_from_a_lock() -> None:
    """No job installs anything unpinned; the Pulumi jobs take the infra lock, without torch."""
    for path in WORKFLOWS.glob("*.yml"):
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            for step in job.get("steps", []):
                for line in str(step.get("run", "")).splitlines():
                    if "pip install" in line:
                        pinned = re.search(r"-[rc] requirements(-infra)?\.lock", line)
                        assert pinned, f"{path.name}/{name}: {line}"
                        if name != "test":
                            assert "requirements-infra.lock" in line and "-e" not in line.split(), line
