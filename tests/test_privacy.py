"""Consent, retention, erasure (down to the bytes on disk), opt-out by selfie, review, key rotation and
the records of processing. Crash consistency is tested by killing a real process with SIGKILL."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

import facevault
from facevault import crops
from facevault.errors import KeyMissingError, NotFoundError, WrongKeyError
from facevault.service.migration import open_crop
from facevault.store import utcnow
from facevault.store.schema import sample_crops

from .conftest import lfw, run_cli, write_image


def _photos(astronaut: np.ndarray, tmp_path: Path) -> dict[str, Path]:
    return {
        "a": write_image(tmp_path / "a.jpg", astronaut),
        "b": write_image(tmp_path / "b.jpg", astronaut[:, ::-1].copy()),
        "probe": write_image(tmp_path / "probe.jpg", np.asarray(Image.fromarray(astronaut).rotate(4))),
    }


@pytest.fixture
def enrolled(vault, astronaut: np.ndarray, tmp_path: Path):  # type: ignore[no-untyped-def]
    photos = _photos(astronaut, tmp_path)
    vault.create_collection("c", purpose="door access", legal_basis="explicit consent", keep_crops=True)
    vault.add_subject("c", "Eileen", purpose="door access", consent_text="signed", external_id="E1")
    vault.add_subject("c", "Other", purpose="door access", consent_text="signed")
    assert all(o.ok for o in vault.enroll("c", "E1", [photos["a"], photos["b"]]))
    return vault, photos


def _files(vault) -> list[Path]:  # type: ignore[no-untyped-def]
    home = vault.settings.home
    return [p for p in home.rglob("*") if p.is_file() and "keys" not in p.parts]


def _scan(vault, needles: list[bytes]) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    found = []
    for path in _files(vault):
        data = path.read_bytes()
        for i, needle in enumerate(needles):
            if needle in data:
                found.append((path.name, i))
    return found


def test_erasure_leaves_no_template_bytes_anywhere(enrolled) -> None:
    vault, photos = enrolled
    pixels = vault.context.decode(photos["a"]).pixels
    face = vault.pipeline("dlib-resnet-v1").analyze(pixels)[0]
    raw = face.embedding
    protected = vault.context.current_key().protect(raw)
    with sqlite3.connect(vault.settings.db_path) as db:
        blobs = [r[0] for r in db.execute("SELECT vector FROM samples")]
        boxes = db.execute("SELECT box_x1, box_y1, box_x2, box_y2 FROM samples ORDER BY id").fetchall()
        crop_blobs = [r[0] for r in db.execute("SELECT image FROM sample_crops")]
    # The collection keeps face crops: the crop of photo "a" as encoded before encryption, its pixels,
    # and the stored ciphertexts.
    crop = crops.make_crop(pixels, boxes[0])
    crop_pixels = crops.decode_crop(crop.data)
    crop_needles = [crop.data[-256:], crop_pixels[crop_pixels.shape[0] // 2].tobytes()[:256]]
    assert len(crop_blobs) == 2
    assert crops.open_sealed(vault.context.current_key(), crop_blobs[0], 1, 1) == crop.data  # the crop stored
    # half a template is plenty to identify it and robust to float formatting of neighbours
    templates = [raw.astype("<f4").tobytes()[:256], protected.astype("<f4").tobytes()[:256]]
    needles = templates + [b[:64] for b in blobs] + crop_needles + [b[16:80] for b in crop_blobs]
    is_crop_plain = {len(templates) + len(blobs), len(templates) + len(blobs) + 1}
    before = _scan(vault, needles)
    assert ("facevault.db", 0) not in before  # the database never holds a plain template
    assert not [hit for hit in before if hit[1] in is_crop_plain]  # nor a crop in the clear, anywhere
    assert any(name.endswith(".faiss") and i == 1 for name, i in before)  # the index holds the protected one
    assert any(
        name.startswith("facevault.db") and 2 <= i < 4 for name, i in before
    )  # ciphertext in the store
    assert {i for name, i in before if name.startswith("facevault.db") and i >= 6} == {6, 7}  # crops too
    vault.search("c", photos["probe"], purpose="before erasure")

    receipt = vault.erase_subject("c", "E1")
    assert receipt["samples_erased"] == 2 and receipt["crops_erased"] == 2 and receipt["images_erased"] == 2
    assert len(receipt["consent_evidence_sha256"]) == 64
    entry = vault.audit_entries(1, action="subject.erase")[0]
    assert entry["details"]["samples_erased"] == 2 and "vector" not in json.dumps(entry)
    assert _scan(vault, needles) == []
    res = vault.search("c", photos["probe"], purpose="after erasure", threshold=-1)
    assert all(c.name != "Eileen" for f in res.faces for c in f.candidates)
    with pytest.raises(NotFoundError):
        vault.erase_subject("c", "E1")  # double erase
    with pytest.raises(NotFoundError):
        vault.erase_subject("c", "nobody")


def test_consent_withdrawal_erases_at_once(enrolled) -> None:
    vault, photos = enrolled
    shown = vault.consent_show("c", "E1")
    assert shown["purpose"] == "door access" and shown["withdrawn_at"] is None
    receipt = vault.withdraw_consent("c", "E1")
    assert receipt["reason"] == "consent_withdrawn" and receipt["samples_erased"] == 2
    assert [e["action"] for e in vault.audit_entries(2)] == ["subject.erase", "consent.withdraw"]
    assert not vault.search("c", photos["probe"], purpose="t").matched
    with pytest.raises(NotFoundError):
        vault.consent_show("c", "E1")


def test_retention_sweep_and_policy(enrolled, astronaut: np.ndarray, tmp_path: Path) -> None:
    vault, _ = enrolled
    vault.add_subject(
        "c", "Short", purpose="p", consent_text="yes", expires=(utcnow() + timedelta(days=10)).date()
    )
    assert vault.retention_due() == []
    in_20_days = vault.retention_due(utcnow() + timedelta(days=20))
    assert [(d["subject_id"], d["reason"]) for d in in_20_days] == [(3, "consent_expired")]
    vault.set_retention("c", 30)
    later = {d["subject_id"]: d["reason"] for d in vault.retention_due(utcnow() + timedelta(days=31))}
    assert later == {1: "retention_period_over", 2: "retention_period_over", 3: "consent_expired"}
    swept = vault.retention_sweep(utcnow() + timedelta(days=31))
    assert len(swept["erased"]) == 3
    assert vault.list_subjects("c") == []
    policy = vault.retention_policy()
    assert (
        "destroyed" in policy
        and "c: purpose: door access; retention after last interaction: 30 days" in policy
    )


def enroll_blair_in_two_collections(vault: facevault.Vault) -> None:
    """Tony Blair in ``events`` and in ``staff``, beside Hugo Chavez in ``staff`` (opt-out tests)."""
    vault.create_collection("events")
    vault.create_collection("staff")
    vault.add_subject("events", "TB", purpose="photos", consent_text="yes")
    vault.add_subject("staff", "TB at work", purpose="access", consent_text="yes")
    vault.add_subject("staff", "HC", purpose="access", consent_text="yes")
    assert vault.enroll("events", "TB", [lfw("Tony_Blair", 9)])[0].ok
    assert vault.enroll("staff", "TB at work", [lfw("Tony_Blair", 10)])[0].ok
    assert vault.enroll("staff", "HC", [lfw("Hugo_Chavez", 1)])[0].ok


def test_optout_by_selfie_erases_and_blocks(vault) -> None:
    enroll_blair_in_two_collections(vault)

    res = vault.optout(lfw("Tony_Blair", 3))  # a different photo of him: the selfie
    assert sorted(e["collection"] for e in res["erased"]) == ["events", "staff"]
    assert all(e["reason"] == "opt_out" for e in res["erased"])
    assert [s["name"] for s in vault.list_subjects("staff")] == ["HC"]
    vault.add_subject("events", "TB again", purpose="photos", consent_text="yes")
    out = vault.enroll("events", "TB again", [lfw("Tony_Blair", 9)])
    assert out[0].reason == "blocked_by_optout"
    vault.add_subject("events", "Someone else", purpose="photos", consent_text="yes")
    assert vault.enroll("events", "Someone else", [lfw("Jacques_Chirac", 1)])[0].ok
    assert vault.audit_entries(1, action="optout")[0]["details"]["outcome"] == "ok"


def test_human_review_needs_two_different_reviewers(enrolled) -> None:
    vault, photos = enrolled
    res = vault.search("c", photos["probe"], purpose="investigation", case_id="CASE-1")
    subject_id = res.faces[0].candidates[0].subject_id
    state = vault.review_status("CASE-1")["candidates"]
    assert [c["state"] for c in state] == ["pending"]
    assert vault.review("CASE-1", subject_id, "confirm", "alice")["state"] == "pending"
    from facevault.errors import ConflictError
    from facevault.service.review import local_principal

    me = local_principal()  # the local operator is one reviewer, whatever name is typed
    for name in ("alice", "bob"):
        with pytest.raises(ConflictError):
            vault.review("CASE-1", subject_id, "confirm", name)
    bob = vault.acting_as("key:b0b0b0b0", role="reviewer")  # a second principal: another API key
    done = bob.review("CASE-1", subject_id, "confirm", "bob")
    assert done["state"] == "confirmed" and done["confirmed_by"] == [f"alice ({me})", "bob (key:b0b0b0b0)"]
    carol = vault.acting_as("key:ca201000", role="reviewer")
    assert carol.review("CASE-1", subject_id, "reject", "carol")["state"] == "rejected"
    assert [e["details"]["reviewer"] for e in vault.audit_entries(10, action="review")] == [
        "carol (key:ca201000)",
        "bob (key:b0b0b0b0)",
        f"alice ({me})",
    ]
    with pytest.raises(NotFoundError):
        vault.review("CASE-1", 999, "confirm", "dave")
    # A decision without a reviewer's name is its own input error, not a missing search purpose.
    from facevault.errors import InputError

    with pytest.raises(InputError) as missing:
        vault.review("CASE-1", subject_id, "confirm", "  ")
    assert missing.value.code == "reviewer_required" and missing.value.exit_code == 3
    assert len(vault.audit_entries(10, action="review")) == 3


def _tamper(db_path: Path, *statements: str) -> None:
    with sqlite3.connect(db_path) as db:
        for sql in statements:
            db.execute(sql)


@pytest.mark.parametrize(
    ("name", "statements", "first_bad"),
    [
        ("edit", ["UPDATE audit_log SET purpose = 'nothing to see' WHERE seq = 3"], 3),
        ("delete", ["DELETE FROM audit_log WHERE seq = 3"], 4),
        (
            "insert",
            [
                "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3",
                "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 103",
                "INSERT INTO audit_log (seq, at, action, actor, details, prev_hash, hash) SELECT 3, at, "
                "'search', 'ghost', '{}', hash, hash FROM audit_log WHERE seq = 2",
            ],
            3,
        ),
        (
            "reorder",
            [
                "UPDATE audit_log SET seq = -1 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -1",
            ],
            3,
        ),
        ("truncate", ["DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)"], None),
    ],
)
def test_audit_tampering_is_detected(
    enrolled, name: str, statements: list[str], first_bad: int | None
) -> None:
    vault, photos = enrolled
    vault.search("c", photos["probe"], purpose="p1")
    vault.search("c", photos["probe"], purpose="p2")
    assert vault.verify_audit().ok
    n = vault.verify_audit().entries
    _tamper(vault.settings.db_path, *statements)
    status = vault.verify_audit()
    assert not status.ok, name
    if first_bad is not None:
        assert status.first_bad_seq == first_bad, status
    else:
        assert status.first_bad_seq == n and "removed" in (status.problem or "")
    assert not vault.doctor().ok


def test_audit_export_formats(enrolled) -> None:
    vault, photos = enrolled
    vault.search("c", photos["probe"], purpose="exported", case_id="X")
    lines = vault.audit_export(fmt="jsonl").splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert rows[-1]["purpose"] == "exported" and rows[-1]["probe_sha256"]
    csv_text = vault.audit_export(fmt="csv", since=utcnow() - timedelta(hours=1))
    assert csv_text.splitlines()[0].startswith("seq,at,action,actor,role,purpose")
    assert vault.audit_export(fmt="jsonl", until=utcnow() - timedelta(days=1)) == ""
    assert vault.audit_entries(1)[0]["action"] == "audit.export"


def _top(vault, probe: Path) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    res = vault.search("c", probe, purpose="rotation check", threshold=-1, top_k=5)
    return [(c.subject_id, c.similarity) for c in res.faces[0].candidates]


def test_key_rotation_keeps_results_and_kills_stolen_templates(enrolled) -> None:
    vault, photos = enrolled
    before = _top(vault, photos["probe"])
    coll = vault.get_collection("c")
    # what a thief copying the index file before the rotation would get
    stolen = vault.context.indexes.get(coll)
    stolen_vecs = np.stack(
        [
            vault.context.current_key().protect(
                vault.pipeline("dlib-resnet-v1")
                .analyze(vault.context.decode(photos["a"]).pixels)[0]
                .embedding
            )
        ]
    )
    assert len(stolen) == 2
    res = vault.rotate_keys()
    assert (res["from_version"], res["to_version"], res["samples"], res["crops"]) == (1, 2, 2, 2)
    after = _top(vault, photos["probe"])
    assert [s for s, _ in after] == [s for s, _ in before]
    assert np.allclose([x for _, x in after], [x for _, x in before], atol=1e-5)
    # The old protected template scores like a stranger against the re-protected gallery.
    scores, _ = vault.context.indexes.get(coll).search(stolen_vecs, 2)
    assert float(scores.max()) < 0.5
    ring = json.loads(vault.settings.key_path.read_text())
    assert [k["version"] for k in ring["template_keys"]] == [2]
    assert oct(vault.settings.key_path.stat().st_mode & 0o777) == "0o600"


def test_wrong_or_missing_key_is_a_clear_error_and_leaves_data_intact(enrolled, tmp_path: Path) -> None:
    vault, photos = enrolled
    before = _top(vault, photos["probe"])
    key_path = vault.settings.key_path
    good = key_path.read_bytes()
    home = str(vault.settings.home)
    vault.close()
    from facevault.protection import KeyRing

    KeyRing.generate(key_path).save()  # someone restored the wrong key file
    wrong = facevault.open(home)
    with pytest.raises(WrongKeyError):
        wrong.rotate_keys()
    wrong.close()
    key_path.unlink()
    with pytest.raises(KeyMissingError, match="missing"):
        facevault.open(home)
    key_path.write_bytes(good)
    key_path.chmod(0o600)
    again = facevault.open(home)
    assert _top(again, photos["probe"]) == before
    assert again.doctor().ok


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["rotate:key_added", "rotate:indexes_dropped", "rotate:before_commit", "rotate:db_committed"]
)
def test_kill_during_key_rotation_leaves_old_or_new_state(enrolled, point: str) -> None:
    vault, photos = enrolled
    before = _top(vault, photos["probe"])
    home = str(vault.settings.home)
    vault.close()
    proc = run_cli(home, "keys", "rotate", crash_at=point)
    assert proc.returncode == -9, proc.stderr
    v = facevault.open(home)
    with v.store.begin() as conn:
        version = int(v.store.get_meta(conn, "template_key_version") or 0)
    assert version == (2 if point == "rotate:db_committed" else 1)
    assert [k for k in v.keys.template_keys] == [version]  # the unused key was forgotten on open
    with v.store.begin() as conn:  # the face crops too are all under the key in use, and open
        crop_rows = [dict(r) for r in conn.execute(select(sample_crops)).mappings()]
    assert len(crop_rows) == 2 and {r["key_version"] for r in crop_rows} == {version}
    assert all(open_crop(v.context, r).size for r in crop_rows)
    after = _top(v, photos["probe"])
    assert [s for s, _ in after] == [s for s, _ in before]
    assert np.allclose([x for _, x in after], [x for _, x in before], atol=1e-5)
    assert v.doctor().ok and v.verify_audit().ok


@pytest.mark.slow
@pytest.mark.parametrize("point", ["erase:before_commit", "erase:db_committed"])
def test_kill_during_erase_leaves_old_or_new_state(enrolled, point: str) -> None:
    vault, photos = enrolled
    home = str(vault.settings.home)
    vault.close()
    proc = run_cli(home, "subject", "erase", "c", "E1", crash_at=point)
    assert proc.returncode == -9, proc.stderr
    v = facevault.open(home)
    names = [s["name"] for s in v.list_subjects("c")]
    res = v.search("c", photos["probe"], purpose="after crash", threshold=-1)
    found = [c.name for f in res.faces for c in f.candidates]
    if point == "erase:before_commit":
        assert "Eileen" in names and found[0] == "Eileen"
    else:
        assert "Eileen" not in names and "Eileen" not in found
    assert v.doctor().ok and v.verify_audit().ok


def test_processing_record(enrolled) -> None:
    vault, _ = enrolled
    rec = vault.processing_record()
    assert rec["collections"][0]["purpose"] == "door access"
    assert rec["collections"][0]["legal_basis"] == "explicit consent"
    assert rec["counts"]["samples"] == 2 and "admin" in rec["recipients"]["roles"]
    assert any("AES-256-GCM" in m for m in rec["security_measures"])
