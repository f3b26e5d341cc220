"""Issue 11, findings 4-7 and 9: ids are never handed out twice (also across a reopen and a migration),
a subject reference never guesses (an ambiguous one is refused, a malformed one is an input error, not
a 500 or a traceback), no file holding a face outlives the row that owns it (SIGKILL at every crash
point of enrollment and erasure, then a byte scan of the whole vault folder), and every face thumbnail
shown is audited while every refusal looks the same."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import facevault
from facevault import crops, faults
from facevault.errors import ConflictError, InputError, NotFoundError
from facevault.service import photos
from facevault.store import Store
from facevault.store import schema as t

from . import test_api_support as support
from .conftest import lfw, run_cli
from .test_api_support import asgi_client, auth, photo

anyio_backend, api_app, role_keys = support.anyio_backend, support.api_app, support.role_keys  # fixtures

KEEP = ("Tony_Blair", (1, 2))  # enrolled in every vault below and never erased: the scan's control
GONE = ("Hugo_Chavez", (1, 2))  # the person who is erased
MODEL = "dlib-resnet-v1"


class Crash(Exception):
    """Raised at a fault point: the use case stops there, as a killed process would."""


def _ids(db: Path, subject_id: int) -> dict[str, set[int]]:
    with sqlite3.connect(db) as conn:
        samples = conn.execute(
            "SELECT id, image_id FROM samples WHERE subject_id = ?", (subject_id,)
        ).fetchall()
        consent = conn.execute("SELECT consent_id FROM subjects WHERE id = ?", (subject_id,)).fetchone()
    return {
        "subject": {subject_id},
        "consent": {consent[0]},
        "sample": {s for s, _ in samples},
        "image": {i for _, i in samples},
    }


# ---- finding 4: ids are never reused ---------------------------------------------------------------------
def test_ids_of_an_erased_subject_are_never_given_out_again(vault) -> None:  # type: ignore[no-untyped-def]
    vault.create_collection("c", keep_crops=True)
    vault.add_subject("c", "Keep", purpose="p", consent_text="yes")
    assert all(o.ok for o in vault.enroll("c", "Keep", [lfw(KEEP[0], 1)]))
    db, home = vault.settings.db_path, str(vault.settings.home)
    seen: dict[str, set[int]] = {"subject": set(), "consent": set(), "sample": set(), "image": set()}
    candidates: set[int] = set()
    for round_ in range(3):
        if round_ == 2:  # and across a reopen
            vault.close()
            vault = facevault.open(home)
        newest = vault.add_subject("c", f"Person {round_}", purpose="p", consent_text="yes")
        out = vault.enroll("c", f"#{newest['id']}", [lfw(GONE[0], round_ + 1)])
        assert out[0].ok, out[0].message
        found = vault.search("c", lfw(GONE[0], 5), purpose="ids", case_id=f"CASE-{round_}")
        assert found.faces[0].candidates[0].subject_id == newest["id"]
        cands = {c["candidate_id"] for c in vault.review_status(f"CASE-{round_}")["candidates"]}
        assert cands and not cands & candidates
        candidates |= cands
        now = _ids(db, newest["id"])
        for kind, ids in now.items():
            assert ids and not ids & seen[kind], (kind, ids, seen[kind])
            seen[kind] |= ids
        vault.erase_subject("c", f"#{newest['id']}")  # the newest: SQLite would hand its ids out next
    vault.close()


def test_migration_keeps_every_row_and_starts_ids_above_any_seen_before(tmp_path: Path) -> None:
    """A vault at revision 0003 (rowid tables) whose newest subject was erased: after 0004 the rows are
    all there, foreign keys hold, and new ids start above every id the tables or the audit log name."""
    from alembic import command
    from alembic.config import Config

    db = tmp_path / "old.db"
    store = Store(f"sqlite:///{db}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(t.__file__).parent / "migrations"))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    now = "2024-01-01 00:00:00.000000"
    with sqlite3.connect(db) as raw:
        raw.execute(
            "INSERT INTO collections (id, name, model_id, dim, created_at, retention_days, keep_crops) "
            "VALUES (1, 'c', 'm', 4, ?, 30, 1)",
            (now,),
        )
        for i in (1, 2, 3):
            raw.execute(
                "INSERT INTO consents (id, purpose, granted_by, granted_at, evidence_kind, evidence_sha256) "
                "VALUES (?, 'p', 'x', ?, 'text', 'h')",
                (i, now),
            )
            raw.execute(
                "INSERT INTO subjects (id, collection_id, name, consent_id, created_at) "
                "VALUES (?, 1, ?, ?, ?)",
                (i, f"s{i}", i, now),
            )
            raw.execute(
                "INSERT INTO images (id, collection_id, sha256, source, width, height, created_at) "
                "VALUES (?, 1, ?, 'f', 1, 1, ?)",
                (i, f"{i:064x}", now),
            )
            raw.execute(
                "INSERT INTO samples (id, collection_id, subject_id, image_id, model_id, box_x1, box_y1, "
                "box_x2, box_y2, quality, vector, key_version, created_at) "
                "VALUES (?, 1, ?, ?, 'm', 0, 0, 1, 1, '{}', ?, 1, ?)",
                (i, i, i, b"blob%d" % i, now),
            )
        raw.execute(
            "INSERT INTO sample_crops (sample_id, collection_id, media_type, width, height, box_x1, box_y1, "
            "box_x2, box_y2, image, key_version, created_at) VALUES (1, 1, 'image/jpeg', 1, 1, 0, 0, 1, 1, "
            "?, 1, ?)",
            (b"crop", now),
        )
        for sql in ("DELETE FROM samples WHERE id = 3", "DELETE FROM images WHERE id = 3"):
            raw.execute(sql)
        raw.execute("DELETE FROM subjects WHERE id = 3")
        raw.execute("DELETE FROM consents WHERE id = 3")
        for seq, details in enumerate(
            [
                {"subject_id": 3, "consent_id": 3},
                {"samples_added": [3]},
                {"candidates": [[[7, 0.9]]]},  # a search once named subject #7 (erased since)
            ],
            1,
        ):
            raw.execute(
                "INSERT INTO audit_log (seq, at, action, actor, details, prev_hash, hash) "
                "VALUES (?, ?, 'x', 'a', ?, '', '')",
                (seq, now, json.dumps(details)),
            )
        before = {
            name: raw.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()
            for name in ("collections", "consents", "subjects", "images", "samples", "sample_crops")
        }
    store.create_schema()
    assert store.schema_revision() == f"{t.SCHEMA_VERSION:04d}"  # the newest migration
    store.close()
    with sqlite3.connect(db) as raw:
        raw.execute("PRAGMA foreign_keys = ON")
        for name, rows in before.items():
            after = raw.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()
            width = len(rows[0]) if rows else 0  # later revisions may add columns (collections.detector)
            assert [r[:width] for r in after] == rows, name
            sql = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
            assert ("AUTOINCREMENT" in sql) == (name != "sample_crops"), name
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"ix_samples_subject", "ix_subjects_collection_name", "ix_sample_crops_collection"} <= indexes
        new_consent = raw.execute(
            "INSERT INTO consents (purpose, granted_by, granted_at, evidence_kind, evidence_sha256) "
            "VALUES ('p', 'x', ?, 'text', 'h')",
            (now,),
        ).lastrowid
        new_subject = raw.execute(
            "INSERT INTO subjects (collection_id, name, consent_id, created_at) VALUES (1, 'n', ?, ?)",
            (new_consent, now),
        ).lastrowid
        new_image = raw.execute(
            "INSERT INTO images (collection_id, sha256, source, width, height, created_at) "
            "VALUES (1, 'n', 'f', 1, 1, ?)",
            (now,),
        ).lastrowid
        new_sample = raw.execute(
            "INSERT INTO samples (collection_id, subject_id, image_id, model_id, box_x1, box_y1, box_x2, "
            "box_y2, quality, vector, key_version, created_at) "
            "VALUES (1, ?, ?, 'm', 0, 0, 1, 1, '{}', x'00', 1, ?)",
            (new_subject, new_image, now),
        ).lastrowid
    assert new_subject == 8  # above the #7 a search named, not the erased #3's slot
    assert new_consent == 8 and new_sample == 4 and new_image == 4


# ---- findings 5 and 6: references never guess; malformed ones are input errors -----------------------------
@pytest.fixture
def ambiguous(vault):  # type: ignore[no-untyped-def]
    """#1 "Ann" (external id A-1) and #2 "Bob", whose external id is "1"."""
    vault.create_collection("c")
    vault.add_subject("c", "Ann", purpose="p", consent_text="yes", external_id="A-1")
    vault.add_subject("c", "Bob", purpose="p", consent_text="yes", external_id="1")
    return vault


