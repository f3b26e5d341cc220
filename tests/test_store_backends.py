"""The store on both databases: SQLite (the default) and PostgreSQL (FACEVAULT_TEST_PG, see
tests/pg_support.py). Migrations must produce exactly the tables of schema.py, and the service's main
use cases (consent, enrollment of real photos, search, erasure, audit chain, key rotation, doctor) must
behave the same on both."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text, update

import facevault
from facevault.audit_events import ConcurrencyProbe
from facevault.errors import ConfigError, NotFoundError
from facevault.store import Store
from facevault.store import schema as t
from facevault.store.schema import SCHEMA_VERSION

from .conftest import lfw
from .pg_support import fresh_database, pg_url  # noqa: F401  (fixture)

HEAD_REVISION = f"{SCHEMA_VERSION:04d}"  # the newest migration's id


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store backend in turn: an SQLite file outside the vault home, then a fresh PostgreSQL
    database on the test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'elsewhere' / 'store.db'}"
    else:
        yield from fresh_database()


@pytest.fixture
def db_vault(db_url: str, tmp_path: Path) -> Iterator[facevault.Vault]:
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    v = facevault.open(str(tmp_path / "vault"), create=True, db=db_url)
    yield v
    v.close()


# ---- migrations -------------------------------------------------------------------------------------
def test_migrations_build_exactly_the_schema(db_url: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    store = Store(db_url)
    try:
        store.create_schema()
        store.create_schema()  # idempotent: already at head
        assert store.schema_revision() == HEAD_REVISION
        with store.engine.connect() as conn:
            diffs = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), t.metadata
            )
            assert diffs == []
            tables = set(inspect(conn).get_table_names())
        assert set(t.metadata.tables) <= tables
    finally:
        store.close()


def test_vault_made_before_migrations_is_stamped_and_upgraded(db_url: str, tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    store = Store(db_url)
    try:
        # What create_schema made before Alembic: revision 0001's tables, and no alembic_version.
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(t.__file__).parent / "migrations"))
        with store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(text("DROP TABLE alembic_version"))
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO collections (name, model_id, dim, created_at, retention_days) "
                    "VALUES ('old', 'dlib-resnet-v1', 128, CURRENT_TIMESTAMP, 1095)"
                )
            )
        store.create_schema()
        assert store.schema_revision() == HEAD_REVISION
        insp = inspect(store.engine)
        assert insp.has_table("batch_rows") and insp.has_table("sample_crops")
        with store.begin() as conn:  # collections made before keep_crops existed keep no crops
            assert store.get_collection(conn, "old")["keep_crops"] is False
    finally:
        store.close()


def test_vault_of_the_previous_schema_is_refused_until_init_upgrades_it(db_url: str, tmp_path: Path) -> None:
    """0003 (face crops) downgraded to 0002 and back: a vault at 0002 is refused with a clear message
    rather than failing on a missing column, and `init` upgrades it in place."""
    from alembic import command
    from alembic.config import Config

    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    home = str(tmp_path / "vault")
    with facevault.open(home, create=True, db=db_url) as v:
        v.create_collection("c", keep_crops=True)
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(t.__file__).parent / "migrations"))
        with v.store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
            conn.execute(update(t.meta).where(t.meta.c.key == "schema_version").values(value="2"))
        assert not inspect(v.store.engine).has_table("sample_crops")
    with pytest.raises(ConfigError, match="facevault init") as err:
        facevault.open(home)
    assert err.value.code == "schema_outdated"
    facevault.open(home, create=True).close()  # what `facevault init` does
    with facevault.open(home) as v:
        assert v.store.schema_revision() == HEAD_REVISION
        assert v.get_collection("c")["keep_crops"] is False  # crops were never kept before 0003


# ---- remembering the database -------------------------------------------------------------------------
def test_vault_remembers_its_database(db_vault: facevault.Vault, db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "vault"
    db_vault.create_collection("c")
    remembered = (home / "store.url").read_text().strip()
    assert "@" not in remembered or ":" not in remembered.split("@")[0].split("//")[1]  # no password
    assert not (home / "facevault.db").exists()
    with facevault.open(str(home)) as again:  # no --db: the remembered store
        assert [c["name"] for c in again.list_collections()] == ["c"]
    with facevault.open(str(home), db=db_url) as same:
        assert same.store.display_url == again.store.display_url
    with pytest.raises(ConfigError):
        facevault.open(str(home), db=f"sqlite:///{tmp_path / 'other.db'}")


def test_missing_vault_is_reported(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        facevault.open(str(tmp_path / "nothing-here"))
    if db_url.startswith("sqlite"):
        with pytest.raises(NotFoundError):
            facevault.open(str(tmp_path / "nothing-here"), db=db_url)
        assert not (tmp_path / "elsewhere" / "store.db").exists()  # no empty file left behind
    else:
        with pytest.raises(facevault.FaceVaultError):  # no keys there, and an empty database
            facevault.open(str(tmp_path / "nothing-here"), db=db_url)


# ---- the service on both databases ----------------------------------------------------------------------
def _count(vault: facevault.Vault, table, *where) -> int:  # type: ignore[no-untyped-def]
    with vault.store.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@pytest.mark.data
def test_service_flow(db_vault: facevault.Vault) -> None:
    v = db_vault
    v.create_collection("people", purpose="door access", legal_basis="explicit consent", keep_crops=True)
    v.add_subject("people", "Tony Blair", purpose="door access", consent_text="signed", external_id="TB")
    v.add_subject("people", "Colin Powell", purpose="door access", consent_text="signed")
    tony = v.enroll("people", "TB", [lfw("Tony_Blair", i) for i in (1, 2, 3)])
    assert [o.status for o in tony] == ["enrolled"] * 3, [o.message for o in tony]
    assert all(
        o.ok for o in v.enroll("people", "Colin Powell", [lfw("Colin_Powell", 1), lfw("Colin_Powell", 2)])
    )
    dup = v.enroll("people", "TB", [lfw("Tony_Blair", 1)])
    assert dup[0].reason == "duplicate_image"

    res = v.search("people", lfw("Tony_Blair", 5), purpose="test")
    assert res.faces[0].candidates[0].name == "Tony Blair"
    res = v.search("people", lfw("Colin_Powell", 7), purpose="test")
    assert res.faces[0].candidates[0].name == "Colin Powell"
    assert v.doctor().ok
    assert _count(v, t.sample_crops) == 5

    # key rotation re-protects every template and re-encrypts every crop; search still finds the same people
    rotated = v.rotate_keys()
    assert (rotated["samples"], rotated["crops"]) == (5, 5)
    assert _count(v, t.sample_crops, t.sample_crops.c.key_version == rotated["to_version"]) == 5
    assert v.search("people", lfw("Tony_Blair", 5), purpose="after rotation").faces[0].candidates[0].name == (
        "Tony Blair"
    )

    receipt = v.erase_subject("people", "TB")
    assert receipt["samples_erased"] == 3 and receipt["images_erased"] == 3 and receipt["crops_erased"] == 3
    assert len(receipt["consent_evidence_sha256"]) == 64
    assert _count(v, t.samples) == 2 and _count(v, t.sample_crops) == 2
    assert _count(v, t.subjects, t.subjects.c.external_id == "TB") == 0
    assert _count(v, t.images, t.images.c.sha256.in_(receipt["image_sha256"])) == 0
    assert _count(v, t.consents) == 1
    after = v.search("people", lfw("Tony_Blair", 5), purpose="after erasure", threshold=-1)
    assert all(c.name != "Tony Blair" for f in after.faces for c in f.candidates)
    report = v.doctor()
    assert report.ok and report.audit["ok"], report

    status = v.verify_audit()
    assert status.ok and status.entries >= 8
    # someone with database access but not the audit key edits an entry: detected, and where
    with v.store.begin() as conn:
        conn.execute(update(t.audit_log).where(t.audit_log.c.seq == 3).values(details='{"edited":true}'))
    broken = v.verify_audit()
    assert not broken.ok and broken.first_bad_seq == 3
    assert not v.doctor().ok


@pytest.fixture
def two_packs(db_vault: facevault.Vault, tmp_path: Path) -> Iterator[None]:
    """Synthetic packs pack-a and pack-b installed for this vault (registry restored afterwards)."""
    from facevault.models.packs import install_pack
    from facevault.models.registry import register_installed_packs

    from .pack_support import pack_folder, restore_registry

    restore = restore_registry()
    next(restore)
    root = db_vault.settings.home / "models"
    for name, seed in (("pack-a", 1), ("pack-b", 2)):
        install_pack(pack_folder(tmp_path / "src", name, seed), accept_license=True, root=root)
    register_installed_packs(root)
    yield
    next(restore, None)


def test_crops_and_collection_migration(db_vault: facevault.Vault, two_packs: None, tmp_path: Path) -> None:
    """keep_crops, crop storage and deletion, and a migration's one transaction on each database."""
    from .conftest import write_image
    from .pack_support import face_image

    v = db_vault
    photos = [write_image(tmp_path / f"{look}.png", face_image(look), fmt="PNG") for look in ("dark", "grey")]
    v.create_collection("c", model="pack-a", keep_crops=True)
    assert v.get_collection("c")["keep_crops"] is True
    for name, photo in zip(("Dark", "Grey"), photos, strict=True):
        v.add_subject("c", name, purpose="t", consent_text="yes")
        assert v.enroll("c", name, [photo])[0].ok
    assert _count(v, t.sample_crops) == 2
    res = v.migrate_collection("c", "pack-b")
    assert (res["samples"], res["indexed"]) == (2, 2)
    assert _count(v, t.samples, t.samples.c.model_id == "pack-b") == 2
    assert v.get_collection("c")["model_id"] == "pack-b"
    res = v.search("c", photos[0], purpose="after migration")
    assert res.faces[0].candidates[0].name == "Dark"
    assert v.erase_subject("c", "Dark")["crops_erased"] == 1
    assert v.set_keep_crops("c", False)["crops_deleted"] == 1
    assert _count(v, t.sample_crops) == 0 and v.get_collection("c")["keep_crops"] is False
    assert v.doctor().ok and v.verify_audit().ok


def test_audit_appends_from_many_threads_keep_one_chain(db_vault: facevault.Vault) -> None:
    """Concurrent writers on separate connections: the chain must stay linear (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: the transaction-level advisory lock)."""
    v = db_vault
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with v.store.begin() as conn:
                    v.context.log(conn, ConcurrencyProbe(data={"writer": n, "i": i}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    status = v.verify_audit()
    assert status.ok, status
    assert _count(v, t.audit_log, t.audit_log.c.action == "test.concurrent") == 60


def test_erasure_vacuums_on_postgresql(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    """After an erase, the touched tables are VACUUMed: no dead row versions of the subject remain."""
    with facevault.open(str(tmp_path / "vault"), create=True, db=pg_url) as v:
        v.create_collection("c")
        for i in range(5):
            v.add_subject("c", f"p{i}", purpose="test", consent_text="yes")
        v.erase_subject("c", "p0")
        with v.store.engine.connect() as conn:
            vacuumed = conn.execute(
                text(
                    "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL"
                    " AND relname IN ('subjects', 'consents', 'samples', 'images')"
                )
            ).all()
        assert len(vacuumed) == 4
        assert v.verify_audit().ok
