"""The console's data functions against real PostgreSQL holding recorded metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from console import data
from console.config import ConsoleConfig, stack_of
from console.cost import PLAN_KEY, PlanCache, PlanMissing, actual_spend
from infra import pricing
from infra import resource_types as T
from infra.plan import PlanRow, StackPlan
from tests.console.conftest import record_searches
from webapp.config import Settings
from webapp.observability.metrics_store import MetricsRecorder, percentile, write_batch

NOW = datetime(2026, 6, 15, 12, 30, 20, tzinfo=UTC)
MINUTE = NOW.replace(second=0).timestamp()


@pytest.fixture(name="connection")
async def _connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def test_percentiles_merge_across_two_replicas(connection: asyncpg.Connection) -> None:
    # Replica a answers fast (1-100 ms), replica b slow (100-400 ms), the same number of requests.
    fast = np.linspace(1, 100, 2000)
    slow = np.linspace(100, 400, 2000)
    for replica, samples in (("a", fast), ("b", slow)):
        recorder = MetricsRecorder(clock=lambda: MINUTE + 5)
        for half in np.array_split(samples, 2):  # two flushes in one minute add up
            for ms in half:
                recorder.request("GET /api/search", 200, ms / 1000)
            await write_batch(connection, recorder.take(), replica)

    window = data.time_range("15m", NOW)
    [summary] = await data.route_summaries(connection, window)
    [point] = await data.latency_series(connection, window)
    truth = np.concatenate([fast, slow])
    assert summary.requests == point.requests == 4000
    for q, merged in ((0.50, summary.p50_ms), (0.95, summary.p95_ms), (0.99, summary.p99_ms)):
        exact = float(np.quantile(truth, q))
        assert merged is not None and abs(merged - exact) / exact < 0.03, (q, merged, exact)
    assert (point.p50_ms, point.p95_ms, point.p99_ms) == (summary.p50_ms, summary.p95_ms, summary.p99_ms)
    # What averaging the replicas' own medians would have said instead: 25% off.
    averaged = (np.quantile(fast, 0.5) + np.quantile(slow, 0.5)) / 2
    assert abs(averaged - np.quantile(truth, 0.5)) / np.quantile(truth, 0.5) > 0.2


def test_percentile_edges() -> None:
    empty = [0] * 46
    assert percentile(empty, 0.5) is None
    slow = [0] * 45 + [10]  # everything slower than the last bound: bounded by the slowest seen
    assert percentile(slow, 0.99, max_ms=90_000) == pytest.approx(89_700)
    with pytest.raises(ValueError, match="46 buckets"):
        percentile([1, 2], 0.5)


async def test_series_for_caches_ingest_and_searches(connection: asyncpg.Connection) -> None:
    recorder = MetricsRecorder(clock=lambda: MINUTE - 60)
    for hit in (True, True, True, False):
        recorder.cache_lookup("embedding", hit)
    recorder.cache_lookup("result", False)
    recorder.ingest(embedded=12, retried=1)
    recorder.queue_depth(30)
    for route in (
        "GET /api/search",
        "GET /api/search",
        "POST /api/search/image",
        "GET /api/items/<raw_id>/similar",
    ):
        recorder.request(route, 200, 0.02)
    recorder.request("POST /api/items", 202, 0.1)
    await write_batch(connection, recorder.take(), "a")
    other = MetricsRecorder(clock=lambda: MINUTE - 50)
    other.queue_depth(12)  # a second worker's reading in the same minute: the larger one counts
    other.ingest(embedded=4, failed=1)
    await write_batch(connection, other.take(), "b")

    window = data.time_range("15m", NOW)
    caches = {p.cache: p for p in await data.cache_series(connection, window)}
    assert caches["embedding"].hit_rate == 0.75 and caches["result"].hit_rate == 0.0
    [ingest] = await data.ingest_series(connection, window)
    assert (ingest.embedded, ingest.retried, ingest.failed, ingest.queue_depth) == (16, 1, 1, 30)
    assert ingest.embedded_per_minute == 16
    [volume] = await data.search_volume(connection, window)
    assert volume.searches == 4  # the upload is not a search
    assert await data.latency_series(connection, data.time_range("15m", NOW + timedelta(hours=1))) == []


def test_cost_per_thousand_and_scope() -> None:
    # 1 search/s for a month is 2.628M searches; $263 a month is then 10 cents per thousand.
    assert data.cost_per_thousand(262.8, 3600, 3600) == pytest.approx(0.1)
    assert data.cost_per_thousand(100.0, 0, 3600) is None
    assert data.scope_message("local", "prod") is None
    assert data.scope_message("dev", "dev") is None
    assert "stack 'dev'" in (data.scope_message("dev", "prod") or "")
    assert stack_of("service.namespace=prethrift,deployment.environment=prod") == "prod"
    assert stack_of(None) == "local"


def test_console_needs_a_password_outside_development(database_url: str) -> None:
    staging = dict(
        environment="staging", admin_token="x" * 20, database={"url": database_url},
        redis={"url": "redis://127.0.0.1:1/0"}, storage={"bucket": "b"},
    )  # fmt: skip
    with pytest.raises(ValueError, match="PRETHRIFT_CONSOLE_PASSWORD"):
        ConsoleConfig.from_settings(Settings.model_validate(staging))
    config = ConsoleConfig.from_settings(
        Settings.model_validate({**staging, "console_password": "s3cret-words"})
    )
    assert config.password == "s3cret-words"


def test_actual_spend_says_not_connected_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    spend = actual_spend("dev")
    assert not spend.connected and spend.message.startswith("Not connected")


def test_actual_spend_from_cost_explorer(s3_endpoint: str) -> None:
    groups = [
        {
            "Keys": ["Amazon Relational Database Service"],
            "Metrics": {"UnblendedCost": {"Amount": "20.5", "Unit": "USD"}},
        },
        {
            "Keys": ["Amazon Elastic Container Service"],
            "Metrics": {"UnblendedCost": {"Amount": "31.25", "Unit": "USD"}},
        },
    ]
    result = {"ResultsByTime": [{"TimePeriod": {"Start": "2026-06-01", "End": "2026-06-16"}, "Groups": groups}]}
    request = urllib.request.Request(
        f"{s3_endpoint}/moto-api/static/ce/cost-and-usage-results",
        data=json.dumps({"results": [result]}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()
    spend = actual_spend("prod", endpoint_url=s3_endpoint, today=date(2026, 6, 15))
    assert spend.connected and spend.total_usd == 51.75
    assert list(spend.by_service) == ["Amazon Elastic Container Service", "Amazon Relational Database Service"]


def _recorded_plan(stack: str) -> StackPlan:
    rows = [
        PlanRow(T.ECS_SERVICE, "services-api", "compute", {"name": "api"}, 144.16, "2 task(s)", 432.48),
        PlanRow(T.RDS_INSTANCE, "database-postgres", "database", {}, 106.4, "Multi-AZ"),
        PlanRow("usage:dataTransfer/internetOut", "presigned-image-downloads", "network", {}, 135.0, "assumed"),
    ]
    return StackPlan(stack, rows, pricing.Usage(searches_per_month=1_000_000), components=10)


def test_cost_page_reads_the_plan_recorded_at_deploy(s3_endpoint: str, bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    recorded = _recorded_plan("prod")
    s3.put_object(Bucket=bucket, Key=PLAN_KEY.format(stack="prod"), Body=json.dumps(recorded.as_dict()))
    s3.put_object(Bucket=bucket, Key=PLAN_KEY.format(stack="qa"), Body=b"<html>not a plan</html>")
    plans = PlanCache(bucket=bucket, endpoint_url=s3_endpoint, offline=False)
    plan = plans.plan("prod")
    assert plan.rows == recorded.rows and plan.total == 385.56 and plan.max_total == 673.88
    assert plan.usage.searches_per_month == 1_000_000
    with pytest.raises(PlanMissing, match=f"s3://{bucket}/deploy/plan-dev.json"):
        plans.plan("dev")
    with pytest.raises(PlanMissing, match="not a plan"):
        plans.plan("qa")


def test_deployed_console_never_runs_the_pulumi_program(s3_endpoint: str, bucket: str) -> None:
    """Outside development the console reads the recorded plan; Pulumi is never imported."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key=PLAN_KEY.format(stack="dev"), Body=json.dumps(_recorded_plan("dev").as_dict())
    )
    script = (
        "import sys; from console.cost import PlanCache; plans = PlanCache(); "
        "plan = plans.plan('dev'); print(plans.offline, plan.total); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws')))"
    )
    env = dict(os.environ, ENVIRONMENT="staging", IMAGES_BUCKET=bucket, AWS_ENDPOINT_URL=s3_endpoint)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["False 385.56", "[]"]


