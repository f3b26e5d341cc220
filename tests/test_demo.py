"""The README's first command runs this demo; it must work on a fresh machine without ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_twice_on_a_fresh_home(tmp_path: Path) -> None:
    env = {**os.environ, "FACEVAULT_HOME": str(tmp_path / "home"), "FACEVAULT_TEST_DATA": "/nonexistent"}
    for _ in range(2):  # re-running starts the demo collection afresh
        out = subprocess.run(
            [sys.executable, "-m", "facevault.demo"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
    # The re-run's subject is #2: ids are never given out twice, even after the first run's were erased.
    assert "1. #2 Eileen Collins" in out.stdout
    assert "CollectionDeletion(" not in out.stdout  # results print as the records they are, in plain text
    assert "blurry" in out.stdout and "duplicate_image" in out.stdout
    assert "audit chain intact" in out.stdout
    assert "demo: ok (4 samples, 4 indexed" in out.stdout