def test_a_reference_two_subjects_answer_to_is_refused_and_explicit_ones_are_exact(ambiguous) -> None:  # type: ignore[no-untyped-def]
    v = ambiguous
    for call in (v.erase_subject, v.delete_subject, v.withdraw_consent, v.get_subject):
        with pytest.raises(ConflictError) as err:
            call("c", "1")
        assert err.value.code == "ambiguous" and err.value.details == {"subject_ids": [1, 2]}
    assert [s["id"] for s in v.list_subjects("c")] == [1, 2]  # nothing was erased
    assert v.get_subject("c", "#1")["name"] == "Ann" and v.get_subject("c", "id:1")["name"] == "Ann"
    assert v.get_subject("c", "ext:1")["name"] == "Bob" and v.get_subject("c", "name:Bob")["id"] == 2
    assert v.get_subject("c", "A-1")["name"] == "Ann" and v.get_subject("c", "Bob")["id"] == 2  # unique
    v.add_subject("c", "Ann", purpose="p", consent_text="yes")
    with pytest.raises(ConflictError) as two_anns:
        v.get_subject("c", "Ann")
    assert two_anns.value.code == "ambiguous" and two_anns.value.details == {"subject_ids": [1, 3]}
    assert v.erase_subject("c", "ext:1")["subject_id"] == 2
    assert v.erase_subject("c", "1")["subject_id"] == 1  # only #1 answers to "1" now


