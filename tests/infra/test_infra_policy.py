"""The policy pack, run offline on the mock-recorded stacks exactly as the engine calls it,
and every row of the FSBP table in infra/README.md checked both ways."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra import resource_types as T
from infra.mocks import record
from infra.policy.offline import evaluate, load_config
from infra.policy.rules import RULES, STACK_RULES, policies
from tests.infra.conftest import Record

README = Path(__file__).resolve().parents[2] / "infra" / "README.md"
ROW = re.compile(
    r"^\| (?P<control>[\w./]+) \| (?P<rule>[a-z0-9-]+) \| (?P<type>[\w:/]+) \| "
    r"(?P<property>[^|]+) \| (?P<dev>pass|advisory) \| (?P<prod>pass|advisory) \|$"
)


def fsbp_table() -> list[dict[str, str]]:
    rows = [m.groupdict() for line in README.read_text().splitlines() if (m := ROW.match(line))]
    assert rows, "infra/README.md lost its FSBP table"
    return rows


def _containers(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(inputs: dict[str, Any]) -> None:
        defs = json.loads(inputs["containerDefinitions"])
        edit(defs[0])
        inputs["containerDefinitions"] = json.dumps(defs)

    return mutate


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda inputs: inputs.update(values)


# How to break each property: a mutation of one resource's inputs, or (stack rules) the
# companion resource type to delete.
BREAK: dict[str, Callable[[dict[str, Any]], None] | str] = {
    "rds-not-public": _set(publiclyAccessible=True),
    "rds-encrypted": _set(storageEncrypted=False),
    "rds-multi-az": _set(multiAz=False),
    "rds-deletion-protection": _set(deletionProtection=False),
    "rds-backups": _set(backupRetentionPeriod=1),
    "rds-minor-upgrades": _set(autoMinorVersionUpgrade=False),
    "s3-public-access-block": _set(blockPublicPolicy=False),
    "s3-tls-only": _set(policy=json.dumps({"Version": "2012-10-17", "Statement": []})),
    "s3-no-acls": _set(rule={"objectOwnership": "ObjectWriter"}),
    "s3-bucket-no-acl": _set(acl="public-read"),
    "ecs-no-public-ip": _set(networkConfiguration={"assignPublicIp": True, "subnets": []}),
    "ecs-read-only-root": _containers(lambda c: c.update(readonlyRootFilesystem=False)),
    "ecs-no-secrets-in-env": _containers(
        lambda c: c["environment"].append({"name": "DATABASE_URL", "value": "postgresql://x"})
    ),
    "ecs-logging": _containers(lambda c: c.pop("logConfiguration")),
    "ecs-container-insights": _set(settings=[]),
    "elasticache-backups": _set(snapshotRetentionLimit=0),
    "elasticache-failover": _set(automaticFailoverEnabled=False),
    "elasticache-at-rest": _set(atRestEncryptionEnabled=False),
    "elasticache-in-transit": _set(transitEncryptionEnabled=False),
    "elb-https-redirect": _set(
        protocol="HTTP", port=80, defaultActions=[{"type": "forward", "targetGroupArn": "arn"}]
    ),
    "elb-drop-invalid-headers": _set(dropInvalidHeaderFields=False),
    "elb-access-logs": _set(accessLogs={"enabled": False}),
    "elb-deletion-protection": _set(enableDeletionProtection=False),
    "ecr-scan-on-push": _set(imageScanningConfiguration={"scanOnPush": False}),
    "ecr-immutable-tags": _set(imageTagMutability="MUTABLE"),
    "s3-every-bucket-blocks-public-access": T.S3_BUCKET_PUBLIC_ACCESS_BLOCK,
    "s3-every-bucket-tls-only": T.S3_BUCKET_POLICY,
    "s3-every-bucket-no-acls": T.S3_BUCKET_OWNERSHIP_CONTROLS,
    "ecr-lifecycle": T.ECR_LIFECYCLE_POLICY,
    "elb-waf-association": T.WAFV2_WEB_ACL_ASSOCIATION,
    "sns-alarm-topic-cmk": _set(kmsMasterKeyId="alias/aws/sns"),
}


def _share_task_role(rec: Record) -> None:
    tasks = [r for r in rec["resources"] if r["type"] == T.ECS_TASK_DEFINITION]
    for task in tasks[1:]:
        task["state"]["taskRoleArn"] = tasks[0]["state"]["taskRoleArn"]


def _task_role_reads_ssm(rec: Record) -> None:
    policy = next(r for r in rec["resources"] if r["name"] == "services-api-task-policy")
    document = json.loads(policy["state"]["policy"])
    document["Statement"].append(
        {"Effect": "Allow", "Action": ["ssm:GetParametersByPath"], "Resource": "arn:aws:ssm:*:*:parameter/*"}
    )
    policy["state"]["policy"] = json.dumps(document)


def _console_without_auth(rec: Record) -> None:
    rule = next(r for r in rec["resources"] if r["name"] == "edge-console-host")
    rule["state"]["actions"] = [a for a in rule["state"]["actions"] if a["type"] == "forward"]


# Stack rules over several resources: how to break each in the prod record (on `state`, which
# is what the engine hands stack validations).
STACK_BREAK: dict[str, Callable[[Record], None]] = {
    "ecs-task-role-per-service": _share_task_role,
    "iam-task-roles-no-ssm": _task_role_reads_ssm,
    "console-behind-auth": _console_without_auth,
}


def test_table_lists_every_rule_once() -> None:
    table = [row["rule"] for row in fsbp_table()]
    assert sorted(table) == sorted([r.id for r in RULES] + [r.id for r in STACK_RULES])
    assert set(BREAK) | set(STACK_BREAK) == set(table)


def _owner(records: dict[str, Record], row: dict[str, str], request: pytest.FixtureRequest) -> Record:
    """The record that declares the row's resources: the stacks, or for the ECR repositories
    (which the deploy's build job pushes to before a stack exists) the account bootstrap."""
    if any(r["type"] == row["type"] for r in records["prod"]["resources"]):
        return records["prod"]
    bootstrap: Record = request.getfixturevalue("bootstrap_record")
    if not any(r["type"] == row["type"] for r in bootstrap["resources"]):
        pytest.skip(f"neither the stacks nor infra/bootstrap declare {row['type']} yet")
    return bootstrap


@pytest.fixture(name="bootstrap_record", scope="module")
def _bootstrap_record() -> Record:
    overrides = {"prethrift-bootstrap:githubRepository": "acme/prethrift"}
    return record("bootstrap", overrides=overrides, program="infra/bootstrap")


@pytest.mark.parametrize("row", fsbp_table(), ids=lambda row: f"{row['control']}-{row['rule']}")
def test_fsbp_row(records: dict[str, Record], row: dict[str, str], request: pytest.FixtureRequest) -> None:
    rules = {r.id: r for r in RULES}
    stack_rules = {r.id: r for r in STACK_RULES}
    rule = rules.get(row["rule"]) or stack_rules[row["rule"]]
    assert rule.control == row["control"]
    if row["rule"] in rules:
        assert rules[row["rule"]].resource_type == row["type"]

    # The stacks have the outcome the table states.
    for stack in ("dev", "prod"):
        found = [v for v in evaluate(records[stack], load_config(stack)) if v.policy == rule.id]
        if row[stack] == "pass":
            assert not found, found
        else:
            assert found and {v.level for v in found} == {"advisory"}

    # Breaking the property in prod is reported, and blocks the deployment.
    broken = copy.deepcopy(_owner(records, row, request))
    how = BREAK.get(rule.id) or STACK_BREAK[rule.id]
    if rule.id in STACK_BREAK:
        STACK_BREAK[rule.id](broken)
    elif isinstance(how, str):
        broken["resources"] = [r for r in broken["resources"] if r["type"] != how]
    else:
        target = next(r for r in broken["resources"] if r["type"] == row["type"])
        how(target["inputs"])  # type: ignore[operator]
    found = [v for v in evaluate(broken, load_config("prod")) if v.policy == rule.id]
    assert found and found[0].level == "mandatory" and f"[{rule.control}]" in found[0].message
    assert found[0].urn


def test_stacks_meet_their_policy_config(records: dict[str, Record]) -> None:
    assert not evaluate(records["prod"], load_config("prod"))
    dev = evaluate(records["dev"], load_config("dev"))
    assert dev and all(v.level == "advisory" for v in dev)
    assert {v.policy for v in dev} == {
        "rds-multi-az",
        "rds-deletion-protection",
        "elasticache-failover",
        "elb-https-redirect",
        "elb-deletion-protection",
    }


def test_deliberately_bad_resource_is_reported(records: dict[str, Record]) -> None:
    bad = copy.deepcopy(records["dev"])
    urn = "urn:pulumi:dev::prethrift::prethrift:infra:Database$aws:rds/instance:Instance::rogue"
    bad["resources"].append(
        {
            "urn": urn,
            "type": T.RDS_INSTANCE,
            "name": "rogue",
            "custom": True,
            "parent": None,
            "dependencies": [],
            "secret_inputs": [],
            "state": {"arn": "arn:rogue"},
            "inputs": {
                "engine": "postgres",
                "instanceClass": "db.t4g.micro",
                "publiclyAccessible": True,
                "storageEncrypted": False,
                "backupRetentionPeriod": 0,
            },
        }
    )
    bad["resources"].append(
        {
            "urn": urn + "-task",
            "type": T.ECS_TASK_DEFINITION,
            "name": "rogue-task",
            "custom": True,
            "parent": None,
            "dependencies": [],
            "secret_inputs": [],
            "state": {"arn": "arn:rogue-task"},
            "inputs": {
                "family": "rogue",
                "containerDefinitions": json.dumps(
                    [
                        {
                            "name": "app",
                            "image": "x",
                            "environment": [
                                {"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"},
                                {"name": "STRIPE_API_TOKEN", "value": "abc"},
                            ],
                        }
                    ]
                ),
            },
        }
    )
    mandatory = {(v.policy, v.urn) for v in evaluate(bad) if v.level == "mandatory"}
    assert {("rds-not-public", urn), ("rds-encrypted", urn), ("rds-backups", urn)} <= mandatory
    assert {
        ("ecs-no-secrets-in-env", urn + "-task"),
        ("ecs-read-only-root", urn + "-task"),
        ("ecs-logging", urn + "-task"),
    } <= mandatory
    messages = [v.message for v in evaluate(bad) if v.policy == "ecs-no-secrets-in-env"]
    assert any("STRIPE_API_TOKEN" in m for m in messages)


def test_pack_config_names_real_policies() -> None:
    names = [p.name for p in policies()]
    assert len(names) == len(set(names))
    prod = load_config("prod")
    assert set(prod) <= set(names)
    advisory = {r.id for r in RULES if r.level.value == "advisory"}
    assert set(prod) == advisory and set(prod.values()) == {"mandatory"}
    main = (README.parent / "policy" / "__main__.py").read_text()
    assert "PolicyPack(" in main
    assert "PolicyPack(" not in (README.parent / "policy" / "rules.py").read_text().replace("`PolicyPack`", "")


def test_dev_console_port_open_to_the_internet_is_reported(records: dict[str, Record]) -> None:
    assert not [v for v in evaluate(records["dev"]) if v.policy == "console-behind-auth"]
    broken = copy.deepcopy(records["dev"])
    sg = next(r for r in broken["resources"] if r["name"] == "network-alb-sg")
    for rule in sg["state"]["ingress"]:
        if rule["fromPort"] == 8080:
            rule["cidrBlocks"] = ["0.0.0.0/0"]
    found = [v for v in evaluate(broken) if v.policy == "console-behind-auth"]
    assert found and "open to the internet" in found[0].message and found[0].level == "mandatory"


def test_only_public_albs_need_a_web_acl(records: dict[str, Record]) -> None:
    broken = copy.deepcopy(records["prod"])
    broken["resources"] = [r for r in broken["resources"] if r["type"] != T.WAFV2_WEB_ACL_ASSOCIATION]
    assert [v.policy for v in evaluate(broken) if v.policy == "elb-waf-association"] == ["elb-waf-association"]
    alb = next(r for r in broken["resources"] if r["type"] == T.LB_LOAD_BALANCER)
    alb["state"]["internal"] = True
    assert not [v for v in evaluate(broken) if v.policy == "elb-waf-association"]
