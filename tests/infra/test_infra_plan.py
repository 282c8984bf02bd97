"""The offline plan: every resource priced from the table in infra/pricing.py, totals by
stack, and the cost difference against another git revision."""

from __future__ import annotations

import ast
import copy
import datetime
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import infra.plan as plan_package
from infra import pricing
from infra import resource_types as T
from infra.plan import (
    StackPlan,
    compare_plans,
    format_diff,
    format_plan,
    main,
    plan_at_ref,
    plan_stack,
    price_resources,
)
from infra.plan.rules import PRICE_RULES
from tests.infra.conftest import Record, containers

REPO = Path(__file__).resolve().parents[2]
HOURS = pricing.HOURS_PER_MONTH


def _prices_the_plan_reads() -> dict[str, Any]:
    """Every `pricing.NAME` the plan's modules read, and the constants pricing's own functions
    read for them, with their values."""
    names: set[str] = set()
    for module in Path(plan_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names |= {node.attr} if node.value.id == "pricing" else set()
    for function in ast.walk(ast.parse(Path(pricing.__file__).read_text())):
        if isinstance(function, ast.FunctionDef) and function.name in names:
            names |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and n.id.isupper()}
    return {name: getattr(pricing, name) for name in sorted(names)}


def test_every_price_the_plan_reads_has_a_public_source_and_a_past_date() -> None:
    numbers = {
        name: value
        for name, value in _prices_the_plan_reads().items()
        if isinstance(value, int | float | dict) and name not in pricing.NOT_PRICES
    }
    assert {"FARGATE_VCPU_HOUR", "RDS_POSTGRES_HOUR", "NAT_HOUR", "CLOUDFRONT_GB"} <= set(numbers)
    this_month = datetime.date.today().strftime("%Y-%m")
    for name, value in numbers.items():
        for price in value.values() if isinstance(value, dict) else [value]:
            assert isinstance(price, pricing.Price), f"pricing.{name} has no stated source"
            assert price.source.startswith("https://aws.amazon.com/"), name
            assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", price.as_of) and price.as_of <= this_month, name


def test_every_row_the_plan_prints_comes_from_the_table(records: dict[str, Record]) -> None:
    for stack in ("dev", "prod", "gpu"):
        plan = price_resources("prod" if stack == "gpu" else stack, records[stack])
        for row in plan.rows:
            # A resource is priced by its rule or listed free; anything else would print a guess.
            assert row.is_usage or row.type in PRICE_RULES or row.type in pricing.FREE_TYPES, row.type
            assert row.monthly_usd == 0 or row.is_usage or row.type in PRICE_RULES, row.type
        printed = format_plan(plan).splitlines()
        table = printed[printed.index("") + 2 : len(printed) - 4]
        assert len(table) == len(plan.rows)
        for row in plan.rows:
            assert any(f" {row.name} " in line and f"{row.monthly_usd:,.2f}" in line for line in table), (
                row.name
            )


def test_every_resource_is_listed_and_the_big_ones_priced(records: dict[str, Record]) -> None:
    for stack in ("dev", "prod"):
        plan = price_resources(stack, records[stack])
        custom = [r for r in records[stack]["resources"] if r["custom"]]
        assert plan.resources == len(custom) == len([r for r in plan.rows if not r.is_usage])
        assert not [r for r in plan.rows if "no price rule" in r.note]
        priced = {r.type for r in plan.rows if r.monthly_usd > 0}
        assert {
            T.ECS_SERVICE,
            T.RDS_INSTANCE,
            T.ELASTICACHE_REPLICATION_GROUP,
            T.LB_LOAD_BALANCER,
            T.EC2_NAT_GATEWAY,
        } <= priced
        assert set(plan.by_service()) >= {"compute", "database", "cache", "network", "storage", "observability"}
        assert plan.total == pytest.approx(sum(plan.by_service().values()), abs=0.05)


def test_costs_follow_the_stack_sizing(records: dict[str, Record]) -> None:
    dev = {r.name: r for r in price_resources("dev", records["dev"]).rows}
    prod = {r.name: r for r in price_resources("prod", records["prod"]).rows}
    # prod RDS: db.t4g.medium Multi-AZ with 50 GB gp3 stored twice.
    assert prod["database-postgres"].monthly_usd == pytest.approx(2 * (HOURS * 0.065 + 50 * 0.115), abs=0.01)
    # dev API: one 1 vCPU / 3 GB task, all on Spot at the plan's 50%.
    assert dev["services-api"].monthly_usd == pytest.approx(HOURS * (0.04048 + 3 * 0.004445) * 0.5, abs=0.01)
    # prod API: two 2 vCPU / 4 GB tasks, both inside the on-demand base of 2.
    assert prod["services-api"].monthly_usd == pytest.approx(2 * HOURS * (2 * 0.04048 + 4 * 0.004445), abs=0.01)
    assert sum(1 for n in prod if n.startswith("network-nat-") and not n.endswith("eip")) == 3
    gpu = {r.name: r for r in price_resources("prod", records["gpu"]).rows}
    assert gpu["services-gpu-asg"].monthly_usd == pytest.approx(HOURS * 1.006, abs=0.01)
    assert price_resources("prod", records["prod"]).total > price_resources("dev", records["dev"]).total