@pytest.mark.parametrize("ref", ["²", "٣", "9" * 30, "#9" + "9" * 30, "#x", "id:-1", "#", "", "  ", "ext:"])
def test_malformed_references_are_input_errors(ambiguous, ref: str) -> None:  # type: ignore[no-untyped-def]
    for call in (ambiguous.get_subject, ambiguous.erase_subject, ambiguous.consent_show):
        with pytest.raises(InputError) as err:
            call("c", ref)
        assert err.value.code == "invalid_subject_ref" and err.value.exit_code == 3
    with pytest.raises(InputError):
        ambiguous.enroll("c", ref, [lfw(KEEP[0], 1)])
    with pytest.raises(InputError):
        ambiguous.get_sample("c", 10**30)


def test_cli_refuses_ambiguous_and_malformed_references_without_a_traceback(ambiguous) -> None:  # type: ignore[no-untyped-def]
    home = str(ambiguous.settings.home)
    ambiguous.close()
    for args, code, error in (
        (("subject", "erase", "c", "1"), 5, "ambiguous"),
        (("subject", "show", "c", "²"), 3, "invalid_subject_ref"),
        (("subject", "delete", "c", "9" * 30), 3, "invalid_subject_ref"),
        (("consent", "withdraw", "c", "#" + "9" * 30), 3, "invalid_subject_ref"),
    ):
        proc = run_cli(home, *args, "--json")
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert json.loads(proc.stdout)["error"]["code"] == error
        assert "Traceback" not in proc.stderr
    erased = run_cli(home, "subject", "erase", "c", "ext:1", "--json")
    assert erased.returncode == 0 and json.loads(erased.stdout)["subject_id"] == 2, erased.stderr
    with facevault.open(home) as v:
        assert [s["name"] for s in v.list_subjects("c")] == ["Ann"]


