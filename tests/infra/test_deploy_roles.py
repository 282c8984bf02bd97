"""The bootstrap's deploy and preview roles against the calls the stack program makes.

Every AWS resource the stack program declares (dev, prod, prod with the GPU worker, dev by
digest) is turned into the IAM actions of its create, read, update and delete (tests/infra/
aws_calls.py, from AWS's Service Authorization Reference via policy_sentry), with the ARN and
condition keys AWS would see, and the roles' policies as the bootstrap writes them are evaluated
on those calls (tests/infra/iam_eval.py)."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from policy_sentry.querying.actions import get_action_data

from infra.bootstrap.policies import boundary_arn, name_prefix
from infra.mocks import ACCOUNT_ID, record
from tests.infra.aws_calls import REGION, Call, Stack, action_exists, actions_for, stack_calls
from tests.infra.conftest import Record
from tests.infra.iam_eval import Request, evaluate

with warnings.catch_warnings():
    # parliament reads its config.yaml at import without closing the file.
    warnings.simplefilter("ignore", ResourceWarning)
    import parliament

Policy = dict[str, Any]


@pytest.fixture(name="bootstrap", scope="module")
def _bootstrap() -> Record:
    return record(
        "bootstrap",
        overrides={"prethrift-bootstrap:githubRepository": "acme/prethrift"},
        program="infra/bootstrap",
    )


def _resource(rec: Record, name: str) -> dict[str, Any]:
    return next(r for r in rec["resources"] if r["name"] == name)


def _policy(rec: Record, name: str) -> Policy:
    found: Policy = json.loads(_resource(rec, name)["inputs"]["policy"])
    return found


def _arns(boot: Record, stack: str) -> tuple[str, str]:
    state = _resource(boot, "pulumi-state")["state"]["arn"]
    key = _resource(boot, f"pulumi-secrets-{stack}")["state"]["arn"]
    return str(state), str(key)


def _calls(boot: Record, rec: Record) -> list[Call]:
    return stack_calls(rec, *_arns(boot, rec["stack"]))


def _denied(policy: Policy, calls: Iterable[Call]) -> list[str]:
    return sorted(
        {
            f"{c.action} on {c.arn} ({c.phase} of {c.resource})"
            for c in calls
            if evaluate([policy], Request(c.action, c.arn, c.context)).decision != "allow"
        }
    )


def _is_write(action: str) -> bool:
    service, name = action.split(":")
    return any(
        e["access_level"] != "Read" and e["access_level"] != "List"
        for e in get_action_data(service, name)[service]
    )


@pytest.mark.parametrize("key", ["dev", "prod", "gpu", "digest"])
def test_deploy_role_allows_first_deploy_update_and_destroy(
    bootstrap: Record, records: dict[str, Record], key: str
) -> None:
    rec = records[key]
    calls = _calls(bootstrap, rec)
    # Every AWS resource of the program is accounted for, in every phase it has.
    declared = {r["type"] for r in rec["resources"] if r["custom"] and r["type"].startswith("aws:")}
    assert declared == {c.resource.split(" ")[0] for c in calls if c.resource.startswith("aws:")}
    assert {c.phase for c in calls} == {"create", "read", "update", "delete"}
    assert not _denied(_policy(bootstrap, f"deploy-{rec['stack']}-policy"), calls)


def test_every_declared_type_maps_to_actions_of_the_reference(records: dict[str, Record]) -> None:
    types = {r["type"] for rec in records.values() for r in rec["resources"] if r["custom"]}
    for typ in sorted(types):
        phases = actions_for(typ)
        unknown = [a for actions in phases.values() for a in actions if not action_exists(a)]
        assert not unknown, f"{typ}: {unknown} are not IAM actions"
    # A type the table does not know is derived by the API's naming convention (WAF, CloudFront).
    assert actions_for("aws:wafv2/webAcl:WebAcl")["create"] == ["wafv2:CreateWebACL"]
    assert actions_for("aws:wafv2/webAcl:WebAcl")["delete"] == ["wafv2:DeleteWebACL"]
    assert actions_for("aws:cloudfront/originAccessControl:OriginAccessControl")["create"] == [
        "cloudfront:CreateOriginAccessControl"
    ]


def _with_edge(rec: Record) -> Record:
    """`rec` with the WAF and CloudFront resources another change adds (no table entries)."""
    rec = copy.deepcopy(rec)
    prefix = name_prefix(rec["stack"])
    lb = next(r for r in rec["resources"] if r["type"] == "aws:lb/loadBalancer:LoadBalancer")

    def add(typ: str, logical: str, inputs: dict[str, Any]) -> None:
        rec["resources"].append({"type": typ, "name": logical, "custom": True, "inputs": inputs, "state": {}})

    add("aws:wafv2/webAcl:WebAcl", "edge-waf", {"name": f"{prefix}-edge", "scope": "REGIONAL"})
    association = {"webAclArn": "edge-waf-id", "resourceArn": f"{lb['name']}-id"}
    add("aws:wafv2/webAclAssociation:WebAclAssociation", "edge-waf-alb", association)
    add("aws:cloudfront/originAccessControl:OriginAccessControl", "edge-oac", {"name": f"{prefix}-images"})
    add("aws:cloudfront/distribution:Distribution", "edge-cdn", {})
    return rec


def test_edge_resources_another_change_adds_are_derived_and_granted(
    bootstrap: Record, records: dict[str, Record]
) -> None:
    """WAF and CloudFront resources are checked like the rest, without a table entry of their own."""
    calls = _calls(bootstrap, _with_edge(records["dev"]))
    edge = {c.action for c in calls if c.resource.startswith(("aws:wafv2", "aws:cloudfront"))}
    assert edge >= {"wafv2:CreateWebACL", "wafv2:AssociateWebACL", "cloudfront:CreateDistribution"}
    assert not _denied(_policy(bootstrap, "deploy-dev-policy"), calls)


def test_every_grant_of_the_deploy_role_is_needed(bootstrap: Record, records: dict[str, Record]) -> None:
    """No statement is dead weight: removing any one denies a call of the deploy, except the
    two whose callers are outside the stack program."""
    policy = _policy(bootstrap, "deploy-prod-policy")
    calls = _calls(bootstrap, _with_edge(records["gpu"]))
    outside = {
        "ListStackBuckets": "a preview's refresh of a bucket",
        "PullTestedImage": "the workflow's promotion",
    }
    unneeded = []
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or statement["Sid"] in outside:
            continue
        without = {**policy, "Statement": [s for s in policy["Statement"] if s is not statement]}
        if not _denied(without, calls):
            unneeded.append(statement["Sid"])
    assert unneeded == []


@pytest.mark.parametrize(
    ("sid", "action"),
    [
        ("StackBuckets", "s3:PutBucketPolicy"),
        (
            "StateLock",
            "s3:PutObject on arn:aws:s3:::prethrift-pulumi-state-123456789012/.pulumi/locks/organization/",
        ),
        ("RolesWithBoundary", "iam:CreateRole"),
        ("AttachKnownPolicies", "iam:AttachRolePolicy"),
        ("ServiceLinkedRoles", "iam:CreateServiceLinkedRole"),
        ("StackAliases", "kms:CreateAlias"),
        ("TagOnCreateEcs", "ecs:TagResource"),
        ("StackRecords", "route53:ChangeResourceRecordSets"),
        ("PullTestedImage", None),
    ],
)
def test_removing_a_grant_names_the_denied_call(
    bootstrap: Record, records: dict[str, Record], sid: str, action: str | None
) -> None:
    policy = _policy(bootstrap, "deploy-prod-policy")
    assert any(s["Sid"] == sid for s in policy["Statement"])
    crippled = copy.deepcopy(policy)
    crippled["Statement"] = [s for s in crippled["Statement"] if s["Sid"] != sid]
    denied = _denied(crippled, _calls(bootstrap, records["gpu"]))
    if action is None:
        # Promotion reads dev's image outside the stack program (the deploy workflow copies it).
        assert not denied
        return
    assert denied and any(d.startswith(action) for d in denied), denied


def test_dev_role_cannot_change_anything_of_prod(bootstrap: Record, records: dict[str, Record]) -> None:
    dev = _policy(bootstrap, "deploy-dev-policy")
    prod_calls = [c for c in _calls(bootstrap, records["gpu"]) if _is_write(c.action)]
    allowed = {
        (c.action, c.arn)
        for c in prod_calls
        if evaluate([dev], Request(c.action, c.arn, c.context)).decision == "allow"
    }
    # Only what AWS authorizes against no resource at all (no ARN, no tag to scope it by), the
    # account-wide service-linked roles, which either stack may create first, and CloudFront's
    # origin access controls, which take no tags and have generated ids (nothing to fence by).
    unfenceable = {"iam:CreateServiceLinkedRole", "cloudfront:UpdateOriginAccessControl"}
    unfenceable |= {"cloudfront:DeleteOriginAccessControl"}
    assert {a for a, arn in allowed if arn != "*" and a not in unfenceable} == set()
    assert {a for a, arn in allowed if arn == "*"} == {
        "cloudfront:CreateOriginAccessControl",
        "elasticloadbalancing:SetWebAcl",
        "ecs:DeregisterTaskDefinition",
        "sns:SetSubscriptionAttributes",
        "sns:Unsubscribe",
    }


def _request(action: str, arn: str, **context: str | tuple[str, ...]) -> Request:
    return Request(action, arn, {k: (v,) if isinstance(v, str) else v for k, v in context.items()})


def test_dev_role_cannot_retag_or_escape_its_boundary(bootstrap: Record) -> None:
    dev = _policy(bootstrap, "deploy-dev-policy")
    subnet = f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:subnet/subnet-0prod"
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/services-api-task-role-a1b2c3d"
    attempts = {
        # Re-tag a prod resource as dev, then control it.
        "retag prod as dev": _request(
            "ec2:CreateTags",
            subnet,
            **{"aws:ResourceTag/stack": "prod", "aws:RequestTag/stack": "dev", "aws:TagKeys": "stack"},
        ),
        "change a prod resource": _request(
            "ec2:ModifySubnetAttribute", subnet, **{"aws:ResourceTag/stack": "prod"}
        ),
        "create a resource tagged prod": _request(
            "ec2:CreateVpc",
            f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:vpc/vpc-0new",
            **{"aws:RequestTag/stack": "prod", "aws:TagKeys": "stack"},
        ),
        "claim an untagged resource (the default VPC) as dev": _request(
            "ec2:CreateTags",
            f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:vpc/vpc-0default",
            **{"aws:RequestTag/stack": "dev", "aws:TagKeys": "stack"},
        ),
        "run any instance that carries the dev tag": _request(
            "ec2:RunInstances",
            f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/*",
            **{"aws:RequestTag/stack": "dev", "aws:TagKeys": "stack"},
        ),
        "remove the stack tag from its own resource": _request(
            "ec2:DeleteTags", subnet, **{"aws:ResourceTag/stack": "dev", "aws:TagKeys": "stack"}
        ),
        "create a role without a boundary": _request(
            "iam:CreateRole", role, **{"aws:RequestTag/stack": "dev", "aws:TagKeys": "stack"}
        ),
        "create a role with prod's boundary": _request(
            "iam:CreateRole",
            role,
            **{
                "aws:RequestTag/stack": "dev",
                "aws:TagKeys": "stack",
                "iam:PermissionsBoundary": boundary_arn(ACCOUNT_ID, "prod"),
            },
        ),
        "remove its roles' boundary": _request(
            "iam:DeleteRolePermissionsBoundary", role, **{"aws:ResourceTag/stack": "dev"}
        ),
        "rewrite its boundary": _request(
            "iam:CreatePolicyVersion", boundary_arn(ACCOUNT_ID, "dev"), **{"aws:ResourceTag/stack": "dev"}
        ),
        "widen its own deploy role": _request(
            "iam:PutRolePolicy",
            f"arn:aws:iam::{ACCOUNT_ID}:role/prethrift-dev-deploy",
            **{"aws:ResourceTag/stack": "dev"},
        ),
        "attach admin to a stack role": _request(
            "iam:AttachRolePolicy",
            role,
            **{
                "aws:ResourceTag/stack": "dev",
                "iam:PermissionsBoundary": boundary_arn(ACCOUNT_ID, "dev"),
                "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess",
            },
        ),
        "write prod's bucket": _request(
            "s3:PutBucketPolicy", "arn:aws:s3:::prethrift-prod-storage-images-a1b2c3"
        ),
        "take prod's lock": _request(
            "s3:PutObject",
            "arn:aws:s3:::prethrift-pulumi-state-123456789012/.pulumi/locks/organization/prethrift/prod/x.json",
        ),
        "decrypt prod's stack secrets": _request(
            "kms:Decrypt", str(_resource(bootstrap, "pulumi-secrets-prod")["state"]["arn"])
        ),
        "service-linked role of an unlisted service": _request(
            "iam:CreateServiceLinkedRole",
            f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/x",
            **{"iam:AWSServiceName": "redshift.amazonaws.com"},
        ),
        "change another stack's DNS name": _request(
            "route53:ChangeResourceRecordSets",
            "arn:aws:route53:::hostedzone/Z04857412PRETHRIFT0PROD",
            **{"route53:ChangeResourceRecordSetsNormalizedRecordNames": "search.prethrift.com"},
        ),
    }
    allowed = [name for name, req in attempts.items() if evaluate([dev], req).decision == "allow"]
    assert allowed == []
    # And the same with its own stack's boundary is what the deploy does.
    own = _request(
        "iam:CreateRole",
        role,
        **{
            "aws:RequestTag/stack": "dev",
            "aws:TagKeys": "stack",
            "iam:PermissionsBoundary": boundary_arn(ACCOUNT_ID, "dev"),
        },
    )
    assert evaluate([dev], own).decision == "allow"


def test_roles_the_stack_creates_carry_its_boundary(records: dict[str, Record]) -> None:
    for rec in records.values():
        roles = [r for r in rec["resources"] if r["type"] == "aws:iam/role:Role"]
        assert roles
        assert {r["inputs"].get("permissionsBoundary") for r in roles} == {
            boundary_arn(ACCOUNT_ID, rec["stack"])
        }


def test_boundary_allows_what_the_stack_grants_its_roles(bootstrap: Record, records: dict[str, Record]) -> None:
    """A grant the boundary does not cover would fail at run time, not at deploy time."""
    for rec in records.values():
        boundary = _policy(bootstrap, f"boundary-{rec['stack']}")
        st = Stack(rec)
        # The mocks name buckets without the stack files' autonaming pattern; AWS will not.
        renames = {
            str(r["state"]["bucket"]): st.physical_name(r)
            for r in rec["resources"]
            if r["type"] == "aws:s3/bucket:Bucket"
        }
        granted = 0
        for res in rec["resources"]:
            if res["type"] != "aws:iam/rolePolicy:RolePolicy":
                continue
            text = res["inputs"]["policy"]
            for mock, real in renames.items():
                text = text.replace(mock, real)
            for statement in json.loads(text)["Statement"]:
                for action in (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                ):
                    for arn in (
                        statement["Resource"]
                        if isinstance(statement["Resource"], list)
                        else [statement["Resource"]]
                    ):
                        granted += 1
                        assert (
                            evaluate([boundary], Request(action, arn.replace(":*", ":x"))).decision == "allow"
                        ), f"{res['name']}: {action} on {arn} is outside the boundary"
        assert granted > 20


def test_boundary_reaches_only_its_stack(bootstrap: Record) -> None:
    boundary = _policy(bootstrap, "boundary-dev")
    within = _request("s3:GetObject", "arn:aws:s3:::prethrift-dev-storage-images-a1b2c3/items/1.jpg")
    assert evaluate([boundary], within).decision == "allow"
    for req in (
        _request("s3:GetObject", "arn:aws:s3:::prethrift-prod-storage-images-a1b2c3/items/1.jpg"),
        _request(
            "ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/prethrift/prod/DATABASE_URL"
        ),
        _request("iam:CreateRole", f"arn:aws:iam::{ACCOUNT_ID}:role/x"),
        _request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT_ID}:role/prethrift-prod-deploy"),
    ):
        assert evaluate([boundary], req).decision != "allow", req


def test_preview_role_reads_configuration_not_secrets_or_data(
    bootstrap: Record, records: dict[str, Record]
) -> None:
    for stack in ("dev", "prod"):
        preview = _policy(bootstrap, f"preview-{stack}-policy")
        state, key = _arns(bootstrap, stack)
        prefix = name_prefix(stack)
        pool = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT_ID}:userpool/{REGION}_0a1b2c3"
        # What `pulumi preview` does: state, its lock, the stack's data key, the program's lookups.
        needed = [
            _request("s3:GetObject", f"{state}/.pulumi/stacks/prethrift/{stack}.json"),
            _request("s3:GetObject", f"{state}/.pulumi/meta.yaml"),
            _request("s3:PutObject", f"{state}/.pulumi/locks/organization/prethrift/{stack}/1.json"),
            _request("s3:DeleteObject", f"{state}/.pulumi/locks/organization/prethrift/{stack}/1.json"),
            _request("kms:Decrypt", key),
            _request("ec2:DescribeAvailabilityZones", "*"),
            _request(
                "ssm:GetParameter",
                f"arn:aws:ssm:{REGION}::parameter/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended",
            ),
            _request("ecr:GetAuthorizationToken", "*"),
        ]
        assert [r for r in needed if evaluate([preview], r).decision != "allow"] == []
        forbidden = [
            _request(
                "ssm:GetParameter",
                f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/prethrift/{stack}/DATABASE_URL",
            ),
            _request(
                "ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/prethrift/{stack}/REDIS_URL"
            ),
            _request(
                "ssm:GetParametersByPath", f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/prethrift/{stack}"
            ),
            _request("s3:GetObject", f"arn:aws:s3:::{prefix}-storage-images-a1b2c3/uploads/1.jpg"),
            _request(
                "s3:ListBucket",
                f"arn:aws:s3:::{name_prefix('prod' if stack == 'dev' else 'dev')}-storage-images-a",
            ),
            _request("logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/ecs/{prefix}/api"),
            _request("ecr:GetDownloadUrlForLayer", f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{prefix}"),
            _request("secretsmanager:GetSecretValue", "*"),
            # Describe/List calls that return a secret or personal data.
            _request("cognito-idp:DescribeUserPoolClient", pool),
            _request("cognito-idp:ListUsers", pool),
            _request("kms:Decrypt", _arns(bootstrap, "prod" if stack == "dev" else "dev")[1]),
            _request("s3:PutObject", f"{state}/.pulumi/stacks/prethrift/{stack}.json"),
        ]
        assert [r for r in forbidden if evaluate([preview], r).decision == "allow"] == []
        # No write of the stack's own resources either.
        writes = [
            c
            for c in _calls(bootstrap, records[stack])
            if c.resource.startswith("aws:") and _is_write(c.action)
        ]
        assert writes and not [
            c for c in writes if evaluate([preview], Request(c.action, c.arn, c.context)).decision == "allow"
        ]


# Parliament reads every document as an identity policy: a trust policy has no Resource by
# design, and it knows only SAML and four fixed web-identity issuers, not an OIDC provider ARN.
TRUST_POLICY_FALSE_POSITIVES = {"MALFORMED", "UNKNOWN_FEDERATION_SOURCE"}


def _findings(document: str, ignore: Iterable[str] = ()) -> list[str]:
    policy = parliament.analyze_policy_string(document)
    return [
        f"{f.issue}: {f.detail}"
        for f in policy.findings
        if parliament.config[f.issue]["severity"] not in ("LOW", "INFO") and f.issue not in ignore
    ]


def test_parliament_finds_nothing_above_low(bootstrap: Record) -> None:
    documents: Mapping[str, list[str]] = {
        r["name"]: [r["inputs"]["policy"]]
        for r in bootstrap["resources"]
        if r["type"] in ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
    }
    assert len(documents) == 6  # deploy, preview and boundary of dev and prod
    for name, (document,) in documents.items():
        assert _findings(document) == [], name
    trusts = [
        r["inputs"]["assumeRolePolicy"] for r in bootstrap["resources"] if r["type"] == "aws:iam/role:Role"
    ]
    assert len(trusts) == 4
    for document in trusts:
        assert _findings(document, TRUST_POLICY_FALSE_POSITIVES) == []
    # The check has teeth: a grant on a resource its actions do not take is reported.
    bad = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket"}],
        }
    )
    assert _findings(bad) and _findings(bad)[0].startswith("RESOURCE_MISMATCH")


def test_evaluator_follows_aws_condition_semantics() -> None:
    """The evaluator the checks above rely on, on the cases AWS documents."""

    def decide(statement: Policy, req: Request) -> str:
        return evaluate([{"Statement": [{"Sid": "S", **statement}]}], req).decision

    arn = "arn:aws:s3:::prethrift-dev-x"
    allow_tagged = {
        "Effect": "Allow",
        "Action": "S3:Put*",
        "Resource": "arn:aws:s3:::prethrift-dev-*",
        "Condition": {"StringEquals": {"aws:ResourceTag/stack": "dev"}},
    }
    assert (
        decide(allow_tagged, _request("s3:PutBucketPolicy", arn, **{"aws:resourcetag/stack": "dev"})) == "allow"
    )
    # A key absent from the request fails a positive operator...
    assert decide(allow_tagged, _request("s3:PutBucketPolicy", arn)) == "implicit-deny"
    # ...satisfies a negated one, and IfExists.
    negated = {**allow_tagged, "Condition": {"StringNotEquals": {"aws:ResourceTag/stack": "prod"}}}
    assert decide(negated, _request("s3:PutBucketPolicy", arn)) == "allow"
    if_exists = {**allow_tagged, "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/stack": "dev"}}}
    assert decide(if_exists, _request("s3:PutBucketPolicy", arn)) == "allow"
    assert decide(if_exists, _request("s3:PutBucketPolicy", arn, **{"aws:ResourceTag/stack": "x"})) != "allow"
    # ForAllValues holds on an absent key, ForAnyValue does not.
    all_of = {**allow_tagged, "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["stack"]}}}
    any_of = {**allow_tagged, "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["stack"]}}}
    assert decide(all_of, _request("s3:PutBucketPolicy", arn)) == "allow"
    assert decide(all_of, _request("s3:PutBucketPolicy", arn, **{"aws:TagKeys": ("stack", "x")})) != "allow"
    assert decide(any_of, _request("s3:PutBucketPolicy", arn)) != "allow"
    null = {**allow_tagged, "Condition": {"Null": {"aws:RequestTag/stack": "true"}}}
    assert decide(null, _request("s3:PutBucketPolicy", arn)) == "allow"
    assert decide(null, _request("s3:PutBucketPolicy", arn, **{"aws:RequestTag/stack": "dev"})) != "allow"
    # NotAction / NotResource, and an explicit deny over any allow.
    assert (
        decide({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, _request("iam:CreateRole", "*"))
        != "allow"
    )
    not_prod = {"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:s3:::prethrift-prod-*"}
    assert decide(not_prod, _request("s3:GetObject", "arn:aws:s3:::prethrift-prod-a/k")) != "allow"
    both = [
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
        {"Statement": [{"Sid": "No", "Effect": "Deny", "Action": "s3:*", "Resource": arn}]},
    ]
    assert evaluate(both, _request("s3:GetObject", arn)).decision == "explicit-deny"