async def test_model_coverage_and_backfill_rate_per_key(connection: asyncpg.Connection) -> None:
    ids = [
        await connection.fetchval(
            "INSERT INTO items (title, price, image_key, image_sha256) VALUES ($1, 1, $1, $1) RETURNING id",
            f"item {n}",
        )
        for n in range(5)
    ]
    await connection.execute("INSERT INTO embedding_models (model_key) VALUES ('old/a'), ('new/b')")
    vector = "[1,1,1,1]"
    for item_id in ids:
        await connection.execute(
            "INSERT INTO item_embeddings (item_id, model_key, embedding, created_at) "
            "VALUES ($1, 'old/a', $2::vector, now() - interval '1 hour')",
            item_id,
            vector,
        )
    for item_id in ids[:2]:  # the backfill of the new key has done two items in the last minutes
        await connection.execute(
            "INSERT INTO item_embeddings (item_id, model_key, embedding) VALUES ($1, 'new/b', $2::vector)",
            item_id,
            vector,
        )
    # One photo the new model cannot read: it does not count against the new key's coverage.
    await connection.execute(
        "INSERT INTO embedding_jobs (item_id, model_key, status) VALUES ($1, 'new/b', 'failed')", ids[4]
    )
    found = {m.model_key: m for m in await data.model_coverage(connection)}
    old, new = found["old/a"], found["new/b"]
    assert (old.embedded, old.total, old.coverage, old.embedded_last_5m) == (5, 5, 1.0, 0)
    assert (new.embedded, new.total, new.coverage, new.embedded_last_5m) == (2, 4, 0.5, 2)
    assert old.state == new.state == "backfilling"  # no API reports serving either