@pytest.mark.anyio
async def test_api_addresses_subjects_explicitly_and_never_answers_500(api_app, role_keys) -> None:  # type: ignore[no-untyped-def]
    v = api_app.state.vault
    v.create_collection("c")
    v.add_subject("c", "Ann", purpose="p", consent_text="yes", external_id="A-1")
    v.add_subject("c", "Bob", purpose="p", consent_text="yes", external_id="1")
    enr = auth(role_keys["enroller"])
    base = "/api/v1/collections/c/subjects"
    async with asgi_client(api_app) as c:
        refused = await c.delete(f"{base}/1", headers=enr)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "ambiguous"
        withdraw = await c.post(f"{base}/1/consent/withdraw", headers=enr)
        assert withdraw.status_code == 409
        assert (await c.get(f"{base}/A-1", headers=enr)).json()["id"] == 1  # unambiguous: as before
        assert (await c.get(f"{base}/by-external-id/1", headers=enr)).json()["name"] == "Bob"
        assert (await c.get(f"{base}/by-external-id/1/consent", headers=enr)).json()["subject_id"] == 2
        missing = await c.get(f"{base}/by-external-id/2", headers=enr)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "subject_not_found"
        for ref in ("²", "9" * 30, "%23x", "%23" + "9" * 30, "id:-1"):
            for method, path in (
                ("GET", f"{base}/{ref}"),
                ("DELETE", f"{base}/{ref}"),
                ("GET", f"{base}/{ref}/consent"),
                ("POST", f"{base}/{ref}/consent/withdraw"),
                ("GET", f"{base}/{ref}/samples/1/thumbnail"),
            ):
                r = await c.request(method, path, headers=enr)
                assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
                assert r.json()["error"]["code"], r.text
            r = await c.post(f"{base}/{ref}/samples", files=[("images", photo(KEEP[0], 1))], headers=enr)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_subject_ref", r.text
        huge = await c.get(f"{base}/1/samples/{10**30}/thumbnail", headers=enr)
        assert huge.status_code == 404
        erased = await c.delete(f"{base}/by-external-id/1", headers=enr)
        assert erased.status_code == 200 and erased.json()["subject_id"] == 2
    assert [s["name"] for s in v.list_subjects("c")] == ["Ann"]


# ---- finding 9: thumbnails are audited, refusals look alike ---------------------------------------------
@pytest.mark.anyio
async def test_every_thumbnail_shown_is_audited_and_every_refusal_looks_the_same(api_app, role_keys) -> None:  # type: ignore[no-untyped-def]
    v = api_app.state.vault
    v.create_collection("c")
    srch, enr = auth(role_keys["searcher"]), auth(role_keys["enroller"])
    base = "/api/v1/collections/c/subjects"
    async with asgi_client(api_app) as c:
        ids = {}
        for person, numbers in (KEEP, GONE):
            r = await c.post(base, json={"name": person, "purpose": "p", "consent_text": "yes"}, headers=enr)
            ids[person] = r.json()["id"]
            r = await c.post(
                f"{base}/{ids[person]}/samples",
                files=[("images", photo(person, n)) for n in numbers],
                headers=enr,
            )
            assert r.json()["enrolled"] == 2, r.text
        keep_samples = [s["sample_id"] for s in v.get_subject("c", f"#{ids[KEEP[0]]}")["samples"]]
        gone_samples = [s["sample_id"] for s in v.get_subject("c", f"#{ids[GONE[0]]}")["samples"]]
        before = len(v.audit_entries(1000, action="sample.view"))
        shown = await c.get(
            f"{base}/{ids[KEEP[0]]}/samples/{keep_samples[0]}/thumbnail",
            params={"purpose": "review of case K", "case_id": "K"},
            headers=srch,
        )
        assert shown.status_code == 200 and shown.content[:2] == b"\xff\xd8"
        views = v.audit_entries(1000, action="sample.view")
        assert len(views) == before + 1
        entry = views[0]
        assert entry["actor"].startswith("key:") and entry["role"] == "searcher"
        assert (
            entry["details"]["subject_id"] == ids[KEEP[0]]
            and entry["details"]["sample_id"] == keep_samples[0]
        )
        assert entry["purpose"] == "review of case K" and entry["case_id"] == "K"

        v.erase_subject("c", f"#{ids[GONE[0]]}")
        refusals = [
            f"{base}/{ids[KEEP[0]]}/samples/{keep_samples[0] + 10_000}/thumbnail",  # no such sample
            f"{base}/{ids[KEEP[0]]}/samples/{gone_samples[0]}/thumbnail",  # another subject's (erased) sample
            f"{base}/{ids[GONE[0]]}/samples/{gone_samples[0]}/thumbnail",  # an erased subject
            f"{base}/Nobody/samples/{keep_samples[0]}/thumbnail",  # a name that is not enrolled
            f"{base}/{KEEP[0]}/samples/{keep_samples[0] + 10_000}/thumbnail",  # a name that is enrolled
            f"{base}/%C2%B2/samples/1/thumbnail",  # malformed
            f"/api/v1/collections/nope/subjects/1/samples/{keep_samples[0]}/thumbnail",
        ]
        answers = []
        for url in refusals:
            r = await c.get(url, headers=srch)
            body = r.json()["error"]
            answers.append((r.status_code, body["code"], body["message"]))
        assert set(answers) == {(404, "thumbnail_unavailable", photos.THUMBNAIL_REFUSED)}, answers
    assert len(v.audit_entries(1000, action="sample.view")) == before + 1  # refusals showed no face


