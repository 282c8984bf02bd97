"""`python -m infra.plan STACK [--compare REF]`: see infra/plan/cli.py."""

import sys

from infra.plan.cli import main

sys.exit(main())
