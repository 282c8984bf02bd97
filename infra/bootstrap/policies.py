"""The bootstrap's IAM documents as plain data (unit-tested without Pulumi).

One AWS account holds both stacks, so each deploy role is fenced to its own stack in three ways
(infra/README.md, "Account layout"):

- by name where AWS authorizes against a name and offers no tag condition: S3 buckets
  (`prethrift-<stack>-*`, the stack files' autonaming pattern), KMS aliases, the Route 53
  records of the stack's domain names, WAF web ACLs, and the stack's own state objects;
- by the `stack` tag everywhere else: a create must carry `stack=<stack>`
  (`aws:RequestTag`), a change needs it on the resource (`aws:ResourceTag`), no request may
  carry another stack's value and no one may remove the key, so nothing is re-tagged into or
  out of a stack;
- by a permissions boundary on every role the stack creates: the deploy role may only create
  or change roles that carry its stack's boundary, and may never remove or swap it.

The preview role reads configuration (Describe/List and the Get calls that return settings),
never data: no SSM parameter values, no S3 objects beyond the stack's state, no logs.
"""

from __future__ import annotations

from typing import Any

GITHUB_AUDIENCE = "sts.amazonaws.com"
GITHUB_ISSUER = "token.actions.githubusercontent.com"
PROJECT = "prethrift"
STACK_TAG = "stack"

# The services a stack is made of (infra/*.py), edge services (WAF, CloudFront) included.
STACK_SERVICES = (
    "acm",
    "application-autoscaling",
    "autoscaling",
    "cloudfront",
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
    "wafv2",
)

# Reads that return configuration, not data. `s3:Get*`, `ssm:GetParameter*`, `logs:Get*` and
# `ecr:GetDownloadUrlForLayer` would return objects, secret values, log lines and image layers:
# a deploy role reads those of its own stack only (by tag or name below), a preview role never.
_CONFIG_GET = {
    "acm": ["acm:GetCertificate"],
    "cloudfront": ["cloudfront:Get*"],
    "cognito-idp": ["cognito-idp:GetUserPoolMfaConfig"],
    "ecr": ["ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy"],
    "iam": ["iam:Get*"],
    "kms": ["kms:GetKeyPolicy", "kms:GetKeyRotationStatus"],
    "route53": ["route53:GetHostedZone", "route53:GetChange"],
    "s3": [
        "s3:GetBucket*",
        "s3:GetEncryptionConfiguration",
        "s3:GetLifecycleConfiguration",
        "s3:GetAccelerateConfiguration",
        "s3:GetReplicationConfiguration",
        "s3:GetIntelligentTieringConfiguration",
        "s3:GetAnalyticsConfiguration",
        "s3:GetInventoryConfiguration",
        "s3:GetMetricsConfiguration",
    ],
    "sns": ["sns:GetTopicAttributes", "sns:GetSubscriptionAttributes"],
    "wafv2": ["wafv2:Get*"],
}
# `s3:List*` would list every bucket's object keys: only the list of buckets, and ListBucket on
# the stack's own buckets below.
# Services without a Describe or a List verb at all.
_NO_VERB = {
    "autoscaling:List*",
    "elasticloadbalancing:List*",
    "iam:Describe*",
    "route53:Describe*",
    "sns:Describe*",
}
READ_CONFIG = sorted(
    [
        f"{service}:{verb}*"
        for service in STACK_SERVICES
        for verb in ("Describe", "List")
        if service != "s3" and f"{service}:{verb}*" not in _NO_VERB
    ]
    + ["s3:ListAllMyBuckets"]
    + [action for actions in _CONFIG_GET.values() for action in actions]
)


# What a preview never reads, whatever else allows it: the ALB's Cognito client secret, the
# console's users, parameter and secret values, log events, object contents.
PREVIEW_NEVER = [
    "cognito-idp:DescribeUserPoolClient",
    "cognito-idp:ListUsers",
    "cognito-idp:ListUsersInGroup",
    "cognito-idp:AdminGetUser",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "ssm:GetParameterHistory",
    "secretsmanager:GetSecretValue",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
    "logs:StartQuery",
    "s3:GetObject",
    "s3:GetObjectVersion",
]