async def test_suggestions_listed_removed_for_good_and_unblocked(
    connection: asyncpg.Connection, database_url: str
) -> None:
    assert await data.learned_suggestions(connection) == []
    assert await data.blocked_suggestions(connection) == []
    clients = [f"198.51.100.{n}" for n in range(4)]
    await record_searches(
        database_url,
        [("red dress", c) for c in clients]
        + [("red dress", clients[0])]
        + [("red boots", c) for c in clients[:2]]
        + [("wool coat", clients[0])],
    )

    learned = await data.learned_suggestions(connection)
    assert [(q.query, q.clients, q.count) for q in learned] == [
        ("red dress", 4, 5),
        ("red boots", 2, 2),
        ("wool coat", 1, 1),
    ]
    assert [q.query for q in await data.learned_suggestions(connection, "  RED ")] == ["red dress", "red boots"]
    assert await data.learned_suggestions(connection, "x" * 500) == []
    assert await data.learned_suggestions(connection, "red\x00") == []

    assert await data.remove_suggestion(connection, "red dress")
    assert [q.query for q in await data.learned_suggestions(connection)] == ["red boots", "wool coat"]
    assert [query for query, _ in await data.blocked_suggestions(connection)] == ["red dress"]
    # Shoppers searching it again do not teach it back.
    await record_searches(database_url, [("red dress", f"203.0.113.{n}") for n in range(5)])
    assert "red dress" not in [q.query for q in await data.learned_suggestions(connection)]

    assert await data.unblock_suggestion(connection, "red dress")
    assert await data.blocked_suggestions(connection) == []
    assert not await data.unblock_suggestion(connection, "red dress")
    await record_searches(database_url, [("red dress", f"203.0.113.{n}") for n in range(3)])
    assert [(q.query, q.clients) for q in await data.learned_suggestions(connection)][0] == ("red dress", 3)


def test_suggestion_text_refuses_what_no_query_could_be() -> None:
    assert data.suggestion_text("  Red   Dress ") == "red dress"
    for bad in ("", "   ", "x" * 101, "red\x00dress", None, 3, ["red"]):
        assert data.suggestion_text(bad) is None
