"""Keeping face crops (``keep_crops``) and moving a collection to another model pack
(``facevault collection migrate``): crops stored only where asked, encrypted and bound to their sample,
deleted with every sample and re-encrypted by key rotation; migration re-embeds every sample from its
crop or refuses without changing anything; opt-outs made with the old pack keep blocking; a crash
between the store commit and the index rebuild is repaired on next use.

The packs are the synthetic ONNX graphs of ``tests/synthetic_pack.py`` (pack-a and pack-b:
same shapes, different recognizer weights); the default dlib pack is checked on real LFW faces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

import facevault
from facevault import crops, faults
from facevault.errors import (
    ConfigError,
    ConflictError,
    IntegrityError,
    MigrationError,
    ModelError,
    ModelMismatchError,
    WrongKeyError,
)
from facevault.models.base import box_iou as iou
from facevault.models.packs import install_pack
from facevault.models.packs.install import LICENSE_RECORD
from facevault.models.registry import register_installed_packs
from facevault.reembed import embed_at
from facevault.service.migration import open_crop
from facevault.service.optout import optout_guard
from facevault.store import schema as t
from facevault.store import utcnow

from . import test_api_support as api_support
from .conftest import lfw, run_cli, write_image
from .pack_support import face_image, pack_folder, restore_registry

anyio_backend, api_app, role_keys = api_support.anyio_backend, api_support.api_app, api_support.role_keys


# ---- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("migrate-packs")
    return {
        "pack-a": pack_folder(base, "pack-a", 1),
        "pack-b": pack_folder(base, "pack-b", 2),
        "pack-raw": pack_folder(base, "pack-raw", 3, calibrated=False, licensed=True),
        "pack-changed": pack_folder(base, "pack-changed", 4),
        "pack-unaccepted": pack_folder(base, "pack-unaccepted", 5),
    }


@pytest.fixture(autouse=True)
def _registry() -> Iterator[None]:
    yield from restore_registry()


@pytest.fixture
def packs(vault, sources: dict[str, Path]) -> Path:  # type: ignore[no-untyped-def]
    """pack-a and pack-b installed in the vault's own models folder (where a CLI process looks too)."""
    root = vault.settings.home / "models"
    for name in ("pack-a", "pack-b"):
        install_pack(sources[name], accept_license=True, root=root)
    register_installed_packs(root)
    return root


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, Path]:
    """Three photos of each synthetic person (square at another place, other noise)."""
    out = {}
    for look in ("dark", "grey"):
        for n, (cell, seed) in enumerate((((9, 9), 0), ((5, 12), 3), ((12, 4), 7))):
            path = tmp_path / "photos" / f"{look}{n}.png"
            out[f"{look}{n}"] = write_image(path, face_image(look, cell, seed), fmt="PNG")
    return out


@pytest.fixture
def gallery(vault, packs: Path, photos: dict[str, Path]):  # type: ignore[no-untyped-def]
    """Collection "c" on pack-a keeping crops: Dark and Grey, two samples each."""
    vault.create_collection("c", model="pack-a", keep_crops=True, purpose="door access")
    vault.add_subject("c", "Dark", purpose="door access", consent_text="yes")
    vault.add_subject("c", "Grey", purpose="door access", consent_text="yes")
    for name, keys in (("Dark", ("dark0", "dark1")), ("Grey", ("grey0", "grey1"))):
        out = vault.enroll("c", name, [photos[k] for k in keys])
        assert all(o.ok for o in out), [(o.reason, o.message) for o in out]
    return vault


