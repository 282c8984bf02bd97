"""`python -m infra.plan STACK [--compare REF]` (also `prethrift plan STACK`): an offline
preview. It runs the Pulumi program under mocks, lists every resource with its key settings
and a projected monthly cost (price table: infra/pricing.py), and with `--compare REF` the
cost difference against another git revision, for pull requests."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from infra.plan.compare import compare_plans, plan_at_ref
from infra.plan.price import plan_stack
from infra.plan.report import format_diff, format_plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prethrift plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="stack name: a Pulumi.<stack>.yaml must exist")
    parser.add_argument(
        "--compare", metavar="REF", help="also print the cost difference against this git revision"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    ns = parser.parse_args(argv)
    try:
        plan = plan_stack(ns.stack)
        diff = compare_plans(plan_at_ref(ns.stack, ns.compare), plan, ns.compare) if ns.compare else None
    except (FileNotFoundError, RuntimeError, KeyError, ValueError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"prethrift plan: {detail}", file=sys.stderr)
        return 2
    if ns.json:
        out = plan.as_dict()
        if diff is not None:
            out["compare"] = {
                "ref": diff.base_ref,
                "base_total": diff.base_total,
                "delta": diff.delta,
                "changes": diff.changes,
            }
        print(json.dumps(out, indent=2))
        return 0
    print(format_plan(plan))
    if diff is not None:
        print()
        print(format_diff(diff))
    return 0
