"""One-time bootstrap of an AWS account for Prethrift (infra/README.md, "From an empty account").

Creates what the stacks and the workflows expect to exist before the first deploy:
- the GitHub Actions OIDC provider (no long-lived AWS keys anywhere);
- a versioned, encrypted, TLS-only S3 bucket for Pulumi state (`PULUMI_BACKEND_URL`);
- a KMS key for Pulumi's secrets provider (`awskms://alias/prethrift-pulumi-secrets`);
- per stack, a deploy role that only the GitHub environment of that stack can assume, limited
  to resources tagged `stack=<stack>` (every stack resource carries it through aws:defaultTags),
  its own state files and the secrets key; and a read-only preview role for pull requests.

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

from infra.bootstrap.policies import deploy_policy, github_trust, preview_policy

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

secrets_key = aws.kms.Key(
    "pulumi-secrets",
    description="Pulumi secrets provider for Prethrift stacks",
    enable_key_rotation=True,
    deletion_window_in_days=30,
    tags=tags,
)
aws.kms.Alias("pulumi-secrets-alias", name="alias/prethrift-pulumi-secrets", target_key_id=secrets_key.key_id)


def trust(subjects: list[str]) -> pulumi.Output[str]:
    return provider.arn.apply(lambda arn: json.dumps(github_trust(arn, repository, subjects)))


def stack_policy(stack: str, preview: bool) -> pulumi.Output[str]:
    def document(arns: list[str]) -> str:
        state_arn, key_arn = arns
        if preview:
            return json.dumps(preview_policy(stack, state_arn, key_arn))
        return json.dumps(deploy_policy(stack, account, region, state_arn, key_arn))

    return pulumi.Output.all(state.arn, secrets_key.arn).apply(document)


outputs: dict[str, Any] = {}
for stack in stacks:
    environment = "production" if stack == "prod" else stack
    deploy = aws.iam.Role(
        f"deploy-{stack}",
        name=f"prethrift-{stack}-deploy",
        description=f"GitHub Actions deploys of the {stack} stack (environment {environment})",
        assume_role_policy=trust([f"environment:{environment}"]),
        max_session_duration=3600,
        tags=tags,
    )
    aws.iam.RolePolicy(
        f"deploy-{stack}-policy",
        role=deploy.id,
        policy=stack_policy(stack, preview=False),
    )
    preview = aws.iam.Role(
        f"preview-{stack}",
        name=f"prethrift-{stack}-preview",
        description=f"GitHub Actions previews of the {stack} stack (read only)",
        # Pull requests from this repository, and maintainers' manual runs from main.
        assume_role_policy=trust(["pull_request", "ref:refs/heads/main"]),
        max_session_duration=3600,
        tags=tags,
    )
    aws.iam.RolePolicyAttachment(
        f"preview-{stack}-read-only",
        role=preview.name,
        policy_arn="arn:aws:iam::aws:policy/ReadOnlyAccess",
    )
    aws.iam.RolePolicy(
        f"preview-{stack}-policy",
        role=preview.id,
        policy=stack_policy(stack, preview=True),
    )
    outputs[f"AWS_{stack.upper()}_DEPLOY_ROLE_ARN"] = deploy.arn
    outputs[f"AWS_{stack.upper()}_PREVIEW_ROLE_ARN"] = preview.arn

pulumi.export("github_variables", {**outputs, "PULUMI_BACKEND_URL": state.bucket.apply(lambda b: f"s3://{b}")})
pulumi.export("secrets_provider", "awskms://alias/prethrift-pulumi-secrets")