# ---- finding 7: no face file without an owner --------------------------------------------------------------
def _keep_and_gone(vault) -> None:  # type: ignore[no-untyped-def]
    """Collection "c" (keeps crops) with Keep enrolled from kept photo copies, and Gone (ext G1) added."""
    vault.create_collection("c", keep_crops=True)
    vault.add_subject("c", "Keep", purpose="p", consent_text="yes")
    vault.add_subject("c", "Gone", purpose="p", consent_text="yes", external_id="G1")
    out = photos.enroll_photos(
        vault, "c", "Keep", [(f"k{n}.jpg", lfw(KEEP[0], n).read_bytes()) for n in KEEP[1]]
    )
    assert all(o.ok for o in out)


def _gone_photos() -> list[tuple[str, bytes]]:
    return [(f"g{n}.jpg", lfw(GONE[0], n).read_bytes()) for n in GONE[1]]


def test_doctor_reports_and_repair_removes_face_files_that_no_row_owns(vault, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _keep_and_gone(vault)
    settings = vault.settings
    cid = vault.get_collection("c")["id"]
    owned_copies = sorted(p for p in Path(settings.collection_photos_dir(cid)).iterdir())
    assert len(owned_copies) == 2
    assert vault.doctor().ok
    true = subprocess.Popen(["true"])
    true.wait()
    dead = true.pid  # a writer that is gone
    staging = photos.staging_dir(settings)
    staging.mkdir(parents=True, exist_ok=True)
    sha = "ab" * 32
    planted = [
        Path(settings.collection_photos_dir(cid)) / sha,  # a copy no image row owns
        Path(settings.collection_photos_dir(cid)) / f"{sha}.tmp123-456",  # an old-style half-written copy
        staging / f"c{cid}-{sha}-{dead}-0a1b.part",  # staged by a killed writer, never committed
        staging / "junk",
        Path(settings.collection_photos_dir(cid + 50)) / sha,  # of a collection that is gone
        Path(settings.index_dir) / f"collection-{cid + 50}.faiss",  # its index (protected templates)
    ]
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"face bytes")
    with faults.hooked("erase:index_updated", lambda: (_ for _ in ()).throw(Crash())):
        assert all(o.ok for o in photos.enroll_photos(vault, "c", "G1", _gone_photos()))
        with pytest.raises(Crash):
            vault.erase_subject("c", "G1")  # committed; its photo copies are still there
    # An index save that was killed after the last save (the next save removes such files itself).
    killed_save = Path(settings.index_dir) / f"collection-{cid}.faiss.x1y2.tmp"
    killed_save.write_bytes(b"face bytes")
    planted.append(killed_save)
    assert len(list(Path(settings.collection_photos_dir(cid)).iterdir())) == 2 + 2 + 2
    report = vault.doctor()
    assert not report.ok
    problems = {e["collection"]: " | ".join(e["problems"]) for e in report.collections}
    assert "interrupted after their commit" in problems["c"] and "no image record owns" in problems["c"]
    assert "staging area" in problems["c"] and "staging area" in problems["photos/.staging"]
    assert "index file" in problems["c"] and "no image record owns" in problems[f"#{cid + 50} (deleted)"]
    assert "index file" in problems[f"#{cid + 50} (deleted)"]
    repaired = vault.doctor(repair=True)
    assert repaired.ok and repaired.repaired, repaired
    assert not any(p.exists() for p in planted)
    assert sorted(Path(settings.collection_photos_dir(cid)).iterdir()) == owned_copies  # Keep's stay
    again = vault.doctor()
    assert again.ok and all(not e["problems"] for e in again.collections), again
    assert [e["collection"] for e in again.collections] == ["c"]


