"""A library's vectors on disk between processes (service/library_snapshot.py), on real photos: a new
process uses them instead of rebuilding and answers the same; they are never used once stale; and, since
they hold protected templates, an erasure (also one killed between its commit and removing the file) and
a key rotation leave none of an erased face's vector on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import facevault
from facevault.service import library_cluster, library_snapshot

from .conftest import lfw

pytestmark = pytest.mark.data
PEOPLE = {"Colin_Powell": 4, "Tony_Blair": 4, "Hugo_Chavez": 3}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("snap")
    photos = root / "photos"
    photos.mkdir()
    for name, n in PEOPLE.items():
        for i in range(1, n + 1):
            shutil.copy(lfw(name, i), photos / f"{name}_{i}.jpg")
    os.environ["FACEVAULT_LIBRARY_SNAPSHOT_FACES"] = "1"  # this small library keeps one
    try:
        v = facevault.open(str(root / "home"), create=True)
        v.libraries.create_library("fam", purpose="family album", basis="household")
        v.libraries.library_add("fam", [str(photos)], workers=1)
        v.close()
    finally:
        del os.environ["FACEVAULT_LIBRARY_SNAPSHOT_FACES"]
    return root


@pytest.fixture
def home(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACEVAULT_LIBRARY_SNAPSHOT_FACES", "1")
    shutil.copytree(built / "home", tmp_path / "home")
    library_cluster._cache.clear()  # as a new process: nothing in memory
    return tmp_path / "home"


def _snapshot(v) -> Path:  # type: ignore[no-untyped-def]
    return library_snapshot.path_of(v.context, v.libraries.get_library("fam")["id"])


def _vector_bytes(v) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The protected vectors of the library as they sit in memory (and in the snapshot's index)."""
    lib = v.libraries.get_library("fam")
    with v.context.read() as conn:
        ids = [r[0] for r in v.context.store.library_face_rows(conn, lib["id"])]
        lv = library_cluster.library_vectors(v.context, v.context.store.get_library(conn, "fam"), conn, ids)
    return [row.astype("<f4").tobytes()[:128] for row in lv.vectors]


def _person_of(v, identity: str) -> int:  # type: ignore[no-untyped-def]
    """The person holding most of ``identity``'s photos."""
    best = max(
        v.libraries.library_people("fam"),
        key=lambda p: sum(
            Path(f["photo"]).name.startswith(identity)
            for f in v.libraries.library_person("fam", p["person"])["faces_list"]
        ),
    )
    return int(best["person"])


def _files_with(home: Path, needles: list[bytes]) -> list[str]:
    return [p.name for p in home.rglob("*") if p.is_file() for n in needles if n in p.read_bytes()]


def test_an_add_leaves_a_snapshot_that_a_new_process_uses_and_answers_the_same(home: Path) -> None:
    with facevault.open(str(home)) as v:
        snap = _snapshot(v)
        assert snap.is_file()  # written by the add, after its commit
        probe = str(lfw("Tony_Blair", 6))
        from_snapshot = v.libraries.library_search("fam", probe, purpose="test")
        loaded = library_cluster._cache[(v.context.store.url, v.libraries.get_library("fam")["id"])]
        snap_vectors = loaded.vectors.copy()
        assert snap.is_file()  # used, so not deleted as stale
    # the same vault without the file: everything rebuilt from the store
    snap.unlink()
    library_cluster._cache.clear()
    with facevault.open(str(home)) as v:
        rebuilt = v.libraries.library_search("fam", probe, purpose="test")
        again = library_cluster._cache[(v.context.store.url, v.libraries.get_library("fam")["id"])]
        assert np.allclose(again.vectors, snap_vectors, atol=1e-6)
    strip = lambda r: [[(m["photo"], m["box"]) for m in f["matches"]] for f in r["faces"]]  # noqa: E731
    assert strip(from_snapshot) == strip(rebuilt) and strip(rebuilt)[0]


