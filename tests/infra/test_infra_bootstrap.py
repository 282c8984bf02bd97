"""The one-time bootstrap project (infra/bootstrap), run under mocks: the GitHub OIDC
provider, deploy roles that only their stack's GitHub environment can assume and that reach
only their stack, and the state bucket and secrets key the stacks expect."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import resource_types as T
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
    return next(r for r in of_type(rec, T.IAM_ROLE) if r["inputs"]["name"] == name)


def _policy(rec: Record, name: str) -> list[dict[str, Any]]:
    found = next(p for p in of_type(rec, T.IAM_ROLE_POLICY) if p["name"] == name)
    return list(json.loads(found["inputs"]["policy"])["Statement"])


def test_github_oidc_and_who_may_assume_each_role(bootstrap: Record) -> None:
    provider = one(bootstrap, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")["inputs"]
    assert provider["url"] == "https://token.actions.githubusercontent.com"
    assert provider["clientIdLists"] == ["sts.amazonaws.com"]
    for stack, environment in (("dev", "dev"), ("prod", "production")):
        trust = json.loads(_role(bootstrap, f"prethrift-{stack}-deploy")["inputs"]["assumeRolePolicy"])
        condition = trust["Statement"][0]["Condition"]
        # Exact subjects (StringEquals, no wildcard): only jobs in that GitHub environment
        # (prod: behind its required reviewers).
        assert set(condition) == {"StringEquals"}
        assert condition["StringEquals"] == {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": [f"repo:{REPOSITORY}:environment:{environment}"],
        }
        preview = json.loads(_role(bootstrap, f"prethrift-{stack}-preview")["inputs"]["assumeRolePolicy"])
        # This repository's pull requests (GitHub issues forks' pull_request runs no token) and
        # runs a maintainer starts in the `preview` environment; no branch, no other repository.
        assert preview["Statement"][0]["Condition"]["StringEquals"][
            "token.actions.githubusercontent.com:sub"
        ] == [
            f"repo:{REPOSITORY}:pull_request",
            f"repo:{REPOSITORY}:environment:preview",
        ]
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
            if st["Effect"] != "Allow" or st["Resource"] != "*" or "Condition" in st:
                continue
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            # Unconditional grants on "*" are reads, or calls AWS scopes by no resource at all.
            writes = [a for a in actions if not a.split(":")[1].startswith(("Describe", "List", "Get"))]
            assert st["Sid"] in ("ReadConfiguration", "RegistryLogin", "Unscoped"), st
            assert st["Sid"] == "Unscoped" or not writes, st
        text = json.dumps(
            [st for st in statements if st["Sid"] not in ("PullTestedImage", "DenyOtherStackResources")]
        )
        assert f"prethrift-{other}" not in text and f"/prethrift/{other}/" not in text
        assert f".pulumi/locks/organization/prethrift/{stack}/*" in text
        assert f"stacks/prethrift/{stack}.json" in text
    prod_pull = next(st for st in _policy(bootstrap, "deploy-prod-policy") if st["Sid"] == "PullTestedImage")
    assert prod_pull["Resource"].endswith(":repository/prethrift-dev")
    assert all(a.startswith(("ecr:BatchGet", "ecr:GetDownload", "ecr:BatchCheck")) for a in prod_pull["Action"])


def test_ecr_repositories_per_stack(bootstrap: Record) -> None:
    repos = {r["inputs"]["name"]: r["inputs"] for r in of_type(bootstrap, T.ECR_REPOSITORY)}
    # The GPU image is a `-gpu` tag in the stack's repository (infra/registry.py): one each.
    assert set(repos) == {"prethrift-dev", "prethrift-prod"}
    for name, repo in repos.items():
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["imageTagMutability"] == "IMMUTABLE"
        assert repo["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
        assert repo["tags"]["stack"] == name.removeprefix("prethrift-")
    lifecycles = {p["inputs"]["repository"]: p for p in of_type(bootstrap, T.ECR_LIFECYCLE_POLICY)}
    assert set(lifecycles) == set(repos)
    rules = json.loads(lifecycles["prethrift-prod"]["inputs"]["policy"])["rules"]
    assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]
    urls = bootstrap["outputs"]["ecr_repository_urls"]
    assert urls == {n: f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{n}" for n in repos}


def test_state_bucket_and_secrets_keys(bootstrap: Record) -> None:
    keys = of_type(bootstrap, T.KMS_KEY)
    assert len(keys) == 2 and all(k["inputs"]["enableKeyRotation"] is True for k in keys)
    # One key per stack: a stack file's encrypted data key is public, a shared key would let
    # either stack's roles decrypt the other's secrets. The key carries no `stack` tag, so the
    # deploy role's tag grants cannot schedule its deletion or rewrite its policy.
    assert all("stack" not in k["inputs"]["tags"] for k in keys)
    assert {a["inputs"]["name"] for a in of_type(bootstrap, T.KMS_ALIAS)} == {
        "alias/prethrift-dev-pulumi-secrets",
        "alias/prethrift-prod-pulumi-secrets",
    }
    assert bootstrap["outputs"]["secrets_providers"] == {
        "dev": "awskms://alias/prethrift-dev-pulumi-secrets",
        "prod": "awskms://alias/prethrift-prod-pulumi-secrets",
    }
    versioning = one(bootstrap, T.S3_BUCKET_VERSIONING)["inputs"]
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
