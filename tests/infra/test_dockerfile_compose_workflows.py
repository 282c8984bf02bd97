"""The image, the local compose stack and the workflows: linted, validated against their
published schemas (offline, vendored in check-jsonschema), and checked against the app."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
APP_SERVICES = ("migrate", "api", "worker", "console")


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed; pip install -e '.[dev]'"
    return found


@pytest.fixture(name="compose", scope="module")
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    user = re.search(r"^USER (\S+)", runtime, re.MULTILINE)
    assert user and user.group(1).split(":")[0] not in ("root", "0")
    assert "COPY --from=build /opt/venv" in runtime and "pip install" not in runtime
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", runtime, re.MULTILINE)
    assert "HF_HOME=/opt/hf" in runtime and "HF_HUB_OFFLINE=1" in runtime
    assert "download.pytorch.org/whl/cpu" in text
    assert "open_clip.create_model_and_transforms" in text
    assert "CLIP_MODEL=ViT-B-32" in text and "CLIP_PRETRAINED=laion2b_s34b_b79k" in text
    assert 'ENTRYPOINT ["prethrift"]' in runtime and 'CMD ["serve"]' in runtime
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1 :] and "!webapp/" in ignored
    # The console reads the plan's data shapes from infra/ and lists the stack files.
    assert {"!infra/", "!Pulumi.yaml", "!Pulumi.*.yaml", "!requirements.lock"} <= set(ignored)
    assert "COPY --chown=root:root infra/ /app/infra/" in runtime and "PYTHONPATH=/app" in runtime
    # Locked versions, and no Pulumi SDKs in the image: the console reads the recorded plan.
    build = text.split("AS runtime", 1)[0]
    assert build.count("-c requirements.lock") == 2
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("pulumi")]
    assert "pulumi-aws>=7,<8" in project["optional-dependencies"]["infra"]
    assert "prethrift[infra]" in project["optional-dependencies"]["dev"]


@pytest.mark.parametrize(
    ("schema", "paths"),
    [
        ("vendor.compose-spec", [REPO / "compose.yaml"]),
        ("vendor.github-workflows", WORKFLOWS),
    ],
)
def test_files_match_their_published_schema(schema: str, paths: list[Path]) -> None:
    assert paths
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_environment_is_what_the_app_reads(compose: dict[str, Any]) -> None:
    from webapp.cli.programs import known_env_vars

    known = known_env_vars()
    for name in (*APP_SERVICES, "localstack-init"):
        env = set(compose["services"][name]["environment"])
        assert env <= known, f"{name}: the app does not read {sorted(env - known)}"
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["PRETHRIFT_WORKER_INLINE"] == "false"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://jaeger:4318")


def test_compose_commands_and_ports_agree_with_the_code(compose: dict[str, Any]) -> None:
    from webapp.cli import main
    from webapp.config import Settings

    services = compose["services"]
    expected = {"migrate": "migrate", "api": "serve", "worker": "worker", "console": "console"}
    for name, command in expected.items():
        assert services[name]["command"] == [command]
        assert command in main.commands, f"`prethrift {command}` does not exist (webapp/cli/)"
    api_env = services["api"]["environment"]
    api_port = Settings.model_fields["port"].default
    assert services["api"]["ports"] == [f"{api_port}:{api_port}"]
    assert int(api_env["PRETHRIFT_PORT"]) == api_port and api_env["PRETHRIFT_HOST"] == "0.0.0.0"
    assert f":{api_port}/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    console_port = Settings.model_fields["console_port"].default
    assert services["console"]["ports"] == [f"{console_port}:{console_port}"]
    assert int(services["console"]["environment"]["PRETHRIFT_CONSOLE_PORT"]) == console_port
    assert "ports" not in services["worker"]


def test_compose_backing_services_and_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg1")
    assert services["localstack"]["environment"]["SERVICES"] == "s3,ssm"
    assert services["jaeger"]["image"].startswith("jaegertracing/")
    assert "4318:4318" in services["jaeger"]["ports"]
    for name in ("postgres", "redis", "localstack", "api", "console"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    for name in APP_SERVICES:
        assert services[name]["read_only"] is True and "/tmp" in services[name]["tmpfs"]


def _jobs(name: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    jobs: dict[str, Any] = data["jobs"]
    return jobs


def _steps_using(job: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(prefix)]


def test_workflows_preview_and_deploy_through_oidc() -> None:
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert "AWS_SECRET_ACCESS_KEY" not in text and "aws-access-key-id" not in text
    preview = _jobs("preview.yml")
    stacks = {item["stack"] for item in preview["preview"]["strategy"]["matrix"]["include"]}
    assert stacks == {"dev", "prod"}
    (pulumi,) = [s for s in _steps_using(preview["preview"], "pulumi/actions@") if s.get("with")]
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "infra/policy"
    # It previews the image each stack runs now (no build, no task definition replaced).
    assert pulumi["with"]["config-map"] == "${{ steps.deployed.outputs.config-map }}"
    assert _steps_using(preview["preview"], "aws-actions/configure-aws-credentials")[0]["with"][
        "role-to-assume"
    ]
    assert "python -m infra.plan" in str(preview["cost"]["steps"]) and "--compare" in str(
        preview["cost"]["steps"]
    )
    # Fork PRs get no credentials: the cloud preview skips them with a clear notice, and a
    # maintainer can start it by hand after reading the change.
    assert "head.repo.full_name == github.repository" in preview["preview"]["if"]
    assert "workflow_dispatch" in preview["preview"]["if"]
    assert "head.repo.full_name != github.repository" in preview["fork-notice"]["if"]
    assert "needs maintainer approval" in str(preview["fork-notice"]["steps"]).lower()

    deploy = _jobs("deploy.yml")
    assert deploy["build"]["needs"] == "test" and deploy["dev"]["needs"] == "build"
    assert deploy["prod"]["needs"] == ["build", "dev"] and deploy["prod"]["environment"]["name"] == "production"
    # Built once: only the build job builds (scripts/push-image.sh), into the bootstrap's
    # repository (no targeted `up`); both stacks deploy the digests it produced, prod after
    # copying them (scripts/promote-image.sh checks the copy's digest).
    build = str(deploy["build"]["steps"])
    assert "scripts/push-image.sh" in build and "--target" not in build
    assert "docker buildx build" in (REPO / "scripts" / "push-image.sh").read_text()
    assert "push-image" not in str(deploy["dev"]["steps"]) + str(deploy["prod"]["steps"])
    assert "scripts/promote-image.sh" in str(deploy["prod"]["steps"])
    assert '"$copied" = "$digest"' in (REPO / "scripts" / "promote-image.sh").read_text()
    for job in ("dev", "prod"):
        up = next(s for s in _steps_using(deploy[job], "pulumi/actions@") if s.get("with", {}).get("command"))
        assert up["with"]["command"] == "up" and up["with"]["stack-name"] == job
        assert "imageTag" in up["with"]["config-map"]
        assert "needs.build.outputs.digest" in up["with"]["config-map"]
        assert "needs.build.outputs.gpu_digest" in up["with"]["config-map"]
        runs = [s.get("run", "") for s in deploy[job]["steps"]]
        smoke = next(i for i, r in enumerate(runs) if "python -m infra.smoke" in r)
        assert "steps.up.outputs.url" in runs[smoke] and "continue-on-error" not in deploy[job]["steps"][smoke]
        assert any("infra.plan" in r and "aws s3 cp" in r for r in runs[smoke:])
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    assert {"push", "pull_request"} <= set(ci[True])  # YAML 1.1 reads `on` as True
    assert "make test" in str(ci["jobs"]["test"]["steps"])
    assert "-c requirements.lock" in str(ci["jobs"]["test"]["steps"])


def test_workflows_never_cancel_a_deploy_and_pin_actions() -> None:
    for path in WORKFLOWS:
        data = yaml.safe_load(path.read_text())
        # No blanket token permissions: each job says what it needs.
        assert data["permissions"] == {}, path.name
        for name, job in data["jobs"].items():
            assert "permissions" in job, f"{path.name}/{name}"
            for step in job.get("steps", []):
                uses = str(step.get("uses", ""))
                if uses and not uses.startswith("./"):
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), (
                        f"{path.name}: {uses} not SHA-pinned"
                    )
    deploy = yaml.safe_load((REPO / ".github" / "workflows" / "deploy.yml").read_text())
    # Per environment (tests/infra/test_workflows_run.py): never cancelled.
    for job in ("dev", "prod"):
        assert deploy["jobs"][job]["concurrency"]["cancel-in-progress"] is False
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    # The deploy calls ci.yml: its group must not collide with (and cancel) the push run.
    assert "github.workflow" in ci["concurrency"]["group"]
    assert ci["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