def test_a_stale_or_damaged_snapshot_is_never_used_and_is_removed(home: Path) -> None:
    with facevault.open(str(home)) as v:
        snap = _snapshot(v)
        lib = v.libraries.get_library("fam")
        with v.context.read() as conn:
            ids = np.asarray([r[0] for r in v.context.store.library_face_rows(conn, lib["id"])])
            version = v.context.current_key(conn).version
            full = dict(v.context.store.get_library(conn, "fam"))
        assert library_snapshot.load(v.context, full, ids[1:], version) is None  # other faces now
        assert not snap.is_file()
    library_cluster._cache.clear()
    with facevault.open(str(home)) as v:  # rebuilt by the next search
        v.libraries.library_search("fam", str(lfw("Tony_Blair", 6)), purpose="test")
        assert not snap.is_file()  # searches never write it; the next add does
        snap.write_bytes(b"PK\x03\x04 not a snapshot")
        library_cluster._cache.clear()
        res = v.libraries.library_search("fam", str(lfw("Tony_Blair", 6)), purpose="test")
        assert res["faces"][0]["matches"] and not snap.is_file()


def test_erasing_a_person_removes_the_snapshot_and_every_erased_vector(home: Path) -> None:
    with facevault.open(str(home)) as v:
        before = _vector_bytes(v)
        assert _files_with(home, before[:3])  # the vectors are on disk, in the snapshot
        number = _person_of(v, "Hugo_Chavez")
        v.libraries.library_erase_person("fam", number)
        assert not _snapshot(v).exists()
        after = set(_vector_bytes(v))
    erased = [b for b in before if b not in after]
    assert len(erased) >= 2
    assert _files_with(home, erased) == []


CHILD = """
import sys, facevault
v = facevault.open(sys.argv[1])
v.libraries.library_erase_person("fam", int(sys.argv[2]))
"""


def test_an_erasure_killed_after_its_commit_leaves_no_stale_snapshot_past_the_next_open(home: Path) -> None:
    with facevault.open(str(home)) as v:
        before = _vector_bytes(v)
        person = _person_of(v, "Colin_Powell")
        snap = _snapshot(v)
    assert snap.is_file()
    env = {**os.environ, "FACEVAULT_CRASH_AT": "library_erase:committed"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(home), str(person)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert snap.is_file()  # the kill came between the commit and removing the file
    library_cluster._cache.clear()
    with facevault.open(str(home)) as v:  # the open removes what the erasure could not
        assert not snap.exists()
        after = set(_vector_bytes(v))
    erased = [b for b in before if b not in after]
    assert erased and _files_with(home, erased) == []


def test_a_key_rotation_removes_the_snapshot_in_the_old_space(home: Path) -> None:
    with facevault.open(str(home)) as v:
        old = _vector_bytes(v)
        snap = _snapshot(v)
        assert snap.is_file()
        v.rotate_keys()
        assert not snap.exists()
        assert _files_with(home, old[:5]) == []


def test_a_later_add_writes_only_a_delta_that_the_next_process_adds_to_the_base(
    home: Path, tmp_path: Path
) -> None:
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(lfw("Tony_Blair", 7), more / "Tony_Blair_7.jpg")
    with facevault.open(str(home)) as v:
        base = _snapshot(v)
        delta = library_snapshot.delta_of(v.context, v.libraries.get_library("fam")["id"])
        base_bytes = base.read_bytes()
        assert not delta.exists()
        added = v.libraries.library_add("fam", [str(more)], workers=1)
        assert added["faces"] >= 1
        assert base.read_bytes() == base_bytes and delta.is_file()  # the base is not written again
        in_memory = _vector_bytes(v)
    library_cluster._cache.clear()
    with facevault.open(str(home)) as v:  # a new process: base + delta, nothing rebuilt, the same vectors
        assert _vector_bytes(v) == in_memory and delta.is_file() and base.is_file()
        res = v.libraries.library_search("fam", str(lfw("Tony_Blair", 8)), purpose="test")
        assert "Tony_Blair_7.jpg" in {Path(m["photo"]).name for m in res["faces"][0]["matches"]}
    base.unlink()  # a delta without its base holds vectors nobody uses: the next open deletes it
    library_cluster._cache.clear()
    with facevault.open(str(home)):
        assert not delta.exists()
