"""Container definitions for the ECS tasks: the app container, its environment and secrets,
and the OpenTelemetry collector sidecar. Pure functions of their inputs, used by service.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.config import AppConfig
from infra.loadbalancer import IDLE_TIMEOUT_S, WEBSOCKET_IDLE_S
from infra.observability import CLOUDWATCH_METRICS, METRICS_NAMESPACE
from infra.ports import API_PORT, WORKER_METRICS_PORT

COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"
OTLP_HTTP = "http://127.0.0.1:4318"

# Which secrets each program uses: a program gets no secret it does not read (the app's
# per-program requirements are webapp.cli.programs.REQUIRED_SETTINGS). The worker never touches the
# cache, and migrate only the database.
SERVICE_SECRETS: dict[str, tuple[str, ...]] = {
    "api": (
        "DATABASE_URL",
        "DATABASE_READ_URL",
        "REDIS_URL",
        "PRETHRIFT_ADMIN_TOKEN",
        "SENTRY_DSN",
        "PRETHRIFT_SHOPIFY_WEBHOOK_SECRET",
    ),
    "worker": ("DATABASE_URL", "SENTRY_DSN"),
    "console": ("DATABASE_URL", "PRETHRIFT_CONSOLE_PASSWORD", "SENTRY_DSN"),
    "migrate": ("DATABASE_URL",),
}
SERVICE_SECRETS["gpu-worker"] = SERVICE_SECRETS["worker"]


@dataclass(frozen=True)
class ContainerArgs:
    """What the container definitions read: the app settings, where logs go, which secrets exist."""

    stack: str
    region: str
    app: AppConfig
    images_bucket_name: pulumi.Input[str]
    secret_arns: dict[str, pulumi.Output[str]]
    """SSM parameter ARN by environment variable name; a program gets those it needs."""
    log_groups: dict[str, pulumi.Output[str]]
    """Log group name by stream: each program, `otel` and `metrics`."""
    images_cdn_url: pulumi.Input[str] | None = None
    """The photos' CDN origin: the API's photo URLs point there."""
    extra_env: dict[str, str] = field(default_factory=dict)


def collector_config(metrics_log_group: str, scrape: str | None = None) -> str:
    """The ADOT collector's config: OTLP in on loopback (and, with `scrape`, the app's Prometheus
    /metrics on loopback), X-Ray and CloudWatch EMF out, for the metrics the alarms read only."""
    config: dict[str, Any] = {
        "extensions": {"health_check": {}},
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:4317"},
                    "http": {"endpoint": "127.0.0.1:4318"},
                }
            }
        },
        "processors": {
            "batch/traces": {"timeout": "1s", "send_batch_size": 50},
            "batch/metrics": {"timeout": "60s"},
            # Only the allow-listed metrics leave the task (EMF log lines cost ingestion too).
            "filter/cloudwatch": {
                "metrics": {"include": {"match_type": "strict", "metric_names": list(CLOUDWATCH_METRICS)}}
            },
        },
        "exporters": {
            "awsxray": {},
            "awsemf": {
                "namespace": METRICS_NAMESPACE,
                "log_group_name": metrics_log_group,
                # One metric per name, without dimensions (what the alarms query); the default
                # rolls up every label and resource attribute into further metrics, each billed.
                "dimension_rollup_option": "NoDimensionRollup",
                "metric_declarations": [
                    {"dimensions": [[]], "metric_name_selectors": [f"^{n}$" for n in CLOUDWATCH_METRICS]}
                ],
            },
        },
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch/traces"], "exporters": ["awsxray"]},
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": ["filter/cloudwatch", "batch/metrics"],
                    "exporters": ["awsemf"],
                },
            },
        },
    }
    if scrape:
        config["receivers"]["prometheus"] = {
            "config": {
                "scrape_configs": [
                    {
                        "job_name": "prethrift",
                        "scrape_interval": "60s",
                        "metrics_path": "/metrics",
                        "static_configs": [{"targets": [scrape]}],
                    }
                ]
            }
        }
        config["service"]["pipelines"]["metrics"]["receivers"].append("prometheus")
    return json.dumps(config)


def app_environment(
    args: ContainerArgs, program: str, port: int | None, device: str = "cpu"
) -> dict[str, pulumi.Input[str]]:
    """Plain (non-secret) environment of an app container, by the names the app reads."""
    env: dict[str, pulumi.Input[str]] = {
        "ENVIRONMENT": args.app.environment,
        "AWS_REGION": args.region,
        "IMAGES_BUCKET": args.images_bucket_name,
        "LOG_LEVEL": args.app.log_level,
        "OTEL_EXPORTER_OTLP_ENDPOINT": OTLP_HTTP,
        "OTEL_SERVICE_NAME": f"prethrift-{program}",
        "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={args.stack},service.namespace=prethrift",
        "PRETHRIFT_CLIP_MODEL": args.app.clip_model,
        "PRETHRIFT_CLIP_PRETRAINED": args.app.clip_pretrained,
        "PRETHRIFT_CLIP_DEVICE": device,
        # The worker is its own service here; the API must not embed inline as well.
        "PRETHRIFT_WORKER_INLINE": "false",
        # Parent-based ratio sampling (webapp/observability/tracing.py); X-Ray bills per trace recorded.
        "OTEL_TRACES_SAMPLER_ARG": str(args.app.trace_sample_ratio),
    }
    if program == "api":
        # Clients reach the API only through the ALB, which appends the address it saw to
        # X-Forwarded-For: that entry names the client for the per-client limits.
        env |= {"PRETHRIFT_HOST": "0.0.0.0", "PRETHRIFT_PORT": str(port)}
        env |= {"PRETHRIFT_LIMITS_TRUSTED_PROXIES": "1"}
        # The app closes an idle suggestion socket itself (with a close frame the page acts on)
        # before the ALB's idle timeout would cut it silently; loadbalancer.py derives that
        # timeout from this.
        env |= {"PRETHRIFT_LIMITS_WS_IDLE_S": f"{WEBSOCKET_IDLE_S:g}"}
        # Keep-alive connections outlast the ALB's idle timeout, so the ALB always closes first.
        env |= {"PRETHRIFT_KEEP_ALIVE_S": str(IDLE_TIMEOUT_S + 5)}
        if args.images_cdn_url is not None:
            env |= {"PRETHRIFT_IMAGES_CDN_URL": args.images_cdn_url}
    if program == "console":
        # The console is behind the same ALB: its X-Forwarded-For entry names the client whose
        # wrong passwords are counted (one lockout must not hold up everyone behind the ALB).
        env |= {"PRETHRIFT_HOST": "0.0.0.0", "PRETHRIFT_CONSOLE_PORT": str(port)}
        env |= {"PRETHRIFT_LIMITS_TRUSTED_PROXIES": "1"}
    if program in ("worker", "gpu-worker"):
        env |= {"PRETHRIFT_WORKER_METRICS_PORT": str(WORKER_METRICS_PORT)}
    return env | args.extra_env


def container_definitions(
    args: ContainerArgs,
    program: str,
    command: list[str],
    image: pulumi.Input[str],
    port: int | None,
    device: str = "cpu",
    gpus: int = 0,
) -> pulumi.Output[str]:
    """The task's containers: the app (read-only root, secrets from SSM) and the collector."""
    log_group = args.log_groups[program]

    def logging(stream_prefix: str, group: pulumi.Input[str]) -> dict[str, Any]:
        return {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": group,
                "awslogs-region": args.region,
                "awslogs-stream-prefix": stream_prefix,
            },
        }

    app: dict[str, Any] = {
        "name": program,
        "image": image,
        "essential": True,
        "command": command,
        "readonlyRootFilesystem": True,
        "environment": [
            {"name": k, "value": v} for k, v in sorted(app_environment(args, program, port, device).items())
        ],
        "secrets": [
            {"name": name, "valueFrom": args.secret_arns[name]}
            for name in SERVICE_SECRETS[program]
            if name in args.secret_arns
        ],
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}],
        "linuxParameters": {"initProcessEnabled": True},
        "stopTimeout": 30,
        "logConfiguration": logging(program, log_group),
        "dependsOn": [{"containerName": "otel-collector", "condition": "START"}],
    }
    if port is not None:
        app["portMappings"] = [{"containerPort": port, "protocol": "tcp"}]
    if program == "api":
        app["healthCheck"] = {
            "command": [
                "CMD",
                "python",
                "-c",
                f"import urllib.request as u; u.urlopen('http://127.0.0.1:{API_PORT}/healthz', timeout=3)",
            ],
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 120,
        }
    if gpus:
        app["resourceRequirements"] = [{"type": "GPU", "value": str(gpus)}]

    containers = [app]
    if program == "api":
        # `prethrift migrate` runs to completion before the API starts in every new task,
        # so a deployment never serves code ahead of its schema.
        containers.append(
            {
                "name": "migrate",
                "image": image,
                "essential": False,
                "command": ["migrate"],
                "readonlyRootFilesystem": True,
                "environment": app["environment"],
                "secrets": [
                    {"name": name, "valueFrom": args.secret_arns[name]}
                    for name in SERVICE_SECRETS["migrate"]
                    if name in args.secret_arns
                ],
                "mountPoints": app["mountPoints"],
                "logConfiguration": logging("migrate", log_group),
            }
        )
        app["dependsOn"].append({"containerName": "migrate", "condition": "SUCCESS"})

    # The API serves Prometheus metrics at /metrics and a worker on its metrics port; the task's
    # collector scrapes them on loopback (the ALB answers 404 for /metrics, so they are never
    # public) and ships them as EMF, where the queue and error alarms read them.
    scrape: str | None = None
    if program == "api" and port:
        scrape = f"127.0.0.1:{port}"
    elif program in ("worker", "gpu-worker"):
        scrape = f"127.0.0.1:{WORKER_METRICS_PORT}"
    collector: dict[str, Any] = {
        "name": "otel-collector",
        "image": COLLECTOR_IMAGE,
        # Telemetry is best effort: a collector crash must not stop the app's task.
        "essential": False,
        "readonlyRootFilesystem": True,
        "memoryReservation": 128,
        "environment": [
            {
                "name": "AOT_CONFIG_CONTENT",
                "value": pulumi.Output.from_input(args.log_groups["metrics"]).apply(
                    lambda group: collector_config(group, scrape)
                ),
            }
        ],
        "healthCheck": {"command": ["/healthcheck"], "interval": 15, "timeout": 5, "retries": 3},
        "logConfiguration": logging(program, args.log_groups["otel"]),
    }
    return pulumi.Output.json_dumps([*containers, collector])
