"""Two processes enrolling into one collection at the same time: nothing lost, nothing duplicated, and
no needless index rebuilds (each waits for the other's index save instead of rebuilding)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import facevault

from .conftest import data_path


@pytest.mark.slow
def test_two_processes_enroll_into_one_collection(tmp_path: Path) -> None:
    images = data_path("lfw", "lfw-deepfunneled")
    home = str(tmp_path / "vault")
    with facevault.open(home, create=True) as v:
        v.create_collection("c")
        v.add_subject("c", "A", purpose="t", consent_text="yes")
        v.add_subject("c", "B", purpose="t", consent_text="yes")
    files = {
        "A": [str(p) for p in sorted((images / "Colin_Powell").glob("*.jpg"))[:24]],
        "B": [str(p) for p in sorted((images / "Tony_Blair").glob("*.jpg"))[:24]],
    }
    env = {**os.environ, "FACEVAULT_HOME": home}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "facevault.cli", "enroll", "c", who, *[f]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(24)
        for who, f in (("A", files["A"][i]), ("B", files["B"][i]))
        if i < 6
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode in (0, 10) for p in procs), [o[1][-500:] for o in outs]
    assert not any("rebuilding" in err for _, err in outs), [err for _, err in outs if "rebuilding" in err]
    with facevault.open(home) as v:
        samples = sum(s["samples"] for s in v.list_subjects("c"))
        assert samples >= 10
        assert v.index_info("c")["count"] == samples
        assert v.doctor().ok and v.verify_audit().ok
