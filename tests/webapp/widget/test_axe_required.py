"""Without axe-core the accessibility test fails and says how to install it; it never skips, so a
run that checked nothing cannot pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.webapp.widget.conftest import AXE_INSTALL

REPO = Path(__file__).resolve().parents[3]
AXE_TEST = """
def test_checks_a_page(axe_script: str) -> None:
    assert axe_script
"""


def test_a_missing_axe_fails_with_the_install_command(tmp_path: Path) -> None:
    (tmp_path / "test_axe.py").write_text(AXE_TEST)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PRETHRIFT_AXE_DIR": str(tmp_path / "no-axe-here"),
    }
    plugins = ["tests.conftest", "tests.webapp.widget.conftest", "no:cacheprovider", "no:dash"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *(arg for name in plugins for arg in ("-p", name)), "-q"]
        + ["--rootdir", str(tmp_path), str(tmp_path / "test_axe.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"Install it with:  {AXE_INSTALL}" in output
    assert "skipped" not in output and "1 error" in output, output