def test_usage_lines_and_max_autoscale(records: dict[str, Record], stack_files: dict[str, Any]) -> None:
    plan = price_resources("prod", records["prod"])
    usage = stack_files["prod"]["prethrift:planUsage"]
    rows = {r.name: r for r in plan.rows}
    downloads_gb = usage["searchesPerMonth"] / 1000 * usage["downloadGbPer1000Searches"]
    # Through CloudFront, after the account's free terabyte and 10M requests that prod claims.
    views = usage["searchesPerMonth"] * usage["imagesPerSearch"]
    assert rows["image-downloads"].monthly_usd == pytest.approx(
        (downloads_gb - 1024) * 0.085 + max(0, views - 10_000_000) / 10_000 * 0.01, abs=0.01
    )
    assert "per 1,000 searches" in rows["image-downloads"].note
    assert rows["cross-az-traffic"].monthly_usd == pytest.approx(usage["crossAzGb"] * 2 * 0.01, abs=0.01)
    # Backups beyond the provisioned 50 GB are billed.
    assert rows["database-postgres-backups"].monthly_usd == pytest.approx(
        (usage["backupGb"] - 50) * 0.095, abs=0.01
    )
    # Logs: ingestion and the storage the retention keeps.
    logs = rows["logs-api"]
    ingest = usage["logsIngestGb"] / len([r for r in plan.rows if r.type.endswith("logGroup:LogGroup")])
    assert logs.monthly_usd == pytest.approx(ingest * 0.5 + ingest * 90 / 30 * 0.03, abs=0.01)
    # Max autoscale: prod API at 8 tasks = 2 on-demand base, then 1:2 on-demand:Spot.
    task_hour = 2 * 0.04048 + 4 * 0.004445
    assert rows["services-api"].max_monthly_usd == pytest.approx(HOURS * task_hour * (4 + 4 * 0.5), abs=0.02)
    assert rows["services-console"].max_monthly_usd is None  # does not scale
    assert plan.max_total > plan.total
    text = format_plan(plan)
    assert "MAX AUTOSCALE" in text and f"{plan.max_total:,.2f}" in text
    # The JSON the deploy records reads back to the same plan, without running Pulumi.
    again = StackPlan.from_dict(json.loads(json.dumps(plan.as_dict())))
    assert again.total == plan.total and again.max_total == plan.max_total and again.rows == plan.rows


def test_capacity_split_matches_ecs_semantics() -> None:
    strategy = [
        {"capacityProvider": "FARGATE", "base": 2, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 2},
    ]
    assert pricing.split_capacity(5, strategy) == {"FARGATE": 3.0, "FARGATE_SPOT": 2.0}
    assert pricing.split_capacity(1, strategy) == {"FARGATE": 1.0, "FARGATE_SPOT": 0.0}


def test_unknown_price_names_the_file_to_fix() -> None:
    with pytest.raises(KeyError, match="infra/pricing.py"):
        pricing.lookup(pricing.RDS_POSTGRES_HOUR, "db.x2g.16xlarge", "RDS class")


def test_main_prints_inventory_and_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL monthly (USD):" in out and "rds.Instance" in out and "database-postgres" in out
    assert "aws.amazon.com/pricing" in out and "MAX AUTOSCALE" in out
    assert main(["nope"]) == 2
    assert "Pulumi.nope.yaml" in capsys.readouterr().err