# ---- helpers -----------------------------------------------------------------------------------------
def _rows(vault, table) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with vault.store.begin() as conn:
        return [dict(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()]


def _crops(vault, collection: str | None = None) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    rows = _rows(vault, t.sample_crops)
    if collection is None:
        return rows
    cid = vault.get_collection(collection)["id"]
    return [r for r in rows if r["collection_id"] == cid]


def _templates(vault, collection: str) -> dict[int, np.ndarray]:  # type: ignore[no-untyped-def]
    """The raw (unprotected) embeddings stored for a collection's samples."""
    coll = vault.get_collection(collection)
    out = {}
    for s in _rows(vault, t.samples):
        if s["collection_id"] == coll["id"]:
            key = vault.keys.key(s["key_version"])
            out[s["id"]] = key.unprotect(vault.context.open_template(coll, s["vector"], s["key_version"]))
    return out


def _snapshot(vault) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Everything a refused migration must leave as it was: store rows, audit chain and index files."""
    index_dir = vault.settings.index_dir
    return {
        "collections": _rows(vault, t.collections),
        "samples": _rows(vault, t.samples),
        "crops": _rows(vault, t.sample_crops),
        "audit": [(e["seq"], e["hash"]) for e in vault.audit_entries(0)],
        "index": {p.name: p.read_bytes() for p in sorted(index_dir.iterdir()) if p.name != ".lock"},
    }


def _top(vault, collection: str, photo: Path) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    res = vault.search(collection, photo, purpose="migration test")
    return [(c.name, c.similarity) for f in res.faces for c in f.candidates]


# ---- keeping crops -----------------------------------------------------------------------------------
def test_crops_are_kept_only_when_the_collection_asks(vault, packs, photos) -> None:  # type: ignore[no-untyped-def]
    plain = vault.create_collection("plain", model="pack-a")
    kept = vault.create_collection("kept", model="pack-a", keep_crops=True)
    assert (plain["keep_crops"], kept["keep_crops"]) == (False, True)
    assert [e["details"]["keep_crops"] for e in vault.audit_entries(2, action="collection.create")] == [
        True,
        False,
    ]
    for name in ("plain", "kept"):
        vault.add_subject(name, "Dark", purpose="t", consent_text="yes")
        assert all(o.ok for o in vault.enroll(name, "Dark", [photos["dark0"], photos["dark1"]]))
    assert _crops(vault, "plain") == []
    kept_samples = {s["id"] for s in _rows(vault, t.samples) if s["collection_id"] == kept["id"]}
    assert {c["sample_id"] for c in _crops(vault, "kept")} == kept_samples and len(kept_samples) == 2
    # turned on later: samples from then on get a crop, older ones do not
    assert vault.set_keep_crops("plain", True) == {
        "collection": "plain",
        "keep_crops": True,
        "crops_deleted": 0,
    }
    new = vault.enroll("plain", "Dark", [photos["dark2"]])[0]
    assert [c["sample_id"] for c in _crops(vault, "plain")] == [new.sample_id]
    with vault.store.begin() as conn:
        assert len(vault.store.samples_without_crop(conn, plain["id"])) == 2


def test_make_crop_geometry() -> None:
    """The box grown by half its size on every side, clipped to the photo, longer side at most 320."""
    big = np.zeros((1500, 2000, 3), np.uint8)
    assert crops.crop_region(2000, 1500, (400, 300, 600, 550)) == (300, 175, 700, 675)
    crop = crops.make_crop(big, (400, 300, 600, 550))
    assert crop.size == (256, 320) and crop.media_type == "image/jpeg"
    assert crop.box == pytest.approx((64, 80, 192, 240))
    assert crops.decode_crop(crop.data).shape == (320, 256, 3)
    edge = crops.make_crop(np.zeros((480, 640, 3), np.uint8), (10, 10, 110, 130))
    assert (edge.size, edge.box) == ((160, 190), (10, 10, 110, 130))
    with pytest.raises(ValueError):
        crops.crop_region(640, 480, (700, 500, 800, 600))


def test_crop_is_encrypted_and_bound_to_its_sample(gallery, photos) -> None:  # type: ignore[no-untyped-def]
    vault = gallery
    sample = _rows(vault, t.samples)[0]
    row = _crops(vault)[0]
    assert row["sample_id"] == sample["id"] and row["media_type"] == "image/jpeg"
    pixels = vault.context.decode(photos["dark0"]).pixels
    box = (sample["box_x1"], sample["box_y1"], sample["box_x2"], sample["box_y2"])
    expected = crops.make_crop(pixels, box)
    key = vault.keys.key(row["key_version"])
    assert crops.open_sealed(key, row["image"], row["collection_id"], row["sample_id"]) == expected.data
    assert expected.data not in row["image"] and expected.data[-200:] not in row["image"]
    assert (row["width"], row["height"]) == expected.size
    assert (row["box_x1"], row["box_y1"], row["box_x2"], row["box_y2"]) == pytest.approx(expected.box)
    # a loose crop: the whole face and its surroundings, close to the photo's pixels
    x1, y1, x2, y2 = crops.crop_region(640, 640, box)
    got = crops.decode_crop(expected.data).astype(int)
    assert np.abs(got - pixels[y1:y2, x1:x2].astype(int)).mean() < 6
    # bound to its collection and sample: moved elsewhere, it no longer opens
    with pytest.raises(WrongKeyError):
        crops.open_sealed(key, row["image"], row["collection_id"], row["sample_id"] + 1)
    with pytest.raises(WrongKeyError):
        crops.open_sealed(key, row["image"], row["collection_id"] + 1, row["sample_id"])


# ---- migration ---------------------------------------------------------------------------------------
def test_migrate_reembeds_every_sample_with_the_new_pack(gallery, photos) -> None:  # type: ignore[no-untyped-def]
    vault = gallery
    assert _top(vault, "c", photos["dark2"])[0][0] == "Dark"
    before = _templates(vault, "c")
    res = vault.migrate_collection("c", "pack-b")
    assert res == {
        "collection": "c",
        "from_model": "pack-a",
        "to_model": "pack-b",
        "dim": 512,
        "samples": 4,
        # the synthetic detector cannot find its squares again in a zoomed-in crop: landmarks placed in
        # the stored box (real detectors find real faces again: see the dlib test below)
        "located_by_fallback": 4,
        "indexed": 4,
        "optout_models": [],
        "audit_seq": res["audit_seq"],
    }
    coll = vault.get_collection("c")
    assert (coll["model_id"], coll["dim"]) == ("pack-b", 512)
    samples = _rows(vault, t.samples)
    assert {s["model_id"] for s in samples} == {"pack-b"}
    after = _templates(vault, "c")
    assert sorted(after) == sorted(before)
    pipe = vault.pipeline("pack-b")
    for row in _crops(vault):
        sid = row["sample_id"]
        assert abs(float(after[sid] @ before[sid])) < 0.99  # another model's vector
        box = (row["box_x1"], row["box_y1"], row["box_x2"], row["box_y2"])
        again = embed_at(pipe, open_crop(vault.context, row), box).face.embedding
        np.testing.assert_allclose(after[sid], again, atol=1e-5)  # the crop re-embedded by pack-b
    info = vault.index_info("c")
    assert (info["count"], info["dim"], info["model_id"]) == (4, 512, "pack-b")

    # the original photo (and a new one) now find their person through pack-b
    top = _top(vault, "c", photos["dark0"])
    assert top[0][0] == "Dark" and all(name != "Grey" for name, _ in top)
    assert _top(vault, "c", photos["grey2"])[0][0] == "Grey"
    result = vault.search("c", photos["dark2"], purpose="after migration")
    assert result.model_id == "pack-b"
    vec_a = vault.pipeline("pack-a").analyze(vault.context.decode(photos["dark0"]).pixels)[0].embedding
    with pytest.raises(ModelMismatchError):
        vault.search_embedding("c", vec_a, model_id="pack-a", purpose="old vectors are refused")
    assert vault.verify(photos["dark0"], photos["dark2"], model="pack-b").same_person

    entry = vault.audit_entries(1, action="collection.migrate")[0]
    assert entry["collection"] == "c" and entry["seq"] == res["audit_seq"]
    assert {k: entry["details"][k] for k in ("from_model", "to_model", "samples")} == {
        "from_model": "pack-a",
        "to_model": "pack-b",
        "samples": 4,
    }
    # pack-b's non-commercial license acceptance is recorded in the vault's audit chain, as pack-a's was
    assert entry["details"]["license_acceptance"]["license_id"] == "test-only"
    created = vault.audit_entries(1, action="collection.create")[0]["details"]
    assert created["model_id"] == "pack-a" and created["license_acceptance"]["accepted_by"] == "tester"
    assert vault.verify_audit().ok and vault.doctor().ok

    # erasure and opt-out work on the migrated collection
    assert vault.erase_subject("c", "Dark")["crops_erased"] == 2
    assert all(name != "Dark" for name, _ in _top(vault, "c", photos["dark2"]))
    out = vault.optout(photos["grey2"], collection="c")
    assert [e["name"] for e in out["erased"]] == ["Grey"] and out["erased"][0]["crops_erased"] == 2
    assert _crops(vault) == [] and vault.doctor().ok


def test_migration_over_worker_processes(gallery, photos, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Worker processes re-embed what this process decrypted (keys stay here) and find the vault's
    installed packs from its home, not from the environment; progress reaches the total."""
    vault = gallery
    monkeypatch.setenv("FACEVAULT_HOME", str(vault.settings.home.parent / "elsewhere"))
    seen: list[tuple[int, int]] = []
    res = vault.migrate_collection("c", "pack-b", workers=2, progress=lambda d, n: seen.append((d, n)))
    assert (res["samples"], res["indexed"]) == (4, 4) and seen[-1] == (4, 4)
    after = _templates(vault, "c")
    pipe = vault.pipeline("pack-b")
    for row in _crops(vault):
        box = (row["box_x1"], row["box_y1"], row["box_x2"], row["box_y2"])
        again = embed_at(pipe, open_crop(vault.context, row), box).face.embedding
        np.testing.assert_allclose(after[row["sample_id"]], again, atol=1e-5)
    assert _top(vault, "c", photos["grey2"])[0][0] == "Grey"


def test_refusals_change_nothing(gallery, sources, packs, photos) -> None:  # type: ignore[no-untyped-def]
    vault = gallery
    for name in ("pack-raw", "pack-changed", "pack-unaccepted"):
        install_pack(sources[name], accept_license=True, root=packs)
    rec = packs / "pack-changed" / "w600k_r50.onnx"
    rec.write_bytes(rec.read_bytes()[:-1] + bytes([rec.read_bytes()[-1] ^ 0xFF]))
    (packs / "pack-unaccepted" / LICENSE_RECORD).unlink()
    register_installed_packs(packs)
    vault.create_collection("plain", model="pack-a")
    vault.add_subject("plain", "Dark", purpose="t", consent_text="yes")
    assert vault.enroll("plain", "Dark", [photos["dark0"]])[0].ok
    vault.create_collection("partial", model="pack-a")
    vault.add_subject("partial", "Dark", purpose="t", consent_text="yes")
    assert vault.enroll("partial", "Dark", [photos["dark0"]])[0].ok
    vault.set_keep_crops("partial", True)
    assert vault.enroll("partial", "Dark", [photos["dark1"]])[0].ok
    uncropped = next(s["id"] for s in _rows(vault, t.samples) if s["collection_id"] == 3)

    cases: list[tuple[str, str, type[Exception], str, str]] = [
        ("c", "no-such-pack", ModelError, "model_unavailable", "unknown model"),
        ("c", "pack-changed", IntegrityError, "integrity_error", "failed its check"),
        ("c", "pack-unaccepted", IntegrityError, "integrity_error", "not been accepted"),
        ("c", "pack-a", MigrationError, "same_model", "already uses pack-a"),
        ("c", "pack-raw", ConfigError, "config_error", "no score calibration"),
        ("plain", "pack-b", MigrationError, "crops_not_kept", "keeps no face crops"),
        ("partial", "pack-b", MigrationError, "crops_missing", "1 of 2 samples .* re-enroll or erase"),
    ]
    before = _snapshot(vault)
    for collection, pack, error, code, message in cases:
        with pytest.raises(error, match=message) as err:
            vault.migrate_collection(collection, pack)
        assert err.value.code == code, (collection, pack)
        assert _snapshot(vault) == before, (collection, pack)
    with pytest.raises(MigrationError) as err:
        vault.migrate_collection("partial", "pack-b")
    assert err.value.sample_ids == [uncropped] and err.value.to_dict()["details"] == {
        "sample_ids": [uncropped]
    }

    # two crops swapped between samples no longer open: the migration names them and changes nothing
    a, b = _crops(vault, "c")[:2]
    with vault.store.begin() as conn:
        for mine, theirs in ((a, b), (b, a)):
            conn.execute(
                update(t.sample_crops)
                .where(t.sample_crops.c.sample_id == mine["sample_id"])
                .values(image=theirs["image"])
            )
    before = _snapshot(vault)
    with pytest.raises(MigrationError, match=r"2 samples .* could not be re-embedded") as err:
        vault.migrate_collection("c", "pack-b")
    assert err.value.code == "reembed_failed"
    assert err.value.sample_ids == sorted([a["sample_id"], b["sample_id"]])
    assert _snapshot(vault) == before
    assert _top(vault, "c", photos["dark2"])[0][0] == "Dark" and vault.doctor().ok


def test_changes_made_while_migrating_are_never_mixed(gallery, photos, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An enrollment committed while the crops are re-embedded makes the migration refuse; a migration
    committed while an enrollment runs makes the enrollment refuse. No sleeps: the other party's step is
    run at the exact step, a named fault point (facevault.faults)."""
    vault = gallery

    def enroll_meanwhile() -> None:
        assert vault.enroll("c", "Dark", [photos["dark2"]])[0].ok

    with (
        faults.hooked("migrate:reembedded", enroll_meanwhile, once=True),
        pytest.raises(MigrationError, match="enrolled while") as err,
    ):
        vault.migrate_collection("c", "pack-b")
    assert err.value.code == "collection_changed" and len(err.value.sample_ids) == 1
    assert vault.get_collection("c")["model_id"] == "pack-a"
    assert {s["model_id"] for s in _rows(vault, t.samples)} == {"pack-a"} and vault.doctor().ok

    # The enrollment has read the collection and judged its photo; the migration commits before it does.
    with (
        faults.hooked("enroll:checked", lambda: vault.migrate_collection("c", "pack-b"), once=True),
        pytest.raises(ConflictError, match="moved to model pack-b") as err2,
    ):
        vault.enroll("c", "Grey", [photos["grey2"]])
    assert err2.value.code == "collection_changed"
    assert {s["model_id"] for s in _rows(vault, t.samples)} == {"pack-b"}
    assert len(_rows(vault, t.samples)) == 5 and vault.doctor().ok


def test_a_search_overtaken_by_a_migration_is_told_to_retry(gallery, photos, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A search that read the collection before another handle (another request, another process)
    migrated it gets ``collection_changed`` (retryable), never a failure to open the new templates; the
    next search works through the new pack."""
    vault = gallery
    other = facevault.open(str(vault.settings.home))
    migrated: list[Any] = []

    def migrate_after_the_shortlist() -> None:
        # pack-a's index gave the shortlist, and the collection moves on before the stored templates are read
        migrated.append(other.migrate_collection("c", "pack-b"))

    with (
        faults.hooked("search:shortlisted", migrate_after_the_shortlist, once=True),
        pytest.raises(ConflictError) as err,
    ):
        vault.search("c", photos["dark2"], purpose="overtaken")
    assert err.value.code == "collection_changed" and migrated
    other.close()
    result = vault.search("c", photos["dark2"], purpose="retried")
    assert result.model_id == "pack-b" and result.faces[0].candidates[0].name == "Dark"


# ---- crops leave with their samples; rotation re-encrypts them -----------------------------------------
def test_every_deletion_takes_the_crops(gallery, photos) -> None:  # type: ignore[no-untyped-def]
    vault = gallery
    receipt = vault.erase_subject("c", "Dark")
    assert receipt["crops_erased"] == 2 and len(_crops(vault)) == 2
    assert vault.optout(photos["grey2"], collection="c")["erased"][0]["crops_erased"] == 2
    assert _crops(vault) == []
    vault.add_subject("c", "Dark again", purpose="t", consent_text="yes")
    assert vault.enroll("c", "Dark again", [photos["dark0"]])[0].ok and len(_crops(vault)) == 1
    swept = vault.retention_sweep(utcnow() + timedelta(days=1096))
    assert [r["crops_erased"] for r in swept["erased"]] == [1] and _crops(vault) == []
    vault.add_subject("c", "Dark", purpose="t", consent_text="yes")
    assert vault.enroll("c", "Dark", [photos["dark1"]])[0].ok
    withdrawn = vault.withdraw_consent("c", "Dark")
    assert withdrawn["crops_erased"] == 1 and _crops(vault) == []
    vault.add_subject("c", "Dark", purpose="t", consent_text="yes")
    assert vault.enroll("c", "Dark", [photos["dark2"]])[0].ok
    assert vault.delete_collection("c")["crops"] == 1
    assert _crops(vault) == [] and _rows(vault, t.samples) == []
    assert vault.verify_audit().ok


def test_turning_keep_crops_off_deletes_them(gallery, photos) -> None:  # type: ignore[no-untyped-def]
    vault = gallery
    res = vault.set_keep_crops("c", False)
    assert res == {"collection": "c", "keep_crops": False, "crops_deleted": 4}
    assert _crops(vault) == [] and vault.get_collection("c")["keep_crops"] is False
    entry = vault.audit_entries(1)[0]
    assert entry["action"] == "collection.keep_crops"
    assert entry["details"] == {"keep_crops": False, "crops_deleted": 4}
    assert vault.enroll("c", "Dark", [photos["dark2"]])[0].ok and _crops(vault) == []
    with pytest.raises(MigrationError) as err:
        vault.migrate_collection("c", "pack-b")
    assert err.value.code == "crops_not_kept"
    assert vault.processing_record()["collections"][0]["keep_crops"] is False


def test_key_rotation_re_encrypts_crops(gallery, photos) -> None:  # type: ignore[no-untyped-def]
    vault = gallery
    plain = {r["sample_id"]: open_crop(vault.context, r) for r in _crops(vault)}
    old = vault.context.current_key()
    res = vault.rotate_keys()
    assert (res["samples"], res["crops"]) == (4, 4)
    assert list(vault.keys.template_keys) == [2]
    for r in _crops(vault):
        assert r["key_version"] == 2
        np.testing.assert_array_equal(open_crop(vault.context, r), plain[r["sample_id"]])
        with pytest.raises(WrongKeyError):
            crops.open_sealed(old, r["image"], r["collection_id"], r["sample_id"])
    assert vault.migrate_collection("c", "pack-b")["samples"] == 4
    assert _top(vault, "c", photos["grey2"])[0][0] == "Grey"


# ---- opt-outs made with the old pack ---------------------------------------------------------------------
def test_optout_recorded_with_the_old_pack_still_blocks(gallery, photos, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from facevault.service.batch import enroll_batch

    vault = gallery
    out = vault.optout(photos["dark0"], collection="c")
    assert [e["name"] for e in out["erased"]] == ["Dark"]
    res = vault.migrate_collection("c", "pack-b")
    assert res["optout_models"] == ["pack-a"] and res["samples"] == 2
    guard = optout_guard(vault.context, vault.get_collection("c"), vault.context.current_key())
    assert guard.own is None and [s.model_id for s in guard.foreign] == ["pack-a"]

    vault.add_subject("c", "Dark again", purpose="t", consent_text="yes")
    blocked = vault.enroll("c", "Dark again", [photos["dark1"]])[0]
    assert blocked.reason == "blocked_by_optout", blocked.message
    assert vault.enroll("c", "Grey", [photos["grey2"]])[0].ok  # everyone else still enrolls

    manifest = tmp_path / "batch.csv"
    manifest.write_text(f"collection,subject,image\nc,Dark again,{photos['dark2']}\n")
    summary = enroll_batch(vault, manifest, workers=1)
    assert (summary.enrolled, summary.rejected) == (0, 1)
    with vault.store.begin() as conn:
        reason = conn.execute(select(t.batch_rows.c.reason)).scalar_one()
    assert reason == "blocked_by_optout"

    # the pack that made the opt-out is gone: enrollment is refused, never done unchecked
    from facevault.models import registry as fm

    fm._factories.pop("pack-a")
    fm._loaded.pop("pack-a", None)
    with pytest.raises(ModelError, match="opt-outs recorded with model 'pack-a'"):
        vault.enroll("c", "Grey", [photos["grey0"]])


# ---- enroll-batch ------------------------------------------------------------------------------------------
def test_enroll_batch_stores_crops_where_kept(vault, packs, photos, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from facevault.service.batch import enroll_batch

    vault.create_collection("kept", model="pack-a", keep_crops=True)
    vault.create_collection("plain", model="pack-a")
    lines = ["collection,subject,purpose,consent_text,image"]
    for coll in ("kept", "plain"):
        lines += [f"{coll},Dark,t,yes,{photos[k]}" for k in ("dark0", "dark1")]
        lines += [f"{coll},Grey,t,yes,{photos['grey0']}"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    summary = enroll_batch(vault, manifest, workers=1)
    assert summary.enrolled == 6, summary
    kept_id = vault.get_collection("kept")["id"]
    kept = {s["id"]: s for s in _rows(vault, t.samples) if s["collection_id"] == kept_id}
    rows = _crops(vault)
    assert {r["sample_id"] for r in rows} == set(kept) and len(rows) == 3
    sources = {i["id"]: i["source"] for i in _rows(vault, t.images)}
    for r in rows:
        s = kept[r["sample_id"]]
        pixels = vault.context.decode(sources[s["image_id"]]).pixels
        box = (s["box_x1"], s["box_y1"], s["box_x2"], s["box_y2"])
        data = crops.open_sealed(vault.keys.key(r["key_version"]), r["image"], kept_id, s["id"])
        assert data == crops.make_crop(pixels, box).data
    assert vault.migrate_collection("kept", "pack-b")["samples"] == 3


# ---- crash between the store commit and the index rebuild ------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("point", ["migrate:before_commit", "migrate:db_committed"])
def test_kill_during_migration_leaves_old_or_new_state(gallery, photos, point: str) -> None:  # type: ignore[no-untyped-def]
    vault = gallery
    home = str(vault.settings.home)
    vault.close()
    proc = run_cli(home, "collection", "migrate", "c", "--to", "pack-b", crash_at=point)
    assert proc.returncode == -9, proc.stderr
    v = facevault.open(home)
    try:
        committed = point == "migrate:db_committed"
        assert v.get_collection("c")["model_id"] == ("pack-b" if committed else "pack-a")
        if committed:
            # the index on disk still holds pack-a's vectors: doctor sees it, the next use repairs it
            header = json.loads((v.settings.index_dir / "collection-1.json").read_text())
            assert header["model_id"] == "pack-a"
            assert not v.doctor().ok
        assert _top(v, "c", photos["dark2"])[0][0] == "Dark"
        assert _top(v, "c", photos["grey2"])[0][0] == "Grey"
        info = v.index_info("c")
        assert (info["model_id"], info["count"]) == (v.get_collection("c")["model_id"], 4)
        assert v.doctor().ok and v.verify_audit().ok
        assert len(v.audit_entries(0, action="collection.migrate")) == int(committed)
    finally:
        v.close()


# ---- interfaces ------------------------------------------------------------------------------------------
def test_cli_collection_commands(vault, packs, photos) -> None:  # type: ignore[no-untyped-def]
    from facevault.cli import app

    runner = CliRunner()

    def fvj(*args: str | Path, code: int = 0) -> Any:
        res = runner.invoke(app, [*(str(a) for a in args), "--json"])
        assert res.exit_code == code, (res.exit_code, res.output)
        return json.loads(res.stdout)

    made = fvj("collection", "create", "k", "--model", "pack-a", "--keep-crops")
    assert made == {"name": "k", "model_id": "pack-a", "dim": 512, "keep_crops": True, "detector": None}
    fvj("subject", "add", "k", "--name", "Dark", "--purpose", "t", "--consent-text", "yes")
    fvj("subject", "add", "k", "--name", "Grey", "--purpose", "t", "--consent-text", "yes")
    fvj("enroll", "k", "Dark", photos["dark0"], photos["dark1"])
    fvj("enroll", "k", "Grey", photos["grey0"])
    assert fvj("collection", "list")[0]["keep_crops"] is True

    moved = fvj("collection", "migrate", "k", "--to", "pack-b")
    assert set(moved) == {
        "collection",
        "from_model",
        "to_model",
        "dim",
        "samples",
        "located_by_fallback",
        "indexed",
        "optout_models",
        "audit_seq",
    }
    assert (moved["from_model"], moved["to_model"], moved["samples"], moved["indexed"]) == (
        "pack-a",
        "pack-b",
        3,
        3,
    )
    assert fvj("collection", "list")[0]["model_id"] == "pack-b"
    again = fvj("collection", "migrate", "k", "--to", "pack-b", code=5)
    assert again["error"]["code"] == "same_model"
    assert fvj("collection", "migrate", "k", "--to", "nope", code=9)["error"]["code"] == "model_unavailable"
    assert fvj("collection", "migrate", "nope", "--to", "pack-a", code=4)["error"]["code"] == (
        "collection_not_found"
    )

    assert fvj("collection", "set", "k", "--no-keep-crops") == {
        "collection": "k",
        "keep_crops": False,
        "crops_deleted": 3,
    }
    assert fvj("collection", "set", "k", code=2)["error"]["code"] == "config_error"
    fvj("collection", "set", "k", "--keep-crops")
    fvj("enroll", "k", "Grey", photos["grey1"])
    missing = fvj("collection", "migrate", "k", "--to", "pack-a", code=5)["error"]
    assert missing["code"] == "crops_missing" and len(missing["details"]["sample_ids"]) == 3
    assert "3 of 4 samples" in missing["message"]
    text = runner.invoke(app, ["collection", "migrate", "k", "--to", "pack-a"])
    assert text.exit_code == 5 and "error [crops_missing]" in text.output


@pytest.mark.anyio
async def test_api_collection_keep_crops(api_app, role_keys, packs) -> None:  # type: ignore[no-untyped-def]
    from .test_api_support import asgi_client, auth

    admin = auth(role_keys["admin"])
    async with asgi_client(api_app) as c:
        r = await c.post(
            "/api/v1/collections", json={"name": "k", "model": "pack-a", "keep_crops": True}, headers=admin
        )
        assert r.status_code == 201 and r.json()["keep_crops"] is True, r.text
        r = await c.post("/api/v1/collections", json={"name": "plain", "model": "pack-a"}, headers=admin)
        assert r.json()["keep_crops"] is False
        assert (await c.get("/api/v1/collections/k", headers=admin)).json()["keep_crops"] is True
        r = await c.put("/api/v1/collections/k/keep-crops", json={"keep_crops": False}, headers=admin)
        assert r.status_code == 200 and r.json() == {
            "collection": "k",
            "keep_crops": False,
            "crops_deleted": 0,
        }
        listed = (await c.get("/api/v1/collections", headers=admin)).json()
        assert [(x["name"], x["keep_crops"]) for x in listed] == [("k", False), ("plain", False)]
        r = await c.put(
            "/api/v1/collections/k/keep-crops", json={"keep_crops": True}, headers=auth(role_keys["enroller"])
        )
        assert r.status_code == 403


# ---- the default dlib pack on real faces ------------------------------------------------------------------
@pytest.mark.data
def test_dlib_crop_round_trip_finds_the_face_again(vault) -> None:  # type: ignore[no-untyped-def]
    """A real LFW face: the stored crop decrypts to the JPEG cut from the photo, dlib's detector finds the
    face in it again where the stored box says, and re-embedding it gives the enrolled vector back."""
    vault.create_collection("c", keep_crops=True)
    vault.add_subject("c", "Tony Blair", purpose="t", consent_text="yes")
    photo = lfw("Tony_Blair", 1)
    assert vault.enroll("c", "Tony Blair", [photo])[0].ok
    sample, row = _rows(vault, t.samples)[0], _crops(vault)[0]
    box = (sample["box_x1"], sample["box_y1"], sample["box_x2"], sample["box_y2"])
    data = crops.open_sealed(
        vault.keys.key(row["key_version"]), row["image"], row["collection_id"], sample["id"]
    )
    assert data == crops.make_crop(vault.context.decode(photo).pixels, box).data
    pixels = crops.decode_crop(data)
    assert max(pixels.shape[:2]) <= 320 and pixels.shape[:2] == (row["height"], row["width"])
    crop_box = (row["box_x1"], row["box_y1"], row["box_x2"], row["box_y2"])
    pipe = vault.pipeline("dlib-resnet-v1")
    faces = pipe.analyze(pixels, portrait=True)
    assert len(faces) == 1 and iou(faces[0].face.box, crop_box) > 0.5
    again = embed_at(pipe, pixels, crop_box)
    assert again.detected
    stored = _templates(vault, "c")[sample["id"]]
    assert float(stored @ again.face.embedding) > 0.99
