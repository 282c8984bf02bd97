"""The bootstrap's IAM documents as plain data (unit-tested without Pulumi).

Deploy roles are scoped to their stack through the `stack` tag every stack resource carries
(`aws:defaultTags` in Pulumi.<stack>.yaml): creating needs the tag in the request, changing or
deleting needs it on the resource
(https://docs.aws.amazon.com/IAM/latest/UserGuide/access_tags.html). Actions that cannot be
scoped (describe/list, ECR auth) are read-only."""

from __future__ import annotations

from typing import Any

GITHUB_AUDIENCE = "sts.amazonaws.com"

# The services a stack is made of (infra/*.py); the tag conditions below limit them to it.
STACK_SERVICES = (
    "acm",
    "application-autoscaling",
    "autoscaling",
    "cloudwatch",
    "cognito-idp",
    "ec2",
    "ecr",
    "ecs",
    "elasticache",
    "elasticloadbalancing",
    "iam",
    "kms",
    "logs",
    "rds",
    "route53",
    "s3",
    "sns",
    "ssm",
)
READ_ONLY = [f"{service}:{verb}*" for service in STACK_SERVICES for verb in ("Describe", "List", "Get")]


def github_trust(provider_arn: str, repository: str, subjects: list[str]) -> dict[str, Any]:
    """Trust tokens from GitHub for `repository` whose subject is one of `subjects`
    (e.g. `environment:production`: only jobs in that GitHub environment)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {"token.actions.githubusercontent.com:aud": GITHUB_AUDIENCE},
                    "StringLike": {
                        "token.actions.githubusercontent.com:sub": [f"repo:{repository}:{s}" for s in subjects]
                    },
                },
            }
        ],
    }


def _state_objects(stack: str, state_arn: str) -> list[str]:
    # The S3 backend's layout: .pulumi/{stacks,history,locks,backups}/<project>/<stack>...
    return [
        f"{state_arn}/.pulumi/stacks/prethrift/{stack}.json*",
        f"{state_arn}/.pulumi/history/prethrift/{stack}/*",
        f"{state_arn}/.pulumi/locks/prethrift/{stack}/*",
        f"{state_arn}/.pulumi/backups/prethrift/{stack}/*",
        f"{state_arn}/.pulumi/meta.yaml",
    ]


def deploy_policy(
    stack: str, account: str, region: str, state_arn: str, secrets_key_arn: str
) -> dict[str, Any]:
    """What `pulumi up` of one stack needs, and nothing of another stack."""
    managed = [f"{service}:*" for service in STACK_SERVICES]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Read",
                "Effect": "Allow",
                "Action": READ_ONLY + ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
            {
                "Sid": "CreateTagged",
                "Effect": "Allow",
                "Action": managed,
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/stack": stack}},
            },
            {
                "Sid": "ChangeTagged",
                "Effect": "Allow",
                "Action": managed,
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:ResourceTag/stack": stack}},
            },
            {
                "Sid": "PassTaskRoles",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": f"arn:aws:iam::{account}:role/*",
                "Condition": {
                    "StringEquals": {
                        "iam:PassedToService": ["ecs-tasks.amazonaws.com", "ec2.amazonaws.com"],
                        "aws:ResourceTag/stack": stack,
                    }
                },
            },
            # The ECR repository and the SSM parameters have names: scope by name as well.
            {
                "Sid": "StackImages",
                "Effect": "Allow",
                "Action": "ecr:*",
                "Resource": f"arn:aws:ecr:{region}:{account}:repository/prethrift-{stack}",
            },
            {
                "Sid": "StackParameters",
                "Effect": "Allow",
                "Action": "ssm:*",
                "Resource": f"arn:aws:ssm:{region}:{account}:parameter/prethrift/{stack}/*",
            },
            # prod promotes the image dev tested: it may read (never write) dev's repository.
            *(
                [
                    {
                        "Sid": "PullTestedImage",
                        "Effect": "Allow",
                        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:DescribeImages"],
                        "Resource": f"arn:aws:ecr:{region}:{account}:repository/prethrift-dev",
                    }
                ]
                if stack == "prod"
                else []
            ),
            {
                "Sid": "State",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": _state_objects(stack, state_arn),
            },
            {"Sid": "StateList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": state_arn},
            {
                "Sid": "StateSecrets",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": secrets_key_arn,
            },
        ],
    }


def preview_policy(stack: str, state_arn: str, secrets_key_arn: str) -> dict[str, Any]:
    """Beside AWS's ReadOnlyAccess: read this stack's state and decrypt its secrets; no writes
    except the lock `pulumi preview` takes."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StateRead",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": _state_objects(stack, state_arn),
            },
            {
                "Sid": "StateLock",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:DeleteObject"],
                "Resource": f"{state_arn}/.pulumi/locks/prethrift/{stack}/*",
            },
            {"Sid": "StateList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": state_arn},
            {"Sid": "StateSecrets", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": secrets_key_arn},
        ],
    }
