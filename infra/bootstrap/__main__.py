"""One-time bootstrap of an AWS account for Prethrift (infra/README.md, "From an empty account").

Creates what the stacks and the workflows expect to exist before the first deploy:
- the GitHub Actions OIDC provider (no long-lived AWS keys anywhere);
- a versioned, encrypted, TLS-only S3 bucket for Pulumi state (`PULUMI_BACKEND_URL`);
- per stack: a KMS key for Pulumi's secrets provider (`awskms://alias/prethrift-<stack>-pulumi-secrets`),
  the ECR repository its images are pushed to; the permissions boundary every role
  the stack creates must carry; a deploy role that only the GitHub environment of that stack
  can assume, fenced to the stack by name, by the `stack` tag and by that boundary
  (policies.py); and a preview role for pull requests that reads configuration, never data.

Run it once by hand with administrator credentials: `pulumi up` in this folder. Its outputs are
the values to set as GitHub variables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pulumi
import pulumi_aws as aws

from infra.bootstrap.policies import (
    deploy_policy,
    ecr_repositories,
    github_trust,
    name_prefix,
    permissions_boundary,
    preview_policy,
    secrets_alias,
    trusted_subjects,
)
from infra.stacks import read_stack_file

config = pulumi.Config()
repository = config.require("githubRepository")
stacks: list[str] = config.get_object("stacks") or ["dev", "prod"]  # type: ignore[assignment]
if "/" not in repository or repository.startswith("your-org/"):
    raise ValueError("prethrift-bootstrap:githubRepository must be your GitHub owner/name")

account = aws.get_caller_identity().account_id
region = aws.get_region().region
tags = {"project": "prethrift", "managed-by": "pulumi-bootstrap"}

# GitHub's OIDC issuer; AWS trusts its certificate authority without a pinned thumbprint.
provider = aws.iam.OpenIdConnectProvider(
    "github",
    url="https://token.actions.githubusercontent.com",
    client_id_lists=["sts.amazonaws.com"],
    tags=tags,
)

state = aws.s3.Bucket("pulumi-state", bucket=f"prethrift-pulumi-state-{account}", tags=tags)
aws.s3.BucketVersioning(
    "pulumi-state-versioning", bucket=state.id, versioning_configuration={"status": "Enabled"}
)
aws.s3.BucketServerSideEncryptionConfiguration(
    "pulumi-state-encryption",
    bucket=state.id,
    rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
)
aws.s3.BucketPublicAccessBlock(
    "pulumi-state-private",
    bucket=state.id,
    block_public_acls=True,
    block_public_policy=True,
    ignore_public_acls=True,
    restrict_public_buckets=True,
)
aws.s3.BucketOwnershipControls(
    "pulumi-state-ownership", bucket=state.id, rule={"object_ownership": "BucketOwnerEnforced"}
)
aws.s3.BucketPolicy(
    "pulumi-state-tls-only",
    bucket=state.id,
    policy=state.arn.apply(
        lambda arn: json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [arn, f"{arn}/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            }
        )
    ),
)


def trust(subjects: list[str]) -> pulumi.Output[str]:
    return provider.arn.apply(lambda arn: json.dumps(github_trust(arn, repository, subjects)))


def hosted_zone(stack: str) -> tuple[str, list[str]] | None:
    """The operator's zone and the names the stack puts in it, read from the stack file."""
    try:
        lb = read_stack_file(stack).get("prethrift:loadBalancer") or {}
    except FileNotFoundError:
        return None
    zone = lb.get("hostedZoneId")
    names = [n for n in (lb.get("domainName"), lb.get("consoleHost")) if n]
    return (str(zone), [str(n) for n in names]) if zone and names else None


def document(stack: str, key: aws.kms.Key, preview: bool, pull_from: str | None = None) -> pulumi.Output[str]:
    """The deploy or preview role's policy of `stack`, once the state bucket and key exist."""

    def render(arns: list[str]) -> str:
        state_arn, key_arn = arns
        if preview:
            return json.dumps(preview_policy(stack, region, state_arn, key_arn))
        zone = hosted_zone(stack)
        return json.dumps(
            deploy_policy(stack, account, region, state_arn, key_arn, hosted_zone=zone, pull_from=pull_from)
        )

    return pulumi.Output.all(state.arn, key.arn).apply(render)


