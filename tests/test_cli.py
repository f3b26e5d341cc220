"""The CLI end to end (in-process through Typer's runner): every command, JSON output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facevault.cli import EXIT_PARTIAL, app

from .conftest import lfw, write_image

runner = CliRunner()


def fv(*args: str | Path, code: int = 0) -> str:
    """Run the CLI; returns what it printed on stdout (messages for people go to stderr)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.output)
    return result.stdout


def fvj(*args: str | Path, code: int = 0):  # type: ignore[no-untyped-def]
    return json.loads(fv(*args, "--json", code=code))


@pytest.fixture
def gallery(tmp_path: Path, astronaut: np.ndarray) -> dict[str, Path]:
    fv("init")
    fv("collection", "create", "staff")
    consent = tmp_path / "consent.pdf"
    consent.write_bytes(b"%PDF-1.4 signed consent form")
    fv(
        "subject",
        "add",
        "staff",
        "--name",
        "Eileen Collins",
        "--purpose",
        "door access",
        "--consent-file",
        consent,
        "--consent-by",
        "Eileen Collins",
        "--expires",
        "2999-12-31",
        "--external-id",
        "E-1",
    )
    photos = {
        "a": write_image(tmp_path / "a.jpg", astronaut),
        "b": write_image(tmp_path / "b.jpg", astronaut[:, ::-1].copy()),
        "probe": write_image(tmp_path / "probe.png", astronaut[10:, 5:].copy(), "PNG"),
        "blank": write_image(tmp_path / "blank.jpg", np.full((64, 64, 3), 30, np.uint8)),
    }
    out = fvj("enroll", "staff", "E-1", photos["a"], photos["b"])
    assert [o["status"] for o in out] == ["enrolled", "enrolled"]
    return photos


def test_help_is_fast_and_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "facevault.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("init", "collection", "subject", "enroll", "search", "verify", "doctor", "eval"):
        assert cmd in out.stdout


def test_collections_and_subjects(gallery: dict[str, Path]) -> None:
    assert fvj("collection", "list") == [
        {
            "name": "staff",
            "model_id": "dlib-resnet-v1",
            "detector": None,
            "subjects": 1,
            "samples": 2,
            "keep_crops": False,
        }
    ]
    subjects = fvj("subject", "list", "staff")
    assert subjects == [{"id": 1, "name": "Eileen Collins", "external_id": "E-1", "samples": 2}]
    shown = fvj("subject", "show", "staff", "#1")
    assert shown["consent"]["purpose"] == "door access"
    assert shown["consent"]["evidence_kind"] == "file" and len(shown["consent"]["evidence_sha256"]) == 64
    assert shown["consent"]["expires_at"].startswith("2999-12-31")
    assert len(shown["samples"]) == 2
    assert "Eileen Collins" in fv("subject", "show", "staff", "Eileen Collins")
    assert fvj("collection", "create", "staff", code=5)["error"]["code"] == "collection_exists"


def test_subject_needs_consent_evidence(gallery: dict[str, Path]) -> None:
    err = fvj("subject", "add", "staff", "--name", "X", "--purpose", "p", code=7)
    assert err["error"]["code"] == "consent_required"
    err = fvj(
        "subject",
        "add",
        "staff",
        "--name",
        "X",
        "--purpose",
        "p",
        "--consent-text",
        "y",
        "--consent-file",
        "/etc/hostname",
        code=7,
    )
    assert "exactly one" in err["error"]["message"]
    assert (
        fvj("subject", "add", "nope", "--name", "X", "--purpose", "p", "--consent-text", "y", code=4)[
            "error"
        ]["code"]
        == "collection_not_found"
    )


def test_search_json_is_stable(gallery: dict[str, Path]) -> None:
    res = fvj("search", "staff", gallery["probe"], "--purpose", "door", "--case", "K-7", "--top", "3")
    assert set(res) == {
        "collection",
        "model_id",
        "probe_sha256",
        "threshold",
        "threshold_fmr",
        "top_k",
        "purpose",
        "case_id",
        "audit_seq",
        "faces",
        "matched",
    }
    face = res["faces"][0]
    assert set(face) == {"face_index", "box", "quality", "searched", "skipped_reason", "candidates"}
    cand = face["candidates"][0]
    assert set(cand) == {"subject_id", "name", "external_id", "similarity", "estimated_fmr", "samples"}
    assert cand["name"] == "Eileen Collins" and cand["external_id"] == "E-1"
    assert set(cand["samples"][0]) == {"sample_id", "similarity", "image", "image_sha256", "box"}
    assert "Eileen Collins" in fv("search", "staff", gallery["probe"], "--purpose", "door")