def _read_statements(stack: str, region: str) -> list[dict[str, Any]]:
    prefix = name_prefix(stack)
    return [
        {"Sid": "ReadConfiguration", "Effect": "Allow", "Action": READ_CONFIG, "Resource": "*"},
        {
            # HeadBucket, which a refresh of a bucket calls, is authorized as s3:ListBucket.
            "Sid": "ListStackBuckets",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{prefix}-*",
        },
        {
            # AWS's public parameters (the ECS GPU AMI the stack looks up), never the stack's own.
            "Sid": "PublicParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": f"arn:aws:ssm:{region}:*:parameter/aws/service/*",
        },
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
    ]


# Tag writes: these may change which stack a resource belongs to, so they are granted apart.
TAG_ACTIONS = [
    "acm:AddTagsToCertificate",
    "acm:RemoveTagsFromCertificate",
    "application-autoscaling:TagResource",
    "application-autoscaling:UntagResource",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteTags",
    "cloudfront:TagResource",
    "cloudfront:UntagResource",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "cognito-idp:TagResource",
    "cognito-idp:UntagResource",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ecr:TagResource",
    "ecr:UntagResource",
    "ecs:TagResource",
    "ecs:UntagResource",
    "elasticache:AddTagsToResource",
    "elasticache:RemoveTagsFromResource",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:RemoveTags",
    "iam:TagInstanceProfile",
    "iam:UntagInstanceProfile",
    "iam:TagRole",
    "iam:UntagRole",
    "kms:TagResource",
    "kms:UntagResource",
    "logs:TagResource",
    "logs:UntagResource",
    "logs:TagLogGroup",
    "logs:UntagLogGroup",
    "rds:AddTagsToResource",
    "rds:RemoveTagsFromResource",
    "sns:TagResource",
    "sns:UntagResource",
    "ssm:AddTagsToResource",
    "ssm:RemoveTagsFromResource",
    "wafv2:TagResource",
    "wafv2:UntagResource",
]
# Services whose resources IAM scopes by their tags (IAM, S3 and Route 53 are scoped apart).
TAGGED_SERVICES = [s for s in STACK_SERVICES if s not in ("iam", "s3", "route53")]
# Creates whose verb is not Create.
OTHER_CREATES = [
    "acm:RequestCertificate",
    "application-autoscaling:RegisterScalableTarget",
    "cloudwatch:PutCompositeAlarm",
    "cloudwatch:PutMetricAlarm",
    "ec2:AllocateAddress",
    "ecs:RegisterTaskDefinition",
    "ssm:PutParameter",
]
_UNTAG = [a for a in TAG_ACTIONS if a.split(":")[1].startswith(("Untag", "Remove", "Delete"))]

# Service-linked roles AWS creates on an empty account at the first use of each service.
SERVICE_LINKED = [
    "autoscaling.amazonaws.com",
    "ecs.amazonaws.com",
    "ecs.application-autoscaling.amazonaws.com",
    "elasticache.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "rds.amazonaws.com",
]
# AWS managed policies a stack may attach to its roles (the GPU instances' ECS agent and SSM).
MANAGED_POLICIES = [
    "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
]


def name_prefix(stack: str) -> str:
    return f"{PROJECT}-{stack}"


def boundary_arn(account: str, stack: str) -> str:
    """The permissions boundary every role of `stack` carries (infra reads the same name)."""
    return f"arn:aws:iam::{account}:policy/{name_prefix(stack)}-boundary"


def secrets_alias(stack: str) -> str:
    """The KMS alias (without `alias/`) of the stack's Pulumi secrets provider."""
    return f"{name_prefix(stack)}-pulumi-secrets"


def ecr_repositories(stack: str) -> list[str]:
    """The stack's image repository: the CPU image and the `-gpu` tags of the GPU image share it."""
    return [name_prefix(stack)]


