"""A one-off search analyses its probe in a forked child while the vault opens (``service.prefetch``).

What must hold: the search's answer is exactly the one without the child; the child's faces are used
only when they came from the same bytes and the same pipeline; a failed, slow or unsafe child changes
nothing but speed; no child is left behind; and the child writes nothing to the vault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facevault.service import prefetch

from .conftest import lfw

pytestmark = pytest.mark.slow  # real CLI processes with cold model loads


def _cli(home: Path, *args: str, prefetch_on: bool = True, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACEVAULT_HOME": str(home), "FACEVAULT_PREFETCH": "1" if prefetch_on else "0"}
    return subprocess.run(
        [sys.executable, "-m", "facevault.cli", *args], env=env, capture_output=True, text=True, check=check
    )


def _python(home: Path, code: str) -> str:
    env = {**os.environ, "FACEVAULT_HOME": str(home)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("prefetch") / "vault"
    _cli(home, "init")
    _cli(home, "collection", "create", "g")
    for person in ("Tony_Blair", "Hugo_Chavez"):
        name = person.replace("_", " ")
        _cli(home, "subject", "add", "g", "--name", name, "--purpose", "testing", "--consent-text", "signed")
        _cli(home, "enroll", "g", name, str(lfw(person, 1)), str(lfw(person, 2)))
    return home


def _answer(out: str) -> dict:  # type: ignore[type-arg]
    data = json.loads(out)
    data.pop("audit_seq")
    return data


def test_search_with_and_without_the_child_gives_the_same_answer(home: Path) -> None:
    probe = str(lfw("Tony_Blair", 3))
    with_child = _cli(home, "search", "g", probe, "--purpose", "check", "--json")
    without = _cli(home, "search", "g", probe, "--purpose", "check", "--json", prefetch_on=False)
    assert _answer(with_child.stdout) == _answer(without.stdout)
    assert _answer(with_child.stdout)["faces"][0]["candidates"][0]["name"] == "Tony Blair"
    # each run is one audit entry, the child adds none
    entries = json.loads(_cli(home, "audit", "list", "--limit", "5", "--json").stdout)
    searches = [e for e in entries if e["action"] == "search"]
    assert len({e["seq"] for e in searches}) >= 2


def test_a_probe_with_no_face_and_a_missing_probe_are_answered_as_without_the_child(
    home: Path, tmp_path: Path
) -> None:
    blank = tmp_path / "grey.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    for probe in (str(blank), str(tmp_path / "missing.jpg")):
        a = _cli(home, "search", "g", probe, "--purpose", "check", "--json", check=False)
        b = _cli(home, "search", "g", probe, "--purpose", "check", "--json", check=False, prefetch_on=False)
        assert a.returncode == b.returncode != 0
        assert json.loads(a.stdout)["error"]["code"] == json.loads(b.stdout)["error"]["code"]


CHILD_CODE = """
import json, os, sys
from facevault.service.prefetch import ProbeAnalysis, fork_is_safe
assert fork_is_safe()
probe = sys.argv[1] if len(sys.argv) > 1 else {probe!r}
with ProbeAnalysis.start(probe, os.environ["FACEVAULT_HOME"]) as analysis:
    assert analysis.started
    from facevault.config import load_settings
    from facevault.imaging import load_image
    from facevault.pipeline import Pipeline
    settings = load_settings()
    decoded = load_image(probe)
    pipe = Pipeline.for_model(settings.default_model, settings)
    other = Pipeline(pipe.pack, max_detect_side=settings.max_detect_side, tta="none")
    mine = pipe.analyze(decoded.pixels)
    theirs = analysis.faces_for(pipe, decoded.sha256)
    again = analysis.faces_for(other, decoded.sha256)
    wrong = analysis.faces_for(pipe, "0" * 64)
    pid = analysis._pid
print(json.dumps({{
    "same": theirs is not None and len(theirs) == len(mine) and all(
        (a.embedding == b.embedding).all() and a.face.box == b.face.box for a, b in zip(theirs, mine)),
    "other_pipeline": again, "other_bytes": wrong, "reaped": pid is None,
}}))
"""


def test_the_childs_faces_are_used_only_for_the_same_bytes_and_pipeline(home: Path) -> None:
    out = json.loads(_python(home, CHILD_CODE.format(probe=str(lfw("Hugo_Chavez", 3)))))
    assert out == {"same": True, "other_pipeline": None, "other_bytes": None, "reaped": True}


def test_a_child_that_fails_or_is_too_slow_is_reaped_and_ignored(home: Path, tmp_path: Path) -> None:
    code = f"""
import os
from facevault.service import prefetch
a = prefetch.ProbeAnalysis.start({str(tmp_path / "missing.jpg")!r}, os.environ["FACEVAULT_HOME"])
pid = a._pid
print(a.faces_for(None, "x"))
try:
    os.kill(pid, 0); print("alive")
except ProcessLookupError:
    print("gone")
prefetch.WAIT_SECONDS = 0.0
b = prefetch.ProbeAnalysis.start({str(lfw("Tony_Blair", 1))!r}, os.environ["FACEVAULT_HOME"])
pid = b._pid
print(b.faces_for(None, "x"))
try:
    os.kill(pid, 0); print("alive")
except ProcessLookupError:
    print("gone")
"""
    assert _python(home, code).split() == ["None", "gone", "None", "gone"]


def test_no_child_where_forking_is_unsafe_or_turned_off(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert not prefetch.fork_is_safe()
    assert not prefetch.ProbeAnalysis.start(str(lfw("Tony_Blair", 1)), home).started
    monkeypatch.undo()
    monkeypatch.setenv("FACEVAULT_PREFETCH", "0")
    code = "import os\nfrom facevault.service.prefetch import ProbeAnalysis\n"
    code += f"print(ProbeAnalysis.start({str(lfw('Tony_Blair', 1))!r}, None).started)"
    env_home = home
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "FACEVAULT_HOME": str(env_home), "FACEVAULT_PREFETCH": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_the_child_leaves_the_vault_folder_untouched(home: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()}
    code = f"""
import os
from facevault.service.prefetch import ProbeAnalysis
with ProbeAnalysis.start({str(lfw("Tony_Blair", 4))!r}, os.environ["FACEVAULT_HOME"]) as a:
    a._collect()
print("ok")
"""
    assert _python(home, code).strip() == "ok"
    after = {p: p.stat().st_mtime_ns for p in home.rglob("*") if p.is_file()}
    assert after == before