def test_search_errors_and_exit_codes(gallery: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "staff", str(gallery["probe"])])
    assert result.exit_code == 2  # --purpose is a required option
    assert fvj("search", "staff", gallery["blank"], "--purpose", "p", code=3)["error"]["code"] == "no_face"
    assert fvj("search", "staff", tmp_path / "none.jpg", "--purpose", "p", code=3)["error"]["code"] == (
        "file_not_found"
    )
    assert fvj("search", "staff", tmp_path, "--purpose", "p", code=3)["error"]["code"] == "not_a_file"
    assert fvj("search", "nope", gallery["probe"], "--purpose", "p", code=4)["error"]["code"] == (
        "collection_not_found"
    )


def test_fmr_and_threshold_exclude_each_other(gallery: dict[str, Path]) -> None:
    both = ["--fmr", "1e-4", "--threshold", "0.9"]
    last = fvj("audit", "list", "--limit", "1")
    err = fvj("search", "staff", gallery["probe"], "--purpose", "p", *both, code=3)["error"]
    assert err == {"code": "invalid_input", "message": "give --fmr or --threshold, not both"}
    err = fvj("verify", gallery["a"], gallery["probe"], *both, code=3)["error"]
    assert err["code"] == "invalid_input" and "not both" in err["message"]
    result = runner.invoke(app, ["search", "staff", str(gallery["probe"]), "--purpose", "p", *both])
    assert result.exit_code == 3 and "error [invalid_input]" in result.stderr
    err = fvj("optout", gallery["a"], "--collection", "staff", "--all", code=3)["error"]
    assert err == {"code": "invalid_input", "message": "give --collection or --all, not both"}
    assert fvj("audit", "list", "--limit", "1") == last  # refused before anything was searched or erased