def test_an_erasure_between_commit_and_placing_the_copy_leaves_no_copy(vault) -> None:  # type: ignore[no-untyped-def]
    _keep_and_gone(vault)
    cid = vault.get_collection("c")["id"]
    folder = Path(vault.settings.collection_photos_dir(cid))
    with faults.hooked("photos:enrolled", lambda: vault.erase_subject("c", "G1"), once=True):
        out = photos.enroll_photos(vault, "c", "G1", _gone_photos())
    assert all(o.ok for o in out)  # enrolled, then erased before the copies were moved into place
    assert len(list(folder.iterdir())) == 2  # Keep's two; Gone's were removed after the move
    assert not list(photos.staging_dir(vault.settings).iterdir())
    assert vault.doctor().ok


def test_an_erasure_interrupted_after_its_commit_is_finished_at_the_next_open(vault) -> None:  # type: ignore[no-untyped-def]
    _keep_and_gone(vault)
    photos.enroll_photos(vault, "c", "G1", _gone_photos())
    gone = vault.get_subject("c", "G1")
    home = str(vault.settings.home)
    with faults.hooked("erase:db_committed", lambda: (_ for _ in ()).throw(Crash())), pytest.raises(Crash):
        vault.erase_subject("c", "G1")
    copies = [Path(s["image"]) for s in gone["samples"]]
    assert all(p.is_file() for p in copies)
    vault.close()
    with facevault.open(home) as v:
        assert not any(p.exists() for p in copies)
        with v.store.read() as conn:
            assert v.store.pending_erasures(conn) == []
            coll = v.store.get_collection(conn, "c")
        index_ids = set(v.context.indexes.open(coll).ids().tolist())
        assert not index_ids & {s["sample_id"] for s in gone["samples"]} and len(index_ids) == 2
        assert v.doctor().ok


# ---- finding 7: SIGKILL at every crash point, then a byte scan ---------------------------------------------
def _needles(vault, person: str, numbers: tuple[int, ...]) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Byte strings that identify this person's photos, face crops and templates, as enrollment makes
    them: a slice of each photo file, of its face crop (JPEG, as sealed), of the raw template and of
    the protected one (what the index holds)."""
    pipe, key = vault.pipeline(MODEL), vault.context.current_key()
    out = {}
    for n in numbers:
        data = lfw(person, n).read_bytes()
        pixels = vault.context.decode(lfw(person, n)).pixels
        face = pipe.analyze(pixels, portrait=True)[0]
        out[f"{person}/{n}: photo"] = data[len(data) // 2 : len(data) // 2 + 256]
        out[f"{person}/{n}: crop"] = crops.make_crop(pixels, face.face.box).data[-256:]
        out[f"{person}/{n}: template"] = face.embedding.astype("<f4").tobytes()[:256]
        out[f"{person}/{n}: protected template"] = key.protect(face.embedding).astype("<f4").tobytes()[:256]
    return out


def _stored(vault, ref: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The ciphertexts the store holds for a subject (sealed templates and crops), if it has any."""
    out = {}
    try:
        subject_id = vault.get_subject("c", ref)["id"]
    except NotFoundError:
        return out
    with vault.store.read() as conn:
        for sid, blob in conn.execute(
            select(t.samples.c.id, t.samples.c.vector).where(t.samples.c.subject_id == subject_id)
        ):
            out[f"sample {sid}: sealed template"] = blob[:64]
        crop_rows = conn.execute(
            select(t.sample_crops.c.sample_id, t.sample_crops.c.image)
            .join(t.samples, t.samples.c.id == t.sample_crops.c.sample_id)
            .where(t.samples.c.subject_id == subject_id)
        )
        for sid, blob in crop_rows:
            out[f"sample {sid}: sealed crop"] = blob[16:80]
    return out


