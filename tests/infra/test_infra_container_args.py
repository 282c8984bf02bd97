"""containers.py on its own: the container definitions from a small ContainerArgs, without
the rest of the program (no Pulumi engine needed: plain strings resolve immediately)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pulumi

from infra.config import AppConfig
from infra.containers import SERVICE_SECRETS, ContainerArgs, container_definitions
from infra.ports import API_PORT, CONSOLE_PORT


def _args(**extra_env: str) -> ContainerArgs:
    names = (
        "DATABASE_URL",
        "REDIS_URL",
        "PRETHRIFT_ADMIN_TOKEN",
        "PRETHRIFT_CONSOLE_PASSWORD",
        "SENTRY_DSN",
        "PRETHRIFT_SHOPIFY_WEBHOOK_SECRET",
    )
    return ContainerArgs(
        stack="qa",
        region="eu-west-1",
        app=AppConfig(environment="staging", log_level="DEBUG"),
        images_bucket_name="qa-images",
        secret_arns={n: pulumi.Output.from_input(f"arn:aws:ssm:eu-west-1:1:parameter/qa/{n}") for n in names},
        log_groups={
            s: pulumi.Output.from_input(f"/ecs/qa/{s}") for s in ("api", "worker", "console", "otel", "metrics")
        },
        extra_env=dict(extra_env),
    )


def _definitions(
    program: str, port: int | None, extra_env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Resolve the definitions in a fresh event loop: Pulumi outputs bind to the running loop."""

    async def build() -> Any:
        command = ["serve" if program == "api" else program]
        return await container_definitions(
            _args(**(extra_env or {})), program, command, "img@sha", port
        ).future()

    parsed: list[dict[str, Any]] = json.loads(asyncio.run(build()))
    return parsed


def test_api_task_from_container_args() -> None:
    defs = {c["name"]: c for c in _definitions("api", API_PORT)}
    assert set(defs) == {"api", "migrate", "otel-collector"}
    api = defs["api"]
    env = {e["name"]: e["value"] for e in api["environment"]}
    assert env["ENVIRONMENT"] == "staging" and env["LOG_LEVEL"] == "DEBUG"
    assert env["AWS_REGION"] == "eu-west-1" and env["IMAGES_BUCKET"] == "qa-images"
    assert (
        env["PRETHRIFT_PORT"] == str(API_PORT)
        and "deployment.environment=qa" in env["OTEL_RESOURCE_ATTRIBUTES"]
    )
    assert api["portMappings"] == [{"containerPort": API_PORT, "protocol": "tcp"}]
    assert f"127.0.0.1:{API_PORT}/healthz" in api["healthCheck"]["command"][-1]
    assert [s["name"] for s in api["secrets"]] == list(SERVICE_SECRETS["api"])
    assert [s["name"] for s in defs["migrate"]["secrets"]] == list(SERVICE_SECRETS["migrate"])
    assert api["logConfiguration"]["options"]["awslogs-group"] == "/ecs/qa/api"
    assert {"containerName": "migrate", "condition": "SUCCESS"} in api["dependsOn"]


def test_console_and_worker_get_only_their_secrets_and_extra_env() -> None:
    console = _definitions("console", CONSOLE_PORT, {"FEATURE": "on"})[0]
    env = {e["name"]: e["value"] for e in console["environment"]}
    assert env["PRETHRIFT_CONSOLE_PORT"] == str(CONSOLE_PORT) and env["FEATURE"] == "on"
    assert [s["name"] for s in console["secrets"]] == list(SERVICE_SECRETS["console"])
    worker = _definitions("worker", None)
    assert [c["name"] for c in worker] == ["worker", "otel-collector"]
    assert "portMappings" not in worker[0] and "PRETHRIFT_ADMIN_TOKEN" not in {
        s["name"] for s in worker[0]["secrets"]
    }
