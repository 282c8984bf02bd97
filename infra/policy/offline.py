"""Run the policy pack's validations offline, on the resources the mocks recorded
(infra/mocks.py), exactly as the Pulumi engine would call them: `python -m infra.policy.offline
STACK`. Useful without a cloud account, and what the tests use."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policy.rules import policies

POLICY_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    message: str
    urn: str | None


def _options(parent: str | None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def policy_resources(record: Mapping[str, Any]) -> list[PolicyResource]:
    """The recorded custom resources as the engine hands them to stack validations."""
    by_urn: dict[str, PolicyResource] = {}
    raw = [r for r in record["resources"] if r["custom"]]
    for r in raw:
        by_urn[r["urn"]] = PolicyResource(
            r["type"], r["state"], r["urn"], r["name"], _options(r["parent"]), None, None, [], {}
        )
    for r in raw:
        by_urn[r["urn"]].dependencies = [by_urn[d] for d in r["dependencies"] if d in by_urn]
    return list(by_urn.values())


def enforcement(policy: ResourceValidationPolicy | StackValidationPolicy, config: Mapping[str, Any]) -> str:
    level = config.get(policy.name)
    if isinstance(level, Mapping):
        level = level.get("enforcementLevel")
    if level is None:
        default = policy.enforcement_level or EnforcementLevel.ADVISORY
        return str(default.value)
    return str(level)


def evaluate(record: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> list[Violation]:
    """Every violation the pack reports for a recorded stack, with its enforcement level."""
    config = config or {}
    found: list[Violation] = []
    for policy in policies():
        assert isinstance(policy, ResourceValidationPolicy | StackValidationPolicy)
        level = enforcement(policy, config)
        if level == "disabled":
            continue

        def report(
            message: str, urn: str | None = None, *, _name: str = policy.name, _level: str = level
        ) -> None:
            found.append(Violation(_name, _level, message, urn))

        if isinstance(policy, ResourceValidationPolicy):
            for r in record["resources"]:
                if not r["custom"]:
                    continue
                args = ResourceValidationArgs(
                    r["type"], r["inputs"], r["urn"], r["name"], _options(r["parent"]), None
                )
                before = len(found)
                result = policy.validate(args, report)
                if inspect.isawaitable(result):
                    raise TypeError(f"{policy.name}: validations here are synchronous")
                for i in range(before, len(found)):
                    found[i] = Violation(found[i].policy, found[i].level, found[i].message, r["urn"])
        else:
            result = policy.validate(StackValidationArgs(policy_resources(record)), report)
            if inspect.isawaitable(result):
                raise TypeError(f"{policy.name}: validations here are synchronous")
    return found


def load_config(stack: str) -> dict[str, Any]:
    """The policy config a stack is previewed with (`infra/policy/<stack>.json`), if any."""
    path = POLICY_DIR / f"{stack}.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def main(argv: list[str] | None = None) -> int:
    from infra.mocks import record

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    ns = parser.parse_args(argv)
    violations = evaluate(record(ns.stack), load_config(ns.stack))
    for v in violations:
        print(f"{v.level:9} {v.policy}: {v.message} ({v.urn})")
    mandatory = [v for v in violations if v.level == "mandatory"]
    print(f"{len(violations)} violation(s), {len(mandatory)} mandatory")
    return 1 if mandatory else 0


if __name__ == "__main__":
    sys.exit(main())