def _scan(home: Path, needles: dict[str, bytes]) -> list[str]:
    """Which needles occur in any file of the vault folder (database, WAL, indexes, photos, keys...)."""
    found = []
    for path in (p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{name} in {path.relative_to(home)}" for name, needle in needles.items() if needle in data]
    return found


def _child(home: str, code: str, crash_at: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACEVAULT_HOME": home, "FACEVAULT_CRASH_AT": crash_at}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)


API_ENROLL = """
import sys, facevault
from facevault.service import photos
v = facevault.open()
photos.enroll_photos(v, "c", "G1", [(p.rsplit("/", 1)[-1], open(p, "rb").read()) for p in sys.argv[1:]])
"""


def _enroll_gone(home: Path, how: str, crash_at: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    paths = [str(lfw(GONE[0], n)) for n in GONE[1]]
    if how == "cli":
        return run_cli(str(home), "enroll", "c", "G1", *paths, crash_at=crash_at)
    if how == "api":
        return _child(str(home), API_ENROLL.replace("sys.argv[1:]", repr(paths)), crash_at)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "collection,external_id,subject,image\n" + "".join(f"c,G1,Gone,{p}\n" for p in paths),
        encoding="utf-8",
    )
    return run_cli(str(home), "enroll-batch", str(manifest), "--workers", "1", crash_at=crash_at)


@pytest.fixture
def crash_vault(vault) -> Iterator[tuple[Any, dict[str, bytes], dict[str, bytes]]]:  # type: ignore[no-untyped-def]
    """A closed vault with Keep enrolled and Gone added, the needles of both, and an open connection to
    its database for the whole test, so that SQLite never folds away its write-ahead log on our behalf
    when the last connection closes: only the code under test may."""
    _keep_and_gone(vault)
    gone, keep = _needles(vault, *GONE), _needles(vault, *KEEP)
    keeper = sqlite3.connect(vault.settings.db_path)
    keeper.execute("SELECT 1").fetchall()
    vault.close()
    yield vault, gone, keep
    keeper.close()


def _check_nothing_of_gone_is_left(
    home: Path, gone: dict[str, bytes], keep: dict[str, bytes], api: bool
) -> None:
    left = _scan(home, gone)
    assert left == [], left
    control = _scan(home, keep)  # the scan does find an enrolled person's face where it is kept
    assert any("protected template in index" in f for f in control), control
    if api:
        assert any(": photo in photos" in f for f in control), control
    with facevault.open(str(home)) as v:
        report = v.doctor()
        assert report.ok, report
        assert v.verify_audit().ok


ENROLL_POINTS = [
    ("cli", "enroll:checked"),
    ("cli", "enroll:db_committed"),
    ("api", "photos:staged"),
    ("api", "enroll:checked"),
    ("api", "enroll:db_committed"),
    ("api", "photos:enrolled"),
    ("api", "photos:placed"),
    ("batch", "enroll:db_committed"),
]


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize(("how", "point"), ENROLL_POINTS)
def test_kill_during_enrollment_then_erasure_leaves_no_face(
    crash_vault, how: str, point: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    vault, gone, keep = crash_vault
    home = Path(vault.settings.home)
    proc = _enroll_gone(home, how, point, tmp_path)
    assert proc.returncode == -9, f"no SIGKILL at {point} (is the fault point there?): {proc.stderr[-2000:]}"
    with facevault.open(str(home)) as v:  # finishes what the killed writer left
        stored = _stored(v, "G1")
        if point in ("photos:enrolled", "photos:placed", "enroll:db_committed"):
            assert stored, "the enrollment had committed"
        receipt = v.erase_subject("c", "G1")
        assert receipt["samples_erased"] == len(stored) // 2
    _check_nothing_of_gone_is_left(home, gone | stored, keep, api=True)


ERASE_POINTS = ["erase:before_commit", "erase:db_committed", "erase:index_updated", "erase:files_removed"]


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("point", ERASE_POINTS)
def test_kill_during_erasure_leaves_no_face(crash_vault, point: str) -> None:  # type: ignore[no-untyped-def]
    vault, gone, keep = crash_vault
    home = Path(vault.settings.home)
    with facevault.open(str(home)) as v:
        assert all(o.ok for o in photos.enroll_photos(v, "c", "G1", _gone_photos()))
        stored = _stored(v, "G1")
    assert len(stored) == 4 and _scan(home, gone | stored)  # there is something to erase
    proc = run_cli(str(home), "subject", "erase", "c", "G1", crash_at=point)
    assert proc.returncode == -9, proc.stderr
    with facevault.open(str(home)) as v:  # the erasure, if it committed, is finished here
        if point == "erase:before_commit":
            assert v.get_subject("c", "G1")["name"] == "Gone"
            v.erase_subject("c", "G1")
        else:
            with pytest.raises(NotFoundError):
                v.get_subject("c", "G1")
    _check_nothing_of_gone_is_left(home, gone | stored, keep, api=True)
