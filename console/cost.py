"""Costs per stack: the plan recorded at deploy time (infra/plan's JSON, written by the
deploy workflow to ``s3://<IMAGES_BUCKET>/deploy/plan-<stack>.json``), and actual spend from
AWS Cost Explorer when connected.

A deployed console never runs the Pulumi program (the image has no Pulumi SDKs); only in
development (``ENVIRONMENT=development``, ``make run``) does it plan the stack files offline."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from cachetools import TTLCache

from infra.plan import StackPlan
from infra.stacks import REPO_ROOT, list_stacks

if TYPE_CHECKING:
    from webapp.config import Environment

log = structlog.get_logger(__name__)

# Cost Explorer filters on this cost-allocation tag (Pulumi.<stack>.yaml aws:defaultTags).
STACK_TAG = "stack"


def stacks(root: Path = REPO_ROOT) -> list[str]:
    """The stacks that have a ``Pulumi.<stack>.yaml``."""
    return list_stacks(root)


# Where the deploy workflow records each stack's plan, in the stack's images bucket.
PLAN_KEY = "deploy/plan-{stack}.json"


class PlanMissing(LookupError):
    """No plan was recorded for this stack (it was never deployed, or the bucket is unreadable)."""


class PlanCache:
    """The plan of each stack, read at most every ``ttl_s`` seconds.

    With a ``bucket``: the JSON the deploy recorded there. Without one (development only):
    the stack file planned offline, once per stack file version."""

    def __init__(
        self,
        root: Path = REPO_ROOT,
        *,
        bucket: str | None = None,
        endpoint_url: str | None = None,
        offline: bool | None = None,
        ttl_s: float = 300,
    ) -> None:
        if offline is None:
            from webapp.config import Environment, StorageSettings

            offline = _environment() is Environment.DEVELOPMENT
            if not offline and bucket is None:
                storage = StorageSettings()
                bucket, endpoint_url = storage.bucket, storage.endpoint_url
        self.root = root
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.offline = offline
        self.ttl_s = ttl_s
        self._plans: dict[tuple[str, float], StackPlan] = {}
        self._recorded: dict[str, tuple[float, StackPlan]] = {}
        self._lock = threading.Lock()

    def location(self, stack: str) -> str:
        return f"s3://{self.bucket}/{PLAN_KEY.format(stack=stack)}" if self.bucket else "(no IMAGES_BUCKET)"

    def plan(self, stack: str) -> StackPlan:
        """The stack's plan; raises PlanMissing when none was recorded."""
        if self.offline:
            return self._offline(stack)
        now = time.monotonic()
        with self._lock:
            cached = self._recorded.get(stack)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        found = self._read(stack)
        with self._lock:
            self._recorded[stack] = (now, found)
        return found

    def _read(self, stack: str) -> StackPlan:
        if not self.bucket:
            raise PlanMissing("IMAGES_BUCKET is not set, so there is nowhere to read the recorded plan from")
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        key = PLAN_KEY.format(stack=stack)
        try:
            client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2}),
            )
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as error:
            log.warning("recorded plan unavailable", stack=stack, error=repr(error))
            raise PlanMissing(
                f"No plan recorded for stack '{stack}' at {self.location(stack)} "
                f"({type(error).__name__}); the deploy workflow writes it after each deploy."
            ) from None
        try:
            return StackPlan.from_dict(json.loads(body))
        except (ValueError, KeyError, TypeError) as error:
            raise PlanMissing(f"The plan at {self.location(stack)} is not a plan ({error}).") from None

    def _offline(self, stack: str) -> StackPlan:
        from infra.plan import plan_stack  # development only: needs the `infra` extra (Pulumi)

        path = self.root / f"Pulumi.{stack}.yaml"
        key = (stack, path.stat().st_mtime)
        with self._lock:
            found = self._plans.get(key)
            if found is None:
                found = self._plans[key] = plan_stack(stack, self.root)
            return found


def _environment() -> Environment:
    """The ENVIRONMENT setting alone (the console's other settings are validated elsewhere)."""
    from webapp.config import Environment

    for name in ("ENVIRONMENT", "PRETHRIFT_ENVIRONMENT"):
        if os.environ.get(name):
            return Environment(os.environ[name])
    return Environment.DEVELOPMENT


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
