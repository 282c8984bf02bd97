"""What a price rule may read beyond its own resource: the usage assumptions and the other
resources of the stack (task definitions, autoscaling targets, collectors)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infra import pricing
from infra import resource_types as T
from infra.plan.rows import Cost


@dataclass
class PriceContext:
    """What a price rule may need beyond its own resource: usage assumptions and siblings."""

    usage: pricing.Usage
    by_type: Mapping[str, list[Mapping[str, Any]]]
    task_by_arn: Mapping[str, Mapping[str, Any]]
    hours: float = pricing.HOURS_PER_MONTH

    def count(self, typ: str) -> int:
        return len(self.by_type.get(typ, []))

    def max_count(self, service_name: str) -> float | None:
        """The autoscaling maximum of an ECS service, if it scales."""
        for target in self.by_type.get(T.APPAUTOSCALING_TARGET, []):
            resource_id = str(target["inputs"].get("resourceId") or "")
            if resource_id.rsplit("/", 1)[-1] == service_name:
                return float(target["inputs"]["maxCapacity"])
        return None

    @property
    def running_containers(self) -> float:
        """Containers running at the services' desired counts (the migrate step exits at start)."""
        total = 0.0
        for service in self.by_type.get(T.ECS_SERVICE, []):
            task = self.task_by_arn.get(service["inputs"].get("taskDefinition"))
            if task is None:
                continue
            definitions = json.loads(task["inputs"]["containerDefinitions"])
            long_running = sum(1 for c in definitions if c.get("name") != "migrate")
            total += float(service["inputs"].get("desiredCount") or 0) * long_running
        return total

    def collector_metrics(self) -> tuple[int, bool]:
        """The custom metrics the task collectors make, and whether every collector allow-lists
        them (without an allow-list, every Prometheus series becomes metrics)."""
        names: set[str] = set()
        for task in self.by_type.get(T.ECS_TASK_DEFINITION, []):
            for container in json.loads(task["inputs"]["containerDefinitions"]):
                env = {e["name"]: e["value"] for e in container.get("environment") or []}
                if "AOT_CONFIG_CONTENT" not in env:
                    continue
                emf = json.loads(env["AOT_CONFIG_CONTENT"]).get("exporters", {}).get("awsemf", {})
                declarations = emf.get("metric_declarations")
                if not declarations:
                    return 0, False
                for declaration in declarations:
                    sets = max(1, len(declaration.get("dimensions") or []))
                    for selector in declaration.get("metric_name_selectors") or []:
                        names |= {f"{selector.strip('^$')}#{i}" for i in range(sets)}
        return len(names), True

    @property
    def ec2_tasks(self) -> float:
        """ECS tasks placed on EC2 capacity providers (the GPU worker), by desired count."""
        total = 0.0
        for service in self.by_type.get(T.ECS_SERVICE, []):
            inputs = service["inputs"]
            desired = float(inputs.get("desiredCount") or 0)
            split = pricing.split_capacity(desired, inputs.get("capacityProviderStrategies") or [])
            total += desired - split.get("FARGATE", 0.0) - split.get("FARGATE_SPOT", 0.0)
        return total


# A price rule: one resource of its type, and the stack around it, to its monthly cost.
Rule = Callable[[Mapping[str, Any], PriceContext], Cost]