@pytest.fixture(name="git_repo")
def _git_repo(tmp_path: Path) -> Path:
    """A throwaway repository with this checkout's program and stack files committed."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "infra", repo / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "Dockerfile"):
        shutil.copy(REPO / name, repo / name)

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "base")
    return repo


def test_compare_against_a_git_revision(git_repo: Path) -> None:
    stack_file = git_repo / "Pulumi.dev.yaml"
    config = yaml.safe_load(stack_file.read_text())
    config["config"]["prethrift:database"].update(instanceClass="db.t4g.medium", multiAz=True)
    stack_file.write_text(yaml.safe_dump(config))

    head = plan_stack("dev", git_repo)
    base = plan_at_ref("dev", "HEAD", git_repo)
    assert base is not None
    diff = compare_plans(base, head, "HEAD")
    changed = {(name, before, after) for _, name, before, after in diff.changes}
    before_rds = HOURS * 0.0325 + 20 * 0.115
    after_rds = 2 * (HOURS * 0.065 + 20 * 0.115)
    assert [(n, pytest.approx(b, abs=0.01), pytest.approx(a, abs=0.01)) for n, b, a in changed] == [
        ("database-postgres", before_rds, after_rds)
    ]
    assert diff.delta == pytest.approx(after_rds - before_rds, abs=0.02)
    text = format_diff(diff)
    assert "against HEAD" in text and "database-postgres" in text and "+" in text
    # The worktree is cleaned up.
    listed = subprocess.run(
        ["git", "worktree", "list"], cwd=git_repo, capture_output=True, text=True, check=True
    ).stdout
    assert len(listed.strip().splitlines()) == 1


def test_compare_with_a_revision_that_had_no_stack(git_repo: Path) -> None:
    (git_repo / "Pulumi.dev.yaml").rename(git_repo / "Pulumi.qa.yaml")
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "rename"],
        cwd=git_repo,
        check=True,
    )
    head = plan_stack("qa", git_repo)
    assert plan_at_ref("qa", "HEAD~1", git_repo) is None
    diff = compare_plans(None, head, "HEAD~1")
    assert diff.base_total == 0 and diff.delta == head.total
    assert "TOTAL" in format_plan(head)


def _without(rec: Record, *types: str) -> Record:
    return {**rec, "resources": [r for r in rec["resources"] if r["type"] not in types]}


def test_plan_bills_what_aws_bills_and_the_cdn_halves_photo_downloads(
    records: dict[str, Record], stack_files: dict[str, Any]
) -> None:
    plan = price_resources("prod", records["prod"])
    rows = {r.name: r for r in plan.rows}
    usage = stack_files["prod"]["prethrift:planUsage"]
    # The lines the plan used to leave out.
    assert rows["collector-metrics"].monthly_usd == pytest.approx(2 * 0.30)
    assert rows["database-postgres-logs"].monthly_usd == pytest.approx(usage["rdsLogsGb"] * 0.50)
    puts, views = usage["uploadsPerMonth"], usage["searchesPerMonth"] * usage["imagesPerSearch"]
    gets = views * (1 - usage["cdnCacheHitRatio"]) + puts
    assert rows["images-requests"].monthly_usd == pytest.approx(
        puts / 1000 * 0.005 + gets / 1000 * 0.0004, abs=0.01
    )
    requests = usage["searchesPerMonth"] * usage["requestsPerSearch"]
    assert rows["waf-acl"].monthly_usd == pytest.approx(5 + 5 * 1 + requests / 1e6 * 0.60, abs=0.01)
    assert rows["services-cluster"].monthly_usd > 0 and "enhanced" in rows["services-cluster"].note
    assert not [r for r in plan.rows if "not modelled" in r.note and r.type != T.S3_BUCKET]

    # Without the distribution the same photos go out presigned from S3 at S3's internet rate:
    # the CDN line is at most half of that.
    direct = {
        r.name: r for r in price_resources("prod", _without(records["prod"], T.CLOUDFRONT_DISTRIBUTION)).rows
    }
    downloads_gb = usage["searchesPerMonth"] / 1000 * usage["downloadGbPer1000Searches"]
    assert direct["image-downloads"].monthly_usd == pytest.approx(downloads_gb * 0.09, abs=0.01)
    assert rows["image-downloads"].monthly_usd <= direct["image-downloads"].monthly_usd / 2
    # ... and every photo view is an S3 GET.
    assert direct["images-requests"].monthly_usd > rows["images-requests"].monthly_usd

    # A collector without an allow-list sends every Prometheus series: ~150 custom metrics.
    unfiltered = copy.deepcopy(records["prod"])
    for task in (r for r in unfiltered["resources"] if r["type"] == T.ECS_TASK_DEFINITION):
        defs = list(containers(task).values())
        collector = next(c for c in defs if c["name"] == "otel-collector")
        config = json.loads(collector["environment"][0]["value"])
        del config["exporters"]["awsemf"]["metric_declarations"]
        collector["environment"][0]["value"] = json.dumps(config)
        task["inputs"]["containerDefinitions"] = json.dumps(defs)
    before = price_resources("prod", unfiltered)
    before_rows = {r.name: r for r in before.rows}
    assert before_rows["collector-metrics"].monthly_usd == pytest.approx(usage["collectorSeries"] * 0.30)
    diff = compare_plans(before, plan, "unfiltered")
    text = format_diff(diff)
    assert "changed  usage:cloudwatch/customMetrics collector-metrics: 45.00 -> 0.60" in text


def test_a_diff_names_what_was_added(records: dict[str, Record]) -> None:
    without_waf = price_resources(
        "prod", _without(records["prod"], T.WAFV2_WEB_ACL, T.WAFV2_WEB_ACL_ASSOCIATION)
    )
    text = format_diff(compare_plans(without_waf, price_resources("prod", records["prod"]), "base"))
    assert "added    aws:wafv2/webAcl:WebAcl waf-acl" in text
    assert f"added    {T.WAFV2_WEB_ACL_ASSOCIATION} waf-alb: 0.00 -> 0.00" in text
