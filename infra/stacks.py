"""Where the stacks are: the repository root and its ``Pulumi.<stack>.yaml`` files.

Light on purpose (no Pulumi import), so the console and the plan can list stacks cheaply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


def list_stacks(root: Path = REPO_ROOT) -> list[str]:
    """The stacks that have a ``Pulumi.<stack>.yaml`` under ``root``."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def read_stack_file(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The `config:` map of `Pulumi.<stack>.yaml` (mocks do not read stack files)."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; stacks are {list_stacks(root)}")
    data = yaml.safe_load(path.read_text()) or {}
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: `config:` must be a mapping")
    return config
