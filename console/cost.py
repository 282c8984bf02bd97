"""Costs per stack: projected from the stack files by the offline plan (infra/plan.py, the one
price table in infra/pricing.py), and actual spend from AWS Cost Explorer when connected."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import structlog
from cachetools import TTLCache

from infra.plan import StackPlan, plan_stack
from infra.stacks import REPO_ROOT, list_stacks

log = structlog.get_logger(__name__)

# Cost Explorer filters on this cost-allocation tag (Pulumi.<stack>.yaml aws:defaultTags).
STACK_TAG = "stack"


def stacks(root: Path = REPO_ROOT) -> list[str]:
    """The stacks that have a ``Pulumi.<stack>.yaml``."""
    return list_stacks(root)


class PlanCache:
    """Plans keyed by stack and stack-file change time: running the program under mocks takes
    a couple of seconds, so each stack file version is planned once."""

    def __init__(self, root: Path = REPO_ROOT) -> None:
        self.root = root
        self._plans: dict[tuple[str, float], StackPlan] = {}
        self._lock = threading.Lock()

    def plan(self, stack: str) -> StackPlan:
        path = self.root / f"Pulumi.{stack}.yaml"
        key = (stack, path.stat().st_mtime)
        with self._lock:
            found = self._plans.get(key)
            if found is None:
                found = self._plans[key] = plan_stack(stack, self.root)
            return found


@dataclass(frozen=True)
class Spend:
    """Month-to-date spend of a stack from Cost Explorer, or why there is none."""

    connected: bool
    message: str
    total_usd: float = 0.0
    by_service: dict[str, float] = field(default_factory=dict)
    start: date | None = None
    end: date | None = None


def actual_spend(
    stack: str, *, session: Any = None, endpoint_url: str | None = None, today: date | None = None
) -> Spend:
    """Month-to-date unblended cost of resources tagged ``stack=<stack>``, by AWS service.

    Without AWS credentials this says so ("not connected") instead of failing.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = session or boto3.Session()
    if session.get_credentials() is None:
        return Spend(False, "Not connected: no AWS credentials, so actual spend is not shown.")
    today = today or date.today()
    start = today.replace(day=1)
    end = today + timedelta(days=1)  # Cost Explorer's end date is exclusive
    try:
        client = session.client(
            "ce",
            region_name="us-east-1",
            endpoint_url=endpoint_url,
            config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}),
        )
        response = client.get_cost_and_usage(
            TimePeriod={"Start": start.isoformat(), "End": end.isoformat()},
            Granularity="MONTHLY",
            Metrics=["UnblendedCost"],
            Filter={"Tags": {"Key": STACK_TAG, "Values": [stack], "MatchOptions": ["EQUALS"]}},
            GroupBy=[{"Type": "DIMENSION", "Key": "SERVICE"}],
        )
    except (BotoCoreError, ClientError) as error:
        log.warning("cost explorer unavailable", error=repr(error))
        return Spend(False, f"Not connected: Cost Explorer did not answer ({type(error).__name__}).")
    by_service: dict[str, float] = {}
    for period in response.get("ResultsByTime", []):
        for group in period.get("Groups", []):
            name = group["Keys"][0]
            amount = float(group["Metrics"]["UnblendedCost"]["Amount"])
            by_service[name] = by_service.get(name, 0.0) + amount
    total = round(sum(by_service.values()), 2)
    return Spend(
        True,
        f"Month to date ({start:%d %b} to {today:%d %b}), resources tagged {STACK_TAG}={stack}.",
        total,
        dict(sorted(by_service.items(), key=lambda kv: -kv[1])),
        start,
        today,
    )


class SpendCache:
    """Cost Explorer bills each request and updates a few times a day: ask once an hour per stack."""

    def __init__(self, ttl_s: float = 3600, endpoint_url: str | None = None) -> None:
        self.endpoint_url = endpoint_url
        self._spend: TTLCache[str, Spend] = TTLCache(maxsize=64, ttl=ttl_s)
        self._lock = threading.Lock()

    def spend(self, stack: str) -> Spend:
        with self._lock:
            found = self._spend.get(stack)
        if found is None:
            found = actual_spend(stack, endpoint_url=self.endpoint_url)
            with self._lock:
                self._spend[stack] = found
        return found
