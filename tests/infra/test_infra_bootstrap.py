"""The one-time bootstrap project (infra/bootstrap), run under mocks: the GitHub OIDC
provider, deploy roles that only their stack's GitHub environment can assume and that reach
only their stack, and the state bucket and secrets key the stacks expect."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.mocks import record
from infra.policy.offline import evaluate
from tests.infra.conftest import Record, of_type, one

REPOSITORY = "acme/prethrift"


@pytest.fixture(name="bootstrap", scope="module")
def _bootstrap() -> Record:
    return record(
        "bootstrap", overrides={"prethrift-bootstrap:githubRepository": REPOSITORY}, program="infra/bootstrap"
    )


def _role(rec: Record, name: str) -> dict[str, Any]:
    return next(r for r in of_type(rec, "aws:iam/role:Role") if r["inputs"]["name"] == name)


def _policy(rec: Record, name: str) -> list[dict[str, Any]]:
    found = next(p for p in of_type(rec, "aws:iam/rolePolicy:RolePolicy") if p["name"] == name)
    return list(json.loads(found["inputs"]["policy"])["Statement"])


def test_github_oidc_and_who_may_assume_each_role(bootstrap: Record) -> None:
    provider = one(bootstrap, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")["inputs"]
    assert provider["url"] == "https://token.actions.githubusercontent.com"
    assert provider["clientIdLists"] == ["sts.amazonaws.com"]
    for stack, environment in (("dev", "dev"), ("prod", "production")):
        trust = json.loads(_role(bootstrap, f"prethrift-{stack}-deploy")["inputs"]["assumeRolePolicy"])
        condition = trust["Statement"][0]["Condition"]
        assert condition["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        # Only jobs in that GitHub environment (prod: behind its required reviewers).
        assert condition["StringLike"]["token.actions.githubusercontent.com:sub"] == [
            f"repo:{REPOSITORY}:environment:{environment}"
        ]
        preview = json.loads(_role(bootstrap, f"prethrift-{stack}-preview")["inputs"]["assumeRolePolicy"])
        assert "environment" not in json.dumps(preview)
    outputs = bootstrap["outputs"]["github_variables"]
    assert set(outputs) == {
        "AWS_DEV_DEPLOY_ROLE_ARN",
        "AWS_PROD_DEPLOY_ROLE_ARN",
        "AWS_DEV_PREVIEW_ROLE_ARN",
        "AWS_PROD_PREVIEW_ROLE_ARN",
        "PULUMI_BACKEND_URL",
    }
    assert outputs["PULUMI_BACKEND_URL"].startswith("s3://prethrift-pulumi-state-")


def test_deploy_roles_reach_only_their_stack(bootstrap: Record) -> None:
    for stack, other in (("dev", "prod"), ("prod", "dev")):
        statements = _policy(bootstrap, f"deploy-{stack}-policy")
        for st in statements:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            writes = [a for a in actions if not a.split(":")[1].startswith(("Describe", "List", "Get"))]
            if st["Resource"] == "*" and writes:
                # Any write on "*" is limited to resources tagged with this stack.
                tag = st["Condition"]["StringEquals"]
                assert tag.get("aws:RequestTag/stack") == stack or tag.get("aws:ResourceTag/stack") == stack, st
        text = json.dumps([st for st in statements if st["Sid"] != "PullTestedImage"])
        assert f"prethrift-{other}" not in text and f"/prethrift/{other}/" not in text
        assert f"stacks/prethrift/{stack}.json" in text
    prod_pull = next(st for st in _policy(bootstrap, "deploy-prod-policy") if st["Sid"] == "PullTestedImage")
    assert prod_pull["Resource"].endswith(":repository/prethrift-dev")
    assert all(a.startswith(("ecr:BatchGet", "ecr:GetDownload", "ecr:Describe")) for a in prod_pull["Action"])


def test_state_bucket_and_secrets_key(bootstrap: Record) -> None:
    assert one(bootstrap, "aws:kms/key:Key")["inputs"]["enableKeyRotation"] is True
    assert one(bootstrap, "aws:kms/alias:Alias")["inputs"]["name"] == "alias/prethrift-pulumi-secrets"
    versioning = one(bootstrap, "aws:s3/bucketVersioning:BucketVersioning")["inputs"]
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    # The same FSBP rules as the stacks' buckets: nothing mandatory is violated.
    assert not [v for v in evaluate(bootstrap) if v.level == "mandatory"]


def test_bootstrap_refuses_the_example_repository() -> None:
    with pytest.raises(RuntimeError, match="githubRepository"):
        record(
            "bootstrap",
            overrides={"prethrift-bootstrap:githubRepository": "your-org/prethrift"},
            program="infra/bootstrap",
        )
