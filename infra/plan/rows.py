"""The plan's row model: one row per resource (or usage line) with its monthly cost, the plan
of a stack as its rows, and the JSON the deploy records and the console reads back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra import pricing

# The service a resource type bills under, by type prefix (first match wins).
SERVICE_OF_PREFIX: list[tuple[str, str]] = [
    ("aws:ecs/", "compute"),
    ("aws:appautoscaling/", "compute"),
    ("aws:autoscaling/", "compute"),
    ("aws:ec2/launchTemplate", "compute"),
    ("aws:ecr/", "compute"),
    ("docker-build:", "compute"),
    ("aws:rds/", "database"),
    ("aws:elasticache/", "cache"),
    ("aws:ec2/", "network"),
    ("aws:lb/", "network"),
    ("aws:route53/", "network"),
    ("aws:s3/", "storage"),
    ("aws:cloudwatch/", "observability"),
    ("aws:sns/", "observability"),
    ("aws:iam/", "security"),
    ("aws:ssm/", "security"),
    ("aws:kms/", "security"),
    ("usage:dataTransfer", "network"),
    ("usage:rds/", "database"),
    ("aws:cognito/", "security"),
    ("aws:acm/", "network"),
    ("aws:cloudfront/", "network"),
    ("aws:wafv2/", "security"),
    ("usage:cloudwatch/", "observability"),
    ("usage:s3/", "storage"),
    ("random:", "security"),
]


@dataclass(frozen=True)
class PlanRow:
    type: str
    name: str
    service: str
    settings: dict[str, str]
    monthly_usd: float
    note: str = ""
    max_monthly_usd: float | None = None
    """At every autoscaling group's maximum; None where it cannot scale (same as steady)."""

    @property
    def at_max(self) -> float:
        return self.monthly_usd if self.max_monthly_usd is None else self.max_monthly_usd

    @property
    def is_usage(self) -> bool:
        """A usage-priced line (data transfer, backups) rather than a resource of the program."""
        return self.type.startswith("usage:")


@dataclass(frozen=True)
class StackPlan:
    stack: str
    rows: list[PlanRow]
    usage: pricing.Usage
    source: str = pricing.SOURCE
    as_of: str = pricing.AS_OF
    components: int = 0

    @property
    def total(self) -> float:
        return round(sum(row.monthly_usd for row in self.rows), 2)

    @property
    def max_total(self) -> float:
        """Monthly cost with every service at its autoscaling maximum all month."""
        return round(sum(row.at_max for row in self.rows), 2)

    @property
    def resources(self) -> int:
        return sum(1 for row in self.rows if not row.is_usage)

    def by_service(self) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for row in self.rows:
            sums[row.service] += row.monthly_usd
        return {k: round(v, 2) for k, v in sorted(sums.items(), key=lambda kv: -kv[1])}

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "total": self.total,
            "max_total": self.max_total,
            "resources": self.resources,
            "by_service": self.by_service(),
            "source": self.source,
            "as_of": self.as_of,
            "usage": self.usage.__dict__,
            "components": self.components,
            "rows": [row.__dict__ for row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StackPlan:
        """The inverse of `as_dict`: a plan recorded at deploy time, read back without Pulumi."""
        fields = set(PlanRow.__dataclass_fields__)
        rows = [PlanRow(**{k: v for k, v in row.items() if k in fields}) for row in data["rows"]]
        usage = pricing.Usage(**{k: float(v) for k, v in (data.get("usage") or {}).items()})
        return cls(
            str(data["stack"]),
            rows,
            usage,
            str(data.get("source", pricing.SOURCE)),
            str(data.get("as_of", pricing.AS_OF)),
            int(data.get("components", 0)),
        )


def service_of(typ: str) -> str:
    for prefix, service in SERVICE_OF_PREFIX:
        if typ.startswith(prefix):
            return service
    return "other"


def fmt_value(value: Any) -> str:
    """A setting as the plan prints it: whole floats without `.0`, lists comma-joined."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(fmt_value(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Cost:
    """What one resource costs a month, and why."""

    monthly_usd: float = 0.0
    note: str = ""
    max_usd: float | None = None
