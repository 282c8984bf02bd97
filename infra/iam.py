"""IAM policy documents of the ECS tasks, as plain data: the trust policy, the execution role
(pull the image, write logs, read exactly this stack's secrets for injection) and one task
role per service with only what that program calls at run time.

The task roles never read SSM: ECS injects each container's secrets through the execution
role (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-ssm-paramstore.html)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

Document = dict[str, Any]

ECS_TASKS_TRUST: Document = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
        }
    ],
}

# X-Ray has no resource-level permissions.
_TRACES: Document = {
    "Sid": "Traces",
    "Effect": "Allow",
    "Action": [
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    ],
    "Resource": "*",
}

# What each program does with the images bucket: the API stores, serves (presigned GET) and
# deletes uploads; the worker reads them to embed; the console never touches images.
IMAGE_ACTIONS: dict[str, tuple[str, ...]] = {
    "api": ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"),
    "worker": ("s3:GetObject",),
    "gpu-worker": ("s3:GetObject",),
    "console": (),
}


# Where the deploy workflow records each stack's cost plan in its images bucket.
DEPLOYED_PLANS_PREFIX = "deploy/"


def execution_policy(
    repository_arn: pulumi.Input[str],
    log_group_arns: Mapping[str, pulumi.Input[str]],
    secret_arns: Mapping[str, pulumi.Input[str]],
) -> Document:
    """The execution role: ECS pulls the image, writes the containers' logs and injects secrets."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            # GetAuthorizationToken has no resource-level permissions.
            {"Sid": "EcrAuth", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage",
                ],
                "Resource": repository_arn,
            },
            {
                "Sid": "WriteLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [pulumi.Output.concat(arn, ":*") for arn in log_group_arns.values()],
            },
            {
                "Sid": "ReadSecrets",
                "Effect": "Allow",
                "Action": "ssm:GetParameters",
                "Resource": [arn for _, arn in sorted(secret_arns.items())],
            },
        ],
    }


def task_policy(
    program: str,
    images_bucket_arn: pulumi.Input[str],
    metrics_log_group_arn: pulumi.Input[str],
    extra_statements: list[Document] | None = None,
) -> Document:
    """The task role of one program: its own S3 actions, traces, and EMF metrics; no SSM."""
    statements: list[Document] = []
    actions = IMAGE_ACTIONS[program]
    if actions:
        statements += [
            {
                "Sid": "ImagesObjects",
                "Effect": "Allow",
                "Action": list(actions),
                "Resource": pulumi.Output.concat(images_bucket_arn, "/*"),
            },
            # Without ListBucket a missing key answers 403 instead of 404.
            {"Sid": "ImagesList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": images_bucket_arn},
        ]
    if program == "console":
        # The Cost page reads the plan each deploy records (console/cost.py), nothing else.
        statements.append(
            {
                "Sid": "DeployedPlans",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": pulumi.Output.concat(images_bucket_arn, f"/{DEPLOYED_PLANS_PREFIX}*"),
            }
        )
    statements += [
        _TRACES,
        {
            "Sid": "EmfMetrics",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": pulumi.Output.concat(metrics_log_group_arn, ":*"),
        },
        *(extra_statements or []),
    ]
    return {"Version": "2012-10-17", "Statement": statements}
