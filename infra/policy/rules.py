"""Prethrift's policy rules: AWS Foundational Security Best Practices (FSBP) controls that
apply to this stack, as pulumi_policy validations.

Each rule is a pure check over a resource's properties (tested offline on the resources the
mocks record) wrapped in a `ResourceValidationPolicy` or `StackValidationPolicy`. This module
never creates the `PolicyPack`: that starts a server and never returns (see __main__.py).

Rules with a `PT.n` control are this project's own (least privilege and the closed edge);
the rest are FSBP controls.

Rules that only production must meet (Multi-AZ, deletion protection, failover, HTTPS) are
advisory by default; `infra/policy/prod.json` makes them mandatory for the prod stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.ports import CONSOLE_PORT

Props = Mapping[str, Any]

RDS = "aws:rds/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
CLUSTER = "aws:ecs/cluster:Cluster"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE_POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
TOPIC = "aws:sns/topic:Topic"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"

# FSBP ECS.8 looks for these names; the rest are the app's secrets (they go in `secrets`).
SECRET_ENV_NAMES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "ECS_ENGINE_AUTH_DATA",
        "DATABASE_URL",
        "REDIS_URL",
        "PRETHRIFT_ADMIN_TOKEN",
        "SENTRY_DSN",
        "PRETHRIFT_CONSOLE_PASSWORD",
        "PRETHRIFT_SHOPIFY_WEBHOOK_SECRET",
    }
)
SECRET_ENV_PATTERN = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """One FSBP control on one resource type: `check(props)` returns what is wrong."""

    id: str
    control: str
    description: str
    resource_type: str
    check: Callable[[Props], list[str]]
    level: EnforcementLevel = EnforcementLevel.MANDATORY


@dataclass(frozen=True)
class StackRule:
    """A control that needs a second resource, e.g. a bucket and its public access block."""

    id: str
    control: str
    description: str
    check: Callable[[list[PolicyResource]], list[tuple[str, str]]]
    """Returns (urn, message) pairs."""
    level: EnforcementLevel = EnforcementLevel.MANDATORY


def _require(condition: bool, message: str) -> list[str]:
    return [] if condition else [message]


def _containers(props: Props) -> list[dict[str, Any]]:
    raw = props.get("containerDefinitions")
    if isinstance(raw, str):
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, list) else []
    return list(raw) if isinstance(raw, list) else []


def _check_env(props: Props) -> list[str]:
    problems = []
    for container in _containers(props):
        for item in container.get("environment") or []:
            name = str(item.get("name", ""))
            if name in SECRET_ENV_NAMES or SECRET_ENV_PATTERN.search(name):
                problems.append(
                    f"container {container.get('name')!r} has {name} as a plain environment "
                    "variable; pass it in `secrets` from SSM Parameter Store instead"
                )
    return problems


def _check_read_only(props: Props) -> list[str]:
    return [
        f"container {c.get('name')!r} needs readonlyRootFilesystem: true (mount a volume on "
        "/tmp for scratch space)"
        for c in _containers(props)
        if c.get("readonlyRootFilesystem") is not True
    ]


def _check_logging(props: Props) -> list[str]:
    return [
        f"container {c.get('name')!r} has no logConfiguration; send its logs to CloudWatch"
        for c in _containers(props)
        if not (c.get("logConfiguration") or {}).get("logDriver")
    ]


def _check_public_access_block(props: Props) -> list[str]:
    missing = [
        k
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        if props.get(k) is not True
    ]
    return _require(not missing, f"public access block must set {', '.join(missing)} to true")


def _denies_insecure_transport(policy: Any) -> bool:
    document = json.loads(policy) if isinstance(policy, str) else policy
    if not isinstance(document, dict):
        return False
    statements = document.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        condition = (statement.get("Condition") or {}).get("Bool") or {}
        if statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false":
            return True
    return False


def _check_http_listener(props: Props) -> list[str]:
    if props.get("protocol") != "HTTP":
        return []
    actions = props.get("defaultActions") or []
    redirects = all(
        a.get("type") == "redirect" and (a.get("redirect") or {}).get("protocol") == "HTTPS" for a in actions
    )
    return _require(
        bool(actions) and redirects,
        f"HTTP listener on port {int(float(props.get('port') or 0))} must redirect to HTTPS",
    )


def _check_bucket_acl(props: Props) -> list[str]:
    return _require(
        not props.get("acl") and not props.get("grants"),
        "bucket must not use ACLs; use BucketOwnerEnforced ownership and policies",
    )


def _check_topic_key(props: Props) -> list[str]:
    key = str(props.get("kmsMasterKeyId") or "")
    return _require(
        bool(key) and not key.startswith("alias/aws/"),
        "alarm topic must be encrypted with a customer-managed KMS key whose policy lets "
        "cloudwatch.amazonaws.com use it (CloudWatch cannot publish to a topic under alias/aws/sns)",
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "rds-not-public",
        "RDS.2",
        "RDS instances are not publicly accessible",
        RDS,
        lambda p: _require(
            p.get("publiclyAccessible") is not True, "RDS instance must set publiclyAccessible: false"
        ),
    ),
    Rule(
        "rds-encrypted",
        "RDS.3",
        "RDS storage is encrypted at rest",
        RDS,
        lambda p: _require(p.get("storageEncrypted") is True, "RDS instance must set storageEncrypted: true"),
    ),
    Rule(
        "rds-multi-az",
        "RDS.5",
        "RDS instances span two AZs",
        RDS,
        lambda p: _require(p.get("multiAz") is True, "RDS instance should set multiAz: true"),
        EnforcementLevel.ADVISORY,
    ),
    Rule(
        "rds-deletion-protection",
        "RDS.8",
        "RDS instances have deletion protection",
        RDS,
        lambda p: _require(
            p.get("deletionProtection") is True, "RDS instance should set deletionProtection: true"
        ),
        EnforcementLevel.ADVISORY,
    ),
    Rule(
        "rds-backups",
        "RDS.11",
        "RDS automated backups kept at least 7 days",
        RDS,
        lambda p: _require(
            float(p.get("backupRetentionPeriod") or 0) >= 7,
            "RDS instance must keep automated backups for at least 7 days",
        ),
    ),
    Rule(
        "rds-minor-upgrades",
        "RDS.13",
        "RDS automatic minor version upgrades are on",
        RDS,
        lambda p: _require(
            p.get("autoMinorVersionUpgrade") is not False,
            "RDS instance must keep autoMinorVersionUpgrade: true",
        ),
    ),
    Rule(
        "s3-public-access-block",
        "S3.1/S3.8",
        "S3 public access is blocked",
        PUBLIC_ACCESS_BLOCK,
        _check_public_access_block,
    ),
    Rule(
        "s3-tls-only",
        "S3.5",
        "S3 bucket policies deny requests without TLS",
        BUCKET_POLICY,
        lambda p: _require(
            _denies_insecure_transport(p.get("policy")),
            "bucket policy must deny requests where aws:SecureTransport is false",
        ),
    ),
    Rule(
        "s3-no-acls",
        "S3.12",
        "S3 ACLs are disabled",
        OWNERSHIP,
        lambda p: _require(
            (p.get("rule") or {}).get("objectOwnership") == "BucketOwnerEnforced",
            "bucket ownership must be BucketOwnerEnforced (ACLs disabled)",
        ),
    ),
    Rule("s3-bucket-no-acl", "S3.12", "S3 buckets set no ACL or grants", BUCKET, _check_bucket_acl),
    Rule(
        "ecs-no-public-ip",
        "ECS.2",
        "ECS services do not assign public IPs",
        SERVICE,
        lambda p: _require(
            (p.get("networkConfiguration") or {}).get("assignPublicIp") is not True,
            "ECS service must set assignPublicIp: false",
        ),
    ),
    Rule(
        "ecs-read-only-root",
        "ECS.5",
        "ECS containers have read-only root filesystems",
        TASK_DEFINITION,
        _check_read_only,
    ),
    Rule(
        "ecs-no-secrets-in-env",
        "ECS.8",
        "secrets are not passed as environment variables",
        TASK_DEFINITION,
        _check_env,
    ),
    Rule("ecs-logging", "ECS.9", "ECS task definitions configure logging", TASK_DEFINITION, _check_logging),
    Rule(
        "ecs-container-insights",
        "ECS.12",
        "ECS clusters have Container Insights on",
        CLUSTER,
        lambda p: _require(
            any(
                s.get("name") == "containerInsights" and s.get("value") in ("enabled", "enhanced")
                for s in p.get("settings") or []
            ),
            "ECS cluster must turn containerInsights on",
        ),
    ),
    Rule(
        "elasticache-backups",
        "ElastiCache.1",
        "ElastiCache keeps automatic snapshots",
        REPLICATION_GROUP,
        lambda p: _require(
            float(p.get("snapshotRetentionLimit") or 0) >= 1,
            "replication group must set snapshotRetentionLimit >= 1",
        ),
    ),
    Rule(
        "elasticache-failover",
        "ElastiCache.3",
        "ElastiCache fails over automatically",
        REPLICATION_GROUP,
        lambda p: _require(
            p.get("automaticFailoverEnabled") is True,
            "replication group should enable automatic failover (two nodes)",
        ),
        EnforcementLevel.ADVISORY,
    ),
    Rule(
        "elasticache-at-rest",
        "ElastiCache.4",
        "ElastiCache is encrypted at rest",
        REPLICATION_GROUP,
        lambda p: _require(
            p.get("atRestEncryptionEnabled") is True, "replication group must set atRestEncryptionEnabled: true"
        ),
    ),
    Rule(
        "elasticache-in-transit",
        "ElastiCache.5",
        "ElastiCache is encrypted in transit",
        REPLICATION_GROUP,
        lambda p: _require(
            p.get("transitEncryptionEnabled") is True,
            "replication group must set transitEncryptionEnabled: true",
        ),
    ),
    Rule(
        "elb-https-redirect",
        "ELB.1",
        "HTTP listeners redirect to HTTPS",
        LISTENER,
        _check_http_listener,
        EnforcementLevel.ADVISORY,
    ),
    Rule(
        "elb-drop-invalid-headers",
        "ELB.4",
        "ALBs drop invalid HTTP headers",
        LOAD_BALANCER,
        lambda p: _require(
            p.get("dropInvalidHeaderFields") is True, "load balancer must set dropInvalidHeaderFields: true"
        ),
    ),
    Rule(
        "elb-access-logs",
        "ELB.5",
        "ALBs write access logs",
        LOAD_BALANCER,
        lambda p: _require(
            bool((p.get("accessLogs") or {}).get("enabled"))
            and bool((p.get("accessLogs") or {}).get("bucket")),
            "load balancer must enable access logs to an S3 bucket",
        ),
    ),
    Rule(
        "elb-deletion-protection",
        "ELB.6",
        "ALBs have deletion protection",
        LOAD_BALANCER,
        lambda p: _require(
            p.get("enableDeletionProtection") is True, "load balancer should set enableDeletionProtection: true"
        ),
        EnforcementLevel.ADVISORY,
    ),
    Rule(
        "ecr-scan-on-push",
        "ECR.1",
        "ECR scans images on push",
        REPOSITORY,
        lambda p: _require(
            (p.get("imageScanningConfiguration") or {}).get("scanOnPush") is True,
            "repository must set imageScanningConfiguration.scanOnPush: true",
        ),
    ),
    Rule(
        "ecr-immutable-tags",
        "ECR.2",
        "ECR tags are immutable",
        REPOSITORY,
        lambda p: _require(
            p.get("imageTagMutability") == "IMMUTABLE", "repository must set imageTagMutability: IMMUTABLE"
        ),
    ),
    Rule(
        "sns-alarm-topic-cmk",
        "SNS.1/PT.4",
        "the alarm topic uses a customer-managed KMS key CloudWatch can use",
        TOPIC,
        _check_topic_key,
    ),
)


def _linked(resource: PolicyResource, target: PolicyResource, key: str) -> bool:
    """Whether `resource` points at `target` (by dependency, or by name once known)."""
    if any(dep.urn == target.urn for dep in resource.dependencies or []):
        return True
    value = resource.props.get(key)
    return value is not None and value in (
        target.props.get("bucket"),
        target.props.get("name"),
        target.props.get("id"),
    )


def _task_definitions(resources: list[PolicyResource]) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type == TASK_DEFINITION]


def _role_per_service(resources: list[PolicyResource]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for task in _task_definitions(resources):
        role = task.props.get("taskRoleArn")
        family = task.props.get("family") or task.name
        if not role:
            problems.append((task.urn, f"{family}: task definition has no task role of its own"))
        elif role == task.props.get("executionRoleArn"):
            problems.append((task.urn, f"{family}: task role must not be the execution role"))
        elif role in seen:
            problems.append(
                (task.urn, f"{family}: shares its task role with {seen[role]}; give each service one")
            )
        else:
            seen[str(role)] = str(family)
    return problems


def _actions(document: Any) -> list[str]:
    parsed = json.loads(document) if isinstance(document, str) else document
    statements = (parsed or {}).get("Statement") or [] if isinstance(parsed, dict) else []
    found: list[str] = []
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        action = statement.get("Action") or []
        found += [action] if isinstance(action, str) else list(action)
    return found


def _task_roles_no_ssm(resources: list[PolicyResource]) -> list[tuple[str, str]]:
    task_role_arns = {t.props.get("taskRoleArn") for t in _task_definitions(resources)}
    task_roles = [r for r in resources if r.resource_type == ROLE and r.props.get("arn") in task_role_arns]
    problems: list[tuple[str, str]] = []
    for policy in (r for r in resources if r.resource_type == ROLE_POLICY):
        if not any(_linked(policy, role, "role") for role in task_roles):
            continue
        bad = [a for a in _actions(policy.props.get("policy")) if a.lower().startswith("ssm:") or a == "*"]
        if bad:
            problems.append(
                (
                    policy.urn,
                    f"{policy.name}: task role may not read SSM ({', '.join(bad)}); ECS injects secrets",
                )
            )
    return problems


def _forwards_to(actions: Any, arns: set[Any]) -> bool:
    return any(
        a.get("type") == "forward" and a.get("targetGroupArn") in arns
        for a in actions or []
        if isinstance(a, dict)
    )


def _console_behind_auth(resources: list[PolicyResource]) -> list[tuple[str, str]]:
    consoles = {
        r.props.get("arn")
        for r in resources
        if r.resource_type == TARGET_GROUP and int(float(r.props.get("port") or 0)) == CONSOLE_PORT
    }
    authenticated = ("authenticate-cognito", "authenticate-oidc")
    problems: list[tuple[str, str]] = []
    for rule in (r for r in resources if r.resource_type == LISTENER_RULE):
        actions = rule.props.get("actions") or []
        if not _forwards_to(actions, consoles):
            continue
        signed_in = any(a.get("type") in authenticated for a in actions)
        allow_listed = any(c.get("sourceIp") for c in rule.props.get("conditions") or [])
        if not (signed_in or allow_listed):
            problems.append(
                (rule.urn, f"{rule.name}: the console is routed without sign-in or a source-IP allow-list")
            )
    open_ports = {
        port
        for sg in resources
        if sg.resource_type == SECURITY_GROUP
        for rule in sg.props.get("ingress") or []
        if "0.0.0.0/0" in (rule.get("cidrBlocks") or []) or "::/0" in (rule.get("ipv6CidrBlocks") or [])
        for port in range(int(float(rule.get("fromPort") or 0)), int(float(rule.get("toPort") or 0)) + 1)
    }
    for listener in (r for r in resources if r.resource_type == LISTENER):
        actions = listener.props.get("defaultActions") or []
        if not _forwards_to(actions, consoles):
            continue
        port = int(float(listener.props.get("port") or 0))
        if port in open_ports and not any(a.get("type") in authenticated for a in actions):
            problems.append(
                (listener.urn, f"{listener.name}: the console listener on {port} is open to the internet")
            )
    return problems


def _every(
    kind: str, companion: str, key: str, message: str
) -> Callable[[list[PolicyResource]], list[tuple[str, str]]]:
    def check(resources: list[PolicyResource]) -> list[tuple[str, str]]:
        companions = [r for r in resources if r.resource_type == companion]
        return [
            (r.urn, f"{r.name}: {message}")
            for r in resources
            if r.resource_type == kind and not any(_linked(c, r, key) for c in companions)
        ]

    return check


def _public_albs_behind_waf(resources: list[PolicyResource]) -> list[tuple[str, str]]:
    associations = [r for r in resources if r.resource_type == WEB_ACL_ASSOCIATION]
    problems: list[tuple[str, str]] = []
    for alb in (r for r in resources if r.resource_type == LOAD_BALANCER):
        if alb.props.get("internal") or alb.props.get("loadBalancerType") not in (None, "application"):
            continue
        arn = alb.props.get("arn")
        linked = any(
            any(dep.urn == alb.urn for dep in a.dependencies or [])
            or (arn is not None and a.props.get("resourceArn") == arn)
            for a in associations
        )
        if not linked:
            problems.append((alb.urn, f"{alb.name}: the public ALB has no AWS WAF web ACL association"))
    return problems


STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "s3-every-bucket-blocks-public-access",
        "S3.8",
        "every bucket has a public access block",
        _every(BUCKET, PUBLIC_ACCESS_BLOCK, "bucket", "bucket has no public access block"),
    ),
    StackRule(
        "s3-every-bucket-tls-only",
        "S3.5",
        "every bucket has a TLS-only policy",
        _every(BUCKET, BUCKET_POLICY, "bucket", "bucket has no bucket policy"),
    ),
    StackRule(
        "s3-every-bucket-no-acls",
        "S3.12",
        "every bucket has ACLs disabled",
        _every(BUCKET, OWNERSHIP, "bucket", "bucket has no ownership controls"),
    ),
    StackRule(
        "ecr-lifecycle",
        "ECR.3",
        "every ECR repository has a lifecycle policy",
        _every(REPOSITORY, LIFECYCLE_POLICY, "repository", "repository has no lifecycle policy"),
    ),
    StackRule(
        "ecs-task-role-per-service",
        "PT.1",
        "each ECS service has a task role of its own",
        _role_per_service,
    ),
    StackRule(
        "iam-task-roles-no-ssm",
        "PT.2",
        "task roles cannot read SSM parameters (ECS injects secrets)",
        _task_roles_no_ssm,
    ),
    StackRule(
        "console-behind-auth",
        "PT.3",
        "the ops console is reached only through sign-in or a source allow-list",
        _console_behind_auth,
    ),
    StackRule(
        "elb-waf-association",
        "ELB.16",
        "every public application load balancer is associated with an AWS WAF web ACL",
        _public_albs_behind_waf,
    ),
)


def resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == rule.resource_type:
            for message in rule.check(args.props):
                report_violation(f"[{rule.control}] {message}", None)

    return ResourceValidationPolicy(
        name=rule.id,
        description=f"{rule.control}: {rule.description}",
        validate=validate,
        enforcement_level=rule.level,
    )


def stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for urn, message in rule.check(list(args.resources)):
            report_violation(f"[{rule.control}] {message}", urn)

    return StackValidationPolicy(
        name=rule.id,
        description=f"{rule.control}: {rule.description}",
        validate=validate,
        enforcement_level=rule.level,
    )


def policies() -> list[Policy]:
    """Every rule as a pulumi_policy policy, for the PolicyPack in __main__.py."""
    return [*map(resource_policy, RULES), *map(stack_policy, STACK_RULES)]


def all_rule_ids() -> Iterable[str]:
    return [r.id for r in RULES] + [r.id for r in STACK_RULES]