def trusted_subjects(kind: str, environment: str) -> list[str]:
    """The GitHub token subjects (after `repo:<owner>/<name>:`) a stack's `deploy` or `preview` role
    trusts: deploys only from jobs in the stack's GitHub environment; previews from this
    repository's pull requests (GitHub gives forks' pull_request runs no token) and from runs a
    maintainer starts in the `preview` environment after reading a fork's change."""
    if kind == "deploy":
        return [f"environment:{environment}"]
    if kind == "preview":
        return ["pull_request", "environment:preview"]
    raise ValueError(f"no GitHub role of kind {kind!r}")


def github_trust(provider_arn: str, repository: str, subjects: list[str]) -> dict[str, Any]:
    """Trust GitHub's tokens for `repository` whose `sub` is exactly one of `subjects`
    (`environment:production`: only jobs in that GitHub environment; `pull_request`: pull
    requests of this repository; GitHub issues no token to a fork's pull_request run)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_ISSUER}:aud": GITHUB_AUDIENCE,
                        f"{GITHUB_ISSUER}:sub": [f"repo:{repository}:{s}" for s in subjects],
                    },
                },
            }
        ],
    }


def state_keys(stack: str) -> dict[str, str]:
    """The DIY backend's objects for one stack (pulumi/pulumi pkg/backend/diy: stacks, history,
    backups and journal are under `<project>/<stack>`; locks under the fully qualified
    `organization/<project>/<stack>`)."""
    return {
        "checkpoint": f".pulumi/stacks/{PROJECT}/{stack}.json*",
        "history": f".pulumi/history/{PROJECT}/{stack}/*",
        "backups": f".pulumi/backups/{PROJECT}/{stack}/*",
        "journal": f".pulumi/journal/{PROJECT}/{stack}/*",
        "locks": f".pulumi/locks/organization/{PROJECT}/{stack}/*",
        "meta": ".pulumi/meta.yaml",
    }


def _state_statements(stack: str, state_arn: str, key_arn: str, write: bool) -> list[dict[str, Any]]:
    keys = state_keys(stack)
    lock = f"{state_arn}/{keys['locks']}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "StateRead",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [f"{state_arn}/{key}" for key in keys.values()],
        },
        {
            # Both take the stack's lock (`pulumi preview` too); nothing else of the state for preview.
            "Sid": "StateLock",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": lock,
        },
        {
            # Unconditional: S3 answers a probe for a missing key (Pulumi looks for `.json`,
            # `.json.gz`, `.json.zst`) with 404 only to a caller that may list the bucket, and a
            # HEAD carries no `s3:prefix` to condition on. Listing shows key names, not contents.
            "Sid": "StateList",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": state_arn,
        },
        {
            # Stack secrets are encrypted with the KMS secrets provider: a preview decrypts the
            # stack's data key to diff secret inputs; only a deploy writes new ciphertext.
            "Sid": "StateSecrets",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"] if write else "kms:Decrypt",
            "Resource": key_arn,
        },
    ]
    if write:
        statements.insert(
            1,
            {
                "Sid": "StateWrite",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"{state_arn}/{keys[k]}" for k in ("checkpoint", "history", "backups", "journal")],
            },
        )
    return statements


def deploy_policy(
    stack: str,
    account: str,
    region: str,
    state_arn: str,
    secrets_key_arn: str,
    *,
    hosted_zone: tuple[str, list[str]] | None = None,
    pull_from: str | None = None,
) -> dict[str, Any]:
    """What `pulumi up` and `pulumi destroy` of one stack need, and nothing of another stack.

    `hosted_zone`: the operator's Route 53 zone id and the record names the stack may change in
    it. `pull_from`: the stack whose tested image this one promotes (read-only)."""
    prefix = name_prefix(stack)
    arn = f"{region}:{account}"
    boundary = boundary_arn(account, stack)
    tagged = [f"{service}:*" for service in TAGGED_SERVICES]
    statements: list[dict[str, Any]] = [
        *_read_statements(stack, region),
        {
            # Creates that carry the stack tag (only creates: a request tag on any other call
            # grants nothing here).
            "Sid": "CreateTagged",
            "Effect": "Allow",
            "Action": [f"{service}:Create*" for service in TAGGED_SERVICES] + OTHER_CREATES,
            "Resource": "*",
            "Condition": {"StringEquals": {f"aws:RequestTag/{STACK_TAG}": stack}},
        },
        {
            "Sid": "ChangeTagged",
            "Effect": "Allow",
            "Action": tagged,
            "Resource": "*",
            "Condition": {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}},
        },
        *(
            {
                # Tags set during a create (`<service>:CreateAction` names it); EC2's CreateTags is
                # a Create* of CreateTagged, fenced by DenyClaimingUntagged.
                "Sid": sid,
                "Effect": "Allow",
                "Action": action,
                "Resource": "*",
                "Condition": {
                    "StringEquals": {f"aws:RequestTag/{STACK_TAG}": stack},
                    "Null": {f"{service}:CreateAction": "false"},
                },
            }
            for sid, service, action in (
                ("TagOnCreateElb", "elasticloadbalancing", "elasticloadbalancing:AddTags"),
                ("TagOnCreateEcs", "ecs", "ecs:TagResource"),
            )
        ),
        # Names: AWS authorizes these calls against a name, not (or not only) a tag.
        {
            "Sid": "StackBuckets",
            "Effect": "Allow",
            "Action": [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:PutBucket*",
                "s3:DeleteBucketPolicy",
                "s3:PutEncryptionConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:PutAccelerateConfiguration",
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
                "s3:ListBucket",
                "s3:ListBucketVersions",
            ],
            "Resource": [f"arn:aws:s3:::{prefix}-*", f"arn:aws:s3:::{prefix}-*/*"],
        },
        {
            # An alias is checked against the alias name (no tags) and against its key (tagged).
            "Sid": "StackAliases",
            "Effect": "Allow",
            "Action": ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
            "Resource": [f"arn:aws:kms:{arn}:alias/{prefix}-*", f"arn:aws:kms:{arn}:key/*"],
            "Condition": {"StringEqualsIfExists": {f"aws:ResourceTag/{STACK_TAG}": stack}},
        },
        {
            # WAF checks an association against the load balancer's ARN, with no tag condition
            # available, so by name: the stack's ALB is `<prefix>-alb` (infra/loadbalancer.py); the
            # web ACL side is also tag-scoped by ChangeTagged.
            "Sid": "WebAclOnLoadBalancers",
            "Effect": "Allow",
            "Action": ["wafv2:AssociateWebACL", "wafv2:DisassociateWebACL"],
            "Resource": [
                f"arn:aws:elasticloadbalancing:{arn}:loadbalancer/app/{prefix}-*",
                f"arn:aws:wafv2:{arn}:regional/webacl/{prefix}-*/*",
            ],
        },
        {
            # Calls AWS authorizes against no resource at all.
            "Sid": "Unscoped",
            "Effect": "Allow",
            "Action": [
                "ecs:DeregisterTaskDefinition",
                "sns:SetSubscriptionAttributes",
                "sns:Unsubscribe",
                "elasticloadbalancing:SetWebAcl",
                "cloudfront:CreateOriginAccessControl",
                "cloudfront:DeleteOriginAccessControl",
                "cloudfront:UpdateOriginAccessControl",
            ],
            "Resource": "*",
        },
        # Roles: only with this stack's boundary, which can be neither removed nor swapped.
        {
            "Sid": "RolesWithBoundary",
            "Effect": "Allow",
            "Action": [
                "iam:CreateRole",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:PutRolePermissionsBoundary",
            ],
            "Resource": f"arn:aws:iam::{account}:role/*",
            "Condition": {"StringEquals": {"iam:PermissionsBoundary": boundary}},
        },
        {
            # Managed policies: only the AWS ones the GPU instances need (the boundary caps them).
            "Sid": "AttachKnownPolicies",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            "Resource": f"arn:aws:iam::{account}:role/*",
            "Condition": {
                "StringEquals": {"iam:PermissionsBoundary": boundary},
                "ArnEquals": {"iam:PolicyARN": MANAGED_POLICIES},
            },
        },
        {
            "Sid": "TaggedRoles",
            "Effect": "Allow",
            "Action": [
                "iam:DeleteRole",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:CreateInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:TagInstanceProfile",
                "iam:UntagInstanceProfile",
            ],
            "Resource": [f"arn:aws:iam::{account}:role/*", f"arn:aws:iam::{account}:instance-profile/*"],
            "Condition": {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}},
        },
        {
            "Sid": "CreateTaggedInstanceProfile",
            "Effect": "Allow",
            "Action": ["iam:CreateInstanceProfile", "iam:TagInstanceProfile"],
            "Resource": f"arn:aws:iam::{account}:instance-profile/*",
            "Condition": {"StringEquals": {f"aws:RequestTag/{STACK_TAG}": stack}},
        },
        {
            "Sid": "PassStackRoles",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": f"arn:aws:iam::{account}:role/*",
            "Condition": {
                "StringEquals": {
                    "iam:PassedToService": ["ecs-tasks.amazonaws.com", "ec2.amazonaws.com"],
                    f"aws:ResourceTag/{STACK_TAG}": stack,
                }
            },
        },
        {
            "Sid": "ServiceLinkedRoles",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": f"arn:aws:iam::{account}:role/aws-service-role/*",
            "Condition": {"StringEquals": {"iam:AWSServiceName": SERVICE_LINKED}},
        },
        *_state_statements(stack, state_arn, secrets_key_arn, write=True),
        # Guards: explicit denies win over every allow above.
        {
            "Sid": "DenyOtherStackTag",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringNotEquals": {f"aws:RequestTag/{STACK_TAG}": stack},
                "Null": {f"aws:RequestTag/{STACK_TAG}": "false"},
            },
        },
        {
            # `ec2:CreateTags` matches `ec2:Create*`: outside a create it may only re-tag the
            # stack's own resources, or adopt a security group (AWS creates a VPC's default one
            # untagged; the stack adopts it), so no other untagged resource can be claimed.
            "Sid": "DenyClaimingUntagged",
            "Effect": "Deny",
            "Action": ["ec2:CreateTags", "autoscaling:CreateOrUpdateTags"],
            "NotResource": f"arn:aws:ec2:{arn}:security-group/*",
            "Condition": {"Null": {"ec2:CreateAction": "true", f"aws:ResourceTag/{STACK_TAG}": "true"}},
        },
        {
            "Sid": "DenyRemovingStackTag",
            "Effect": "Deny",
            "Action": _UNTAG,
            "Resource": "*",
            "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": [STACK_TAG]}},
        },
        {
            "Sid": "DenyBoundaryChanges",
            "Effect": "Deny",
            "Action": [
                "iam:DeleteRolePermissionsBoundary",
                "iam:CreatePolicy",
                "iam:CreatePolicyVersion",
                "iam:DeletePolicy",
                "iam:DeletePolicyVersion",
                "iam:SetDefaultPolicyVersion",
            ],
            "Resource": "*",
        },
        {
            # Whatever the call, a resource of another stack is out of reach (its tag says so).
            "Sid": "DenyOtherStackResources",
            "Effect": "Deny",
            "Action": "*",
            **(
                {"NotResource": f"arn:aws:ecr:{arn}:repository/{name_prefix(pull_from)}"}
                if pull_from
                else {"Resource": "*"}
            ),
            "Condition": {
                "StringNotEquals": {f"aws:ResourceTag/{STACK_TAG}": stack},
                "Null": {f"aws:ResourceTag/{STACK_TAG}": "false"},
            },
        },
        {
            "Sid": "DenyBootstrapRoles",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": [
                f"arn:aws:iam::{account}:role/{PROJECT}-*-deploy",
                f"arn:aws:iam::{account}:role/{PROJECT}-*-preview",
                f"arn:aws:iam::{account}:oidc-provider/*",
            ],
        },
    ]
    if hosted_zone:
        zone_id, names = hosted_zone
        statements.append(
            {
                # Records in the operator's zone, by name: the zone itself carries no stack tag.
                "Sid": "StackRecords",
                "Effect": "Allow",
                "Action": "route53:ChangeResourceRecordSets",
                "Resource": f"arn:aws:route53:::hostedzone/{zone_id}",
                "Condition": {
                    "ForAllValues:StringLike": {
                        "route53:ChangeResourceRecordSetsNormalizedRecordNames": sorted(
                            {
                                n
                                for name in names
                                for n in (name.lower().rstrip("."), f"*.{name.lower().rstrip('.')}")
                            }
                        )
                    }
                },
            }
        )
    if pull_from:
        statements.append(
            {
                # The image the other stack tested is promoted, never rebuilt: read it, never write.
                "Sid": "PullTestedImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                "Resource": f"arn:aws:ecr:{arn}:repository/{name_prefix(pull_from)}",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def preview_policy(stack: str, region: str, state_arn: str, secrets_key_arn: str) -> dict[str, Any]:
    """What `pulumi preview` of one stack needs: read configuration (refresh), its state, the
    lock, and decrypt the stack's secrets data key. No secret values or data objects."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_read_statements(stack, region),
            *_state_statements(stack, state_arn, secrets_key_arn, write=False),
            {
                # Reads that return a secret or personal data although named Describe/List/Get.
                "Sid": "DenySecretReads",
                "Effect": "Deny",
                "Action": PREVIEW_NEVER,
                # Except the state (its own keys only, above) and AWS's public parameters.
                "NotResource": [f"{state_arn}/*", f"arn:aws:ssm:{region}:*:parameter/aws/service/*"],
            },
        ],
    }


