"""A small offline evaluator of IAM identity policies, enough to check the bootstrap's roles.

No maintained Python library evaluates IAM policies offline with conditions (the maintained
simulator, cloud-copilot's iam-simulate, is a Node library), so this follows AWS's documented
logic for one account and identity policies only: an explicit Deny wins, else any Allow, else
an implicit deny; Action/NotAction, Resource/NotResource with `*` and `?` wildcards; condition
operators String(Not)Equals(IgnoreCase), String(Not)Like, Arn(Not)Like/Equals, Null, Bool, with
the ForAllValues:/ForAnyValue: set qualifiers and the IfExists suffix. A key absent from the
request fails every positive operator, satisfies every negated one and ForAllValues, as AWS
documents (reference_policies_condition-single-vs-multi-valued-context-keys).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

Decision = Literal["allow", "explicit-deny", "implicit-deny"]


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    decision: Decision
    statement: str | None = None
    """The Sid of the deciding statement (the Deny, or the first Allow)."""


@lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _glob(glob: str, value: str, ignore_case: bool = False) -> bool:
    return bool(_pattern(glob, ignore_case).match(value))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _arn_like(pattern: str, arn: str) -> bool:
    # ARN operators match segment by segment; the last segment (the resource) may hold colons.
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return _glob(pattern, arn)
    return all(_glob(p, a) for p, a in zip(p_parts, a_parts, strict=True))


def _match_one(base: str, policy_value: str, value: str) -> bool:
    if base in ("StringEquals", "StringNotEquals"):
        return policy_value == value
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return policy_value.lower() == value.lower()
    if base in ("StringLike", "StringNotLike"):
        return _glob(policy_value, value)
    if base in ("ArnLike", "ArnNotLike", "ArnEquals", "ArnNotEquals"):
        return _arn_like(policy_value, value)
    if base == "Bool":
        return policy_value.lower() == value.lower()
    raise ValueError(f"condition operator {base} is not supported by this evaluator")


def _condition(operator: str, key: str, policy_values: list[str], context: Mapping[str, Sequence[str]]) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    base = op.removesuffix("IfExists")
    lowered = {k.lower(): v for k, v in context.items()}
    values = lowered.get(key.lower())
    if base == "Null":
        absent = values is None or len(values) == 0
        return any((str(v).lower() == "true") == absent for v in policy_values)
    negated = "Not" in base
    if values is None or len(values) == 0:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated
    pvs = [str(v) for v in policy_values]
    if qualifier == "ForAllValues":
        if negated:
            return all(not any(_match_one(base, p, v) for p in pvs) for v in values)
        return all(any(_match_one(base, p, v) for p in pvs) for v in values)
    if qualifier == "ForAnyValue":
        if negated:
            return any(not any(_match_one(base, p, v) for p in pvs) for v in values)
        return any(any(_match_one(base, p, v) for p in pvs) for v in values)
    hit = any(_match_one(base, p, v) for p in pvs for v in values)
    return not hit if negated else hit


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        if not any(_glob(a, request.action, ignore_case=True) for a in _list(statement["Action"])):
            return False
    elif any(_glob(a, request.action, ignore_case=True) for a in _list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(_glob(r, request.resource) for r in _list(statement["Resource"])):
            return False
    elif any(_glob(r, request.resource) for r in _list(statement["NotResource"])):
        return False
    for operator, pairs in (statement.get("Condition") or {}).items():
        for key, policy_values in pairs.items():
            if not _condition(operator, key, _list(policy_values), request.context):
                return False
    return True


def evaluate(policies: Iterable[Mapping[str, Any]], request: Request) -> Result:
    """The decision of the identity policies `policies` on `request`."""
    allowed: str | None = None
    for policy in policies:
        for statement in _list(policy["Statement"]):
            if not _applies(statement, request):
                continue
            sid = str(statement.get("Sid", "?"))
            if statement["Effect"] == "Deny":
                return Result("explicit-deny", sid)
            allowed = allowed or sid
    return Result("allow", allowed) if allowed else Result("implicit-deny")
