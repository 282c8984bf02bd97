"""Without Chromium the browser tests fail and say how to install it; they never skip, so a run
that never opened a page cannot pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CHROMIUM_INSTALL

REPO = Path(__file__).resolve().parents[1]
BROWSER_TEST = """
def test_opens_a_page(chromium: str) -> None:
    assert chromium
"""


def test_a_missing_browser_fails_with_the_install_command(tmp_path: Path) -> None:
    (tmp_path / "test_browser.py").write_text(BROWSER_TEST)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PRETHRIFT_TEST_CHROMIUM": str(tmp_path / "no-chromium-here"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:dash",
            "-q",
        ]
        + ["--rootdir", str(tmp_path), str(tmp_path / "test_browser.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"Install it with:  {CHROMIUM_INSTALL}" in output
    assert "skipped" not in output and "1 error" in output, output