def permissions_boundary(stack: str, account: str, region: str) -> dict[str, Any]:
    """The most any role of `stack` may ever do: run its containers and GPU instances against
    the stack's own bucket, parameters, logs and images. No IAM, no other stack."""
    prefix = name_prefix(stack)
    arn = f"{region}:{account}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StackData",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{prefix}-*", f"arn:aws:s3:::{prefix}-*/*"],
            },
            {
                "Sid": "StackSecrets",
                "Effect": "Allow",
                "Action": ["ssm:GetParameters", "ssm:GetParameter"],
                "Resource": f"arn:aws:ssm:{arn}:parameter/{PROJECT}/{stack}/*",
            },
            {
                "Sid": "DecryptThroughSsm",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": f"arn:aws:kms:{arn}:key/*",
                "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"}},
            },
            {
                "Sid": "StackImages",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                "Resource": f"arn:aws:ecr:{arn}:repository/{prefix}*",
            },
            {
                "Sid": "StackLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": f"arn:aws:logs:{arn}:log-group:/ecs/{prefix}/*",
            },
            {
                "Sid": "StackAgents",
                "Effect": "Allow",
                "Action": [
                    "ecr:GetAuthorizationToken",
                    "cloudwatch:PutMetricData",
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                    "ecs:DiscoverPollEndpoint",
                    "ecs:Poll",
                    "ecs:StartTelemetrySession",
                    "ecs:RegisterContainerInstance",
                    "ecs:DeregisterContainerInstance",
                    "ecs:SubmitContainerStateChange",
                    "ecs:SubmitTaskStateChange",
                    "ecs:SubmitAttachmentStateChanges",
                    "ecs:UpdateContainerInstancesState",
                    "ec2:DescribeTags",
                    "ssm:UpdateInstanceInformation",
                    "ssm:ListInstanceAssociations",
                    "ssm:UpdateInstanceAssociationStatus",
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                    "ec2messages:AcknowledgeMessage",
                    "ec2messages:GetMessages",
                    "ec2messages:SendReply",
                ],
                "Resource": "*",
            },
        ],
    }
