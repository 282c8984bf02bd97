"""The policy pack: `pulumi preview --policy-pack infra/policy` (prod adds
`--policy-pack-config infra/policy/prod.json`). Rules live in rules.py, tested offline."""

import sys
from pathlib import Path

# The CLI runs this folder by path; let `import infra` resolve from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import PolicyPack

from infra.policy.rules import policies

PolicyPack(name="prethrift-fsbp", policies=list(policies()))