# ECR keeps images by count; CI pushes one image (and a `-gpu` tag with the GPU worker) per commit.
ECR_LIFECYCLE = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "drop untagged layers after a week",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "keep the last 30 images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30},
            "action": {"type": "expire"},
        },
    ]
}

outputs: dict[str, Any] = {}
repository_urls: dict[str, pulumi.Output[str]] = {}
secrets_providers: dict[str, str] = {}
for index, stack in enumerate(stacks):
    environment = "production" if stack == "prod" else stack
    stack_tags = {**tags, "stack": stack}
    # prod runs the digest dev built and smoke-tested: it pulls from the stack deployed before it.
    pull_from = stacks[index - 1] if index > 0 else None
    # One secrets key per stack: a stack file's `encryptedkey` is public in the repository, so a
    # shared key would let one stack's roles decrypt the other's secrets.
    secrets_key = aws.kms.Key(
        f"pulumi-secrets-{stack}",
        description=f"Pulumi secrets provider of the {stack} stack",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        # Not `stack`: the deploy role's tag grants must not reach its own secrets key.
        tags={**tags, "secrets-of": stack},
    )
    aws.kms.Alias(
        f"pulumi-secrets-{stack}-alias", name=f"alias/{secrets_alias(stack)}", target_key_id=secrets_key.key_id
    )
    secrets_providers[stack] = f"awskms://alias/{secrets_alias(stack)}"
    boundary = aws.iam.Policy(
        f"boundary-{stack}",
        name=f"{name_prefix(stack)}-boundary",
        description=f"Permissions boundary of every role the {stack} stack creates",
        policy=json.dumps(permissions_boundary(stack, account, region)),
        tags=stack_tags,
    )
    for repo_name in ecr_repositories(stack):
        repo = aws.ecr.Repository(
            f"ecr-{repo_name}",
            name=repo_name,
            image_scanning_configuration={"scan_on_push": True},
            image_tag_mutability="IMMUTABLE",
            encryption_configurations=[{"encryption_type": "AES256"}],
            tags=stack_tags,
        )
        aws.ecr.LifecyclePolicy(
            f"ecr-{repo_name}-lifecycle", repository=repo.name, policy=json.dumps(ECR_LIFECYCLE)
        )
        repository_urls[repo_name] = repo.repository_url
    deploy = aws.iam.Role(
        f"deploy-{stack}",
        name=f"{name_prefix(stack)}-deploy",
        description=f"GitHub Actions deploys of the {stack} stack (environment {environment})",
        assume_role_policy=trust(trusted_subjects("deploy", environment)),
        max_session_duration=3600,
        tags=stack_tags,
    )
    aws.iam.RolePolicy(
        f"deploy-{stack}-policy",
        role=deploy.id,
        policy=document(stack, secrets_key, preview=False, pull_from=pull_from),
    )
    preview = aws.iam.Role(
        f"preview-{stack}",
        name=f"{name_prefix(stack)}-preview",
        description=f"GitHub Actions previews of the {stack} stack (reads configuration, no data)",
        assume_role_policy=trust(trusted_subjects("preview", environment)),
        max_session_duration=3600,
        tags=stack_tags,
    )
    aws.iam.RolePolicy(
        f"preview-{stack}-policy",
        role=preview.id,
        policy=document(stack, secrets_key, preview=True),
    )
    outputs[f"AWS_{stack.upper()}_DEPLOY_ROLE_ARN"] = deploy.arn
    outputs[f"AWS_{stack.upper()}_PREVIEW_ROLE_ARN"] = preview.arn
    pulumi.export(f"{stack}_permissions_boundary", boundary.arn)

pulumi.export("github_variables", {**outputs, "PULUMI_BACKEND_URL": state.bucket.apply(lambda b: f"s3://{b}")})
pulumi.export("secrets_providers", secrets_providers)
pulumi.export("ecr_repository_urls", repository_urls)
