"""The cost difference against another git revision: the program of that revision, checked out
in a temporary worktree and planned the same way."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from infra.mocks import REPO_ROOT
from infra.plan.price import plan_stack
from infra.plan.rows import StackPlan


@dataclass(frozen=True)
class CostDiff:
    stack: str
    base_ref: str
    base_total: float
    head_total: float
    changes: list[tuple[str, str, float, float]] = field(default_factory=list)
    """(type, name, before, after) for every resource whose cost or presence changed."""
    added: frozenset[tuple[str, str]] = frozenset()
    removed: frozenset[tuple[str, str]] = frozenset()

    @property
    def delta(self) -> float:
        return round(self.head_total - self.base_total, 2)


def compare_plans(base: StackPlan | None, head: StackPlan, base_ref: str) -> CostDiff:
    """Per-resource cost changes from `base` (None: the stack did not exist) to `head`."""
    before = {(r.type, r.name): r.monthly_usd for r in base.rows} if base else {}
    after = {(r.type, r.name): r.monthly_usd for r in head.rows}
    changes = [
        (typ, name, before.get((typ, name), 0.0), after.get((typ, name), 0.0))
        for typ, name in sorted(set(before) | set(after))
        if (typ, name) not in before
        or (typ, name) not in after
        or round(before[(typ, name)] - after[(typ, name)], 2) != 0
    ]
    return CostDiff(
        head.stack,
        base_ref,
        base.total if base else 0.0,
        head.total,
        changes,
        frozenset(set(after) - set(before)),
        frozenset(set(before) - set(after)),
    )


def plan_at_ref(stack: str, ref: str, root: Path = REPO_ROOT) -> StackPlan | None:
    """The plan of `stack` at git revision `ref`, or None if the stack did not exist there."""

    def git(*args: str, cwd: Path = root) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="prethrift-plan-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", "--quiet", str(tree), commit)
        try:
            if not (tree / "infra" / "__main__.py").exists() or not (tree / f"Pulumi.{stack}.yaml").exists():
                return None
            return plan_stack(stack, tree)
        finally:
            git("worktree", "remove", "--force", str(tree))