def test_enroll_reports_rejections_with_exit_code(gallery: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    out = fvj("enroll", "staff", "E-1", gallery["blank"], empty, gallery["a"], code=EXIT_PARTIAL)
    assert [o["reason"] for o in out] == ["no_face", "unreadable_image", "duplicate_image"]
    text = fv("enroll", "staff", "E-1", gallery["blank"], code=EXIT_PARTIAL)
    assert "rejected" in text and "no_face" in text
    assert fvj("enroll", "staff", "nobody", gallery["a"], code=4)["error"]["code"] == "subject_not_found"


def test_verify_command() -> None:
    fv("init")
    same = fvj("verify", lfw("Tony_Blair", 1), lfw("Tony_Blair", 2))
    assert same["same_person"] is True and same["similarity"] > same["threshold"]
    diff = fvj("verify", lfw("Tony_Blair", 1), lfw("Hugo_Chavez", 1))
    assert diff["same_person"] is False
    assert "DIFFERENT" in fv("verify", lfw("Tony_Blair", 1), lfw("Hugo_Chavez", 1))


def test_delete_doctor_and_audit(gallery: dict[str, Path]) -> None:
    assert fvj("doctor")["ok"] is True
    res = fvj("subject", "delete", "staff", "E-1")
    assert res["samples_removed"] == 2
    after = fvj("search", "staff", gallery["probe"], "--purpose", "check erasure")
    assert after["matched"] is False
    assert fvj("audit", "verify")["ok"] is True
    actions = [e["action"] for e in fvj("audit", "list", "--limit", "50")]
    assert actions[:3] == ["search", "subject.erase", "enroll"]
    assert "collection.create" in actions and "enroll" in actions
    fv("collection", "delete", "staff", "--yes")
    assert fvj("collection", "list") == []


def test_doctor_repair_via_cli(gallery: dict[str, Path], tmp_path: Path) -> None:
    import os

    index_dir = Path(os.environ["FACEVAULT_HOME"]) / "index"
    for f in index_dir.glob("collection-*.faiss"):
        f.unlink()
    report = fvj("doctor", code=8)
    assert report["ok"] is False and report["collections"][0]["problems"]
    assert fvj("doctor", "--repair")["ok"] is True
    assert fvj("doctor")["ok"] is True


def test_commands_without_a_vault() -> None:
    assert fvj("collection", "list", code=4)["error"]["code"] == "vault_not_found"


def test_privacy_commands_session(gallery: dict[str, Path], tmp_path: Path) -> None:
    res = fvj("search", "staff", gallery["probe"], "--purpose", "incident", "--case", "CASE-9")
    sid = res["faces"][0]["candidates"][0]["subject_id"]
    assert fvj("review", "CASE-9")["candidates"][0]["state"] == "pending"
    fvj("review", "CASE-9", "--candidate", str(sid), "--decision", "confirm", "--reviewer", "ann")
    # one operating-system account is one reviewer, whatever --reviewer says
    again = ["review", "CASE-9", "--candidate", str(sid), "--decision", "confirm", "--reviewer", "ben"]
    assert fvj(*again, code=5)["error"]["code"] == "already_reviewed"
    assert fvj("review", "CASE-9")["candidates"][0]["state"] == "pending"
    assert fvj("consent", "show", "staff", "E-1")["purpose"] == "door access"
    rotated = fvj("keys", "rotate")
    assert rotated["to_version"] == 2 and rotated["samples"] == 2
    again = fvj("search", "staff", gallery["probe"], "--purpose", "after rotation")
    assert again["faces"][0]["candidates"][0]["similarity"] == pytest.approx(
        res["faces"][0]["candidates"][0]["similarity"], abs=1e-4
    )
    policy = fv("retention", "policy")
    assert "retention" in policy.lower() and "staff" in policy
    assert fvj("retention", "sweep")["erased"] == []
    assert "Security measures" in fv("report", "processing")
    assert fvj("report", "processing")["collections"][0]["name"] == "staff"
    exported = fv("audit", "export", "--format", "csv")
    assert exported.splitlines()[0].startswith("seq,at,action")
    assert len(fv("audit", "export").splitlines()) >= 8
    receipt = fvj("consent", "withdraw", "staff", "E-1")
    assert receipt["reason"] == "consent_withdrawn" and receipt["samples_erased"] == 2
    out = fvj("optout", gallery["a"])
    assert out["erased"] == [] and out["scope"] == "*"
    fv("subject", "add", "staff", "--name", "Back again", "--purpose", "p", "--consent-text", "yes")
    blocked = fvj("enroll", "staff", "Back again", gallery["b"], code=EXIT_PARTIAL)
    assert blocked[0]["reason"] == "blocked_by_optout"
    assert fvj("subject", "erase", "staff", "Back again")["samples_erased"] == 0
    assert fvj("audit", "verify")["ok"] is True


def test_emit_prints_typed_results_as_json_or_text(capsys: pytest.CaptureFixture[str]) -> None:
    from collections.abc import Iterator, Mapping

    from facevault.cli.output import emit

    class Typed:
        def to_dict(self) -> dict[str, object]:
            return {"name": "Ada", "path": Path("/x")}

    class Record(Mapping[str, int]):  # a typed result that also reads like a dict
        def __getitem__(self, key: str) -> int:
            return {"n": 1}[key]

        def __iter__(self) -> Iterator[str]:
            return iter(["n"])

        def __len__(self) -> int:
            return 1

    emit([Typed(), Record(), {"nested": Typed()}], True, "ignored")
    assert json.loads(capsys.readouterr().out) == [
        {"name": "Ada", "path": "/x"},
        {"n": 1},
        {"nested": {"name": "Ada", "path": "/x"}},
    ]
    emit(Record(), False, lambda r: [f"n={r['n']}", "done"])
    emit(Typed(), False, "fixed line")
    emit({"always": "json"}, False)
    assert capsys.readouterr().out.splitlines() == [
        "n=1",
        "done",
        "fixed line",
        "{",
        '  "always": "json"',
        "}",
    ]
