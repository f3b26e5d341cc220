"""Backend conformance: one suite, run against every kind of the embedded FAISS index (thresholds forced
small so each kind is live on a few thousand vectors), against Milvus Lite, and against a real Milvus
standalone server with the index types a cluster uses (HNSW, IVF_SQ8, IVF_PQ) when
FACEVAULT_TEST_MILVUS_URI names one (tests/milvus_server/run.sh starts one in a loopback-only network
namespace and runs these tests there with ``-k milvus_server``).

Plus backend-specific checks: automatic kind switching, HNSW compaction, erasure of on-disk rows,
atomic saves, and Milvus Lite listening on loopback only."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facevault.errors import ConfigError, ModelMismatchError
from facevault.index import FaissIndex, IndexPolicy, VectorIndex, discard_index, open_index

DIM = 32
N = 3000
MODEL = "test-model"
# Small IVF-PQ training so the suite stays fast.
FAST_IVF = {"opq_iter": 4, "min_ivfpq_train": 1000}
FAISS_KINDS = {
    "flat": {},
    "hnsw": {"kind": "hnsw"},
    "ivfpq": {"kind": "ivfpq", **FAST_IVF},
    "auto": {"hnsw_at": 500, "ivfpq_at": 2000, **FAST_IVF},
}
_names = itertools.count()
SERVER_URI = os.environ.get("FACEVAULT_TEST_MILVUS_URI")
# Build options small enough for N vectors (IVF needs several training points per list).
SERVER_KINDS = {
    "milvus_server_hnsw": "index=HNSW&M=16&ef_construction=100&ef=64",
    "milvus_server_ivf_sq8": "index=IVF_SQ8&nlist=32&nprobe=16",
    "milvus_server_ivf_pq": "index=IVF_PQ&nlist=32&nprobe=16&pq_m=8",
}
_no_server = pytest.mark.skipif(
    not SERVER_URI, reason="no Milvus server: FACEVAULT_TEST_MILVUS_URI is set by tests/milvus_server/run.sh"
)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    vecs = unit(rng.standard_normal((N, DIM)))
    ids = np.arange(N, dtype=np.int64) * 3 + 11  # sample ids are not row numbers
    queries = unit(rng.standard_normal((50, DIM)))
    return ids, vecs, queries


Factory = Callable[..., VectorIndex]


@pytest.fixture(scope="module")
def milvus_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    return tmp_path_factory.mktemp("milvus") / "vault.db"


@pytest.fixture(
    params=[*FAISS_KINDS, "milvus-lite", *(pytest.param(k, marks=_no_server) for k in SERVER_KINDS)]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Factory]:
    """(name, factory(dim=DIM, model_id=MODEL) -> a fresh handle on the same stored index)."""
    name = request.param
    path = tmp_path / f"collection-{os.getpid()}_{next(_names)}.faiss"
    if name == "milvus-lite" or name in SERVER_KINDS:
        if name in SERVER_KINDS:
            pytest.importorskip("pymilvus")
            spec = f"{SERVER_URI}?{SERVER_KINDS[name]}"
        else:
            spec = f"milvus://{request.getfixturevalue('milvus_db')}"

        def make(dim: int = DIM, model_id: str = MODEL) -> VectorIndex:
            return open_index(spec, path, dim, model_id)

        yield name, make
        make().destroy()
        return

    def make_faiss(dim: int = DIM, model_id: str = MODEL) -> VectorIndex:
        return FaissIndex(path, dim, model_id, **FAISS_KINDS[name])

    yield name, make_faiss


def filled(make: Factory, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> VectorIndex:
    ids, vecs, _ = data
    idx = make()
    for part in np.array_split(np.arange(N), 3):  # incremental adds
        idx.add(ids[part], vecs[part])
    return idx


def exact_top(vecs: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vecs.T
    return ids[np.argsort(-scores, axis=1)[:, :k]]


def expected_kind(name: str) -> str | None:
    return {"flat": "flat", "hnsw": "hnsw", "ivfpq": "ivfpq", "auto": "ivfpq"}.get(name)


# ---- conformance ---------------------------------------------------------------------------------------


def test_add_len_ids_and_exact_scores(backend: tuple[str, Factory], data) -> None:
    name, make = backend
    ids, vecs, _ = data
    idx = filled(make, data)
    idx.save()
    assert len(idx) == N
    assert sorted(idx.ids().tolist()) == sorted(ids.tolist())
    if expected_kind(name):
        assert idx.info()["kind"] == expected_kind(name)
    scores, found = idx.search(vecs[:100], 5)
    assert scores.shape == found.shape == (100, 5)
    assert found.dtype == np.int64
    assert (found[:, 0] == ids[:100]).mean() >= 0.98  # each vector finds itself
    assert np.all(np.diff(scores, axis=1) <= 1e-5)  # best first
    # scores are exact inner products of the returned ids (re-ranked for approximate kinds)
    row_of = {int(i): r for r, i in enumerate(ids)}
    for q in range(0, 100, 17):
        for s, i in zip(scores[q], found[q], strict=True):
            assert s == pytest.approx(float(vecs[row_of[int(i)]] @ vecs[q]), abs=1e-4)


def test_recall_against_exact(backend: tuple[str, Factory], data) -> None:
    _, make = backend
    ids, vecs, queries = data
    idx = filled(make, data)
    idx.save()
    if hasattr(idx, "wait_built"):  # a Milvus server builds its index in the background after a flush
        assert idx.wait_built(timeout=120)["index_type"] == idx.info()["index_type"]
    _, found = idx.search(queries, 10)
    truth = exact_top(vecs, ids, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.9


def test_missing_slots_are_minus_one(backend: tuple[str, Factory], data) -> None:
    _, make = backend
    ids, vecs, queries = data
    idx = make()
    _, found = idx.search(queries[:3], 4)
    assert found.shape == (3, 4) and (found == -1).all()
    idx.add(ids[:2], vecs[:2])
    idx.save()
    _, found = idx.search(queries[:3], 4)
    assert found.shape == (3, 4)
    assert (found[:, :2] >= 0).all() and (found[:, 2:] == -1).all()
    assert idx.search(queries[:3], 0)[1].shape == (3, 0)


def test_remove(backend: tuple[str, Factory], data) -> None:
    _, make = backend
    ids, vecs, _ = data
    idx = filled(make, data)
    gone = ids[:100]
    assert idx.remove(np.concatenate([gone, [10**12]])) == 100  # absent ids are not counted
    assert idx.remove(gone[:10]) == 0
    idx.save()
    assert len(idx) == N - 100
    assert not set(gone.tolist()) & set(idx.ids().tolist())
    _, found = idx.search(vecs[:100], 10)
    assert not set(gone.tolist()) & set(found.reshape(-1).tolist())
    _, found = idx.search(vecs[100:200], 1)
    assert (found[:, 0] == ids[100:200]).mean() >= 0.98
    assert idx.remove(np.zeros(0, np.int64)) == 0


def test_persistence_reload(backend: tuple[str, Factory], data) -> None:
    _, make = backend
    ids, vecs, queries = data
    idx = filled(make, data)
    idx.remove(ids[:50])
    idx.save()
    before = idx.search(queries, 10)
    again = make()
    assert len(again) == N - 50
    assert sorted(again.ids().tolist()) == sorted(ids[50:].tolist())
    after = again.search(queries, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], atol=1e-5)
    # changes after a reload keep working and persist too
    again.add(ids[:50], vecs[:50])
    again.save()
    assert len(make()) == N


def test_reset_and_destroy(backend: tuple[str, Factory], data) -> None:
    _, make = backend
    ids, vecs, queries = data
    idx = filled(make, data)
    idx.save()
    idx.reset()
    assert len(idx) == 0 and len(idx.ids()) == 0
    assert (idx.search(queries, 3)[1] == -1).all()
    idx.add(ids[:10], vecs[:10])
    idx.save()
    assert len(make()) == 10
    idx.destroy()
    if isinstance(idx, FaissIndex):
        assert not idx.path.exists() and not idx.header_path.exists()
        assert not list(idx.path.parent.glob(idx.path.stem + "*"))
    assert len(make()) == 0


def test_model_and_dimension_mismatch_refused(backend: tuple[str, Factory], data) -> None:
    _, make = backend
    ids, vecs, _ = data
    idx = make()
    idx.add(ids[:10], vecs[:10])
    idx.save()
    with pytest.raises(ModelMismatchError):
        make(model_id="another-model")
    with pytest.raises(ModelMismatchError):
        make(dim=DIM * 2)
    with pytest.raises(ModelMismatchError):
        idx.add(ids[:2], np.ones((2, DIM + 3), np.float32))


# ---- FAISS specifics ---------------------------------------------------------------------------------


def test_kind_follows_size_with_hysteresis(tmp_path: Path, data) -> None:
    ids, vecs, _ = data
    idx = FaissIndex(tmp_path / "c.faiss", DIM, MODEL, hnsw_at=600, ivfpq_at=2000, **FAST_IVF)
    seen = []
    for start in range(0, N, 500):
        idx.add(ids[start : start + 500], vecs[start : start + 500])
        idx.save()
        seen.append(idx.kind)
    assert seen == ["flat", "hnsw", "hnsw", "ivfpq", "ivfpq", "ivfpq"]
    idx.remove(ids[:1500])  # 1500 left: under ivfpq_at but not under half of it
    idx.save()
    assert idx.kind == "ivfpq"
    idx.remove(ids[1500:2200])  # 800 left: below 1000
    idx.save()
    assert idx.kind == "hnsw" and len(idx) == 800
    _, found = idx.search(vecs[2200:2300], 1)
    assert (found[:, 0] == ids[2200:2300]).mean() >= 0.98


def test_hnsw_deletes_are_filtered_then_compacted(tmp_path: Path, data) -> None:
    ids, vecs, _ = data
    idx = FaissIndex(tmp_path / "h.faiss", DIM, MODEL, kind="hnsw", compact_ratio=0.2)
    idx.add(ids, vecs)
    idx.save()  # kinds switch lazily, at the next save or search
    idx.remove(ids[:300])  # 10%: filtered, not compacted
    assert idx.info()["params"]["deleted"] == 300
    idx.remove(ids[300:700])  # 23%: compacted
    assert idx.info()["params"]["deleted"] == 0
    assert len(idx) == N - 700
    _, found = idx.search(vecs[:700], 3)
    assert not set(ids[:700].tolist()) & set(found.reshape(-1).tolist())


def test_ivfpq_keeps_codes_in_ram_vectors_on_disk_and_erases(tmp_path: Path, data) -> None:
    ids, vecs, _ = data
    idx = FaissIndex(tmp_path / "v.faiss", DIM, MODEL, kind="ivfpq", **FAST_IVF)
    idx.add(ids, vecs)
    idx.save()
    info = idx.info()
    assert info["kind"] == "ivfpq"
    assert info["ram_bytes_per_vector"] < 4 * DIM + 8  # less than the float vectors themselves
    vec_file = tmp_path / info["params"]["vectors_file"]
    rows = np.fromfile(vec_file, dtype=np.float32).reshape(-1, DIM)
    np.testing.assert_allclose(rows[:N], vecs)
    idx.remove(ids[:5])
    rows = np.fromfile(vec_file, dtype=np.float32).reshape(-1, DIM)
    assert not rows[:5].any()  # an erased face leaves no vector behind
    assert rows[5:N].any(axis=1).all()


def test_tune_is_saved_and_changes_search(tmp_path: Path, data) -> None:
    ids, vecs, queries = data
    path = tmp_path / "t.faiss"
    idx = FaissIndex(path, DIM, MODEL, kind="ivfpq", **FAST_IVF)
    idx.add(ids, vecs)
    idx.tune(nprobe=1, rerank=1, min_shortlist=10)
    idx.save()
    again = FaissIndex(path, DIM, MODEL, kind="ivfpq", **FAST_IVF)
    assert again.policy.nprobe == 1
    truth = exact_top(vecs, ids, queries, 10)

    def recall() -> float:
        found = again.search(queries, 10)[1]
        return float(
            np.mean([len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True)])
        )

    low = recall()
    again.tune(nprobe=64, rerank=8, min_shortlist=128)
    assert recall() > low
    with pytest.raises(ConfigError):
        again.tune(no_such_setting=3)


def test_thresholds_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data) -> None:
    ids, vecs, _ = data
    monkeypatch.setenv("FACEVAULT_INDEX_HNSW_AT", "100")
    assert IndexPolicy.from_env().hnsw_at == 100
    idx = FaissIndex(tmp_path / "e.faiss", DIM, MODEL)
    idx.add(ids[:200], vecs[:200])
    idx.save()
    assert idx.kind == "hnsw"


def test_legacy_flat_file_loads(tmp_path: Path, data) -> None:
    import json

    import faiss

    ids, vecs, _ = data
    old = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    old.add_with_ids(vecs[:20], ids[:20])
    faiss.write_index(old, str(tmp_path / "l.faiss"))
    (tmp_path / "l.json").write_text(json.dumps({"model_id": MODEL, "dim": DIM, "kind": "flat-ip"}))
    idx = FaissIndex(tmp_path / "l.faiss", DIM, MODEL)
    assert idx.kind == "flat" and len(idx) == 20


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_failed_save_leaves_previous_snapshot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data, kind: str
) -> None:
    import os

    ids, vecs, _ = data
    path = tmp_path / "a.faiss"
    idx = FaissIndex(path, DIM, MODEL, kind=kind, **FAST_IVF)
    idx.add(ids[:2000], vecs[:2000])
    idx.save()
    idx.add(ids[2000:], vecs[2000:])
    idx.remove(ids[:10])

    def crash(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        idx.save()
    monkeypatch.undo()
    again = FaissIndex(path, DIM, MODEL, kind=kind, **FAST_IVF)
    assert len(again) == 2000  # the previous snapshot, whole
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    if kind == "ivfpq":
        # erasure is not undone by the crash: the removed faces' rows stay zeroed, so they score 0
        scores, found = again.search(vecs[:10], 1)
        assert not (found[:, 0] == ids[:10]).any() or np.allclose(scores[found[:, 0] == ids[:10]], 0)


def test_unreadable_snapshot_is_an_integrity_error(tmp_path: Path) -> None:
    from facevault.errors import IntegrityError

    (tmp_path / "x.faiss").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(IntegrityError):
        FaissIndex(tmp_path / "x.faiss", DIM, MODEL)


def test_discard_index(backend: tuple[str, Factory], data, tmp_path: Path) -> None:
    _, make = backend
    idx = filled(make, data)
    idx.save()
    if isinstance(idx, FaissIndex):
        discard_index("faiss", idx.path)
        assert not list(idx.path.parent.glob(idx.path.stem + "*"))
    else:
        # the collection is named after the index path's stem
        discard_index(idx.url, tmp_path / (idx.name.removeprefix("facevault_") + ".faiss"))
    assert len(make()) == 0


def test_open_index_specs(tmp_path: Path) -> None:
    assert isinstance(open_index(None, tmp_path / "a.faiss", DIM, MODEL), FaissIndex)
    assert open_index("faiss:hnsw", tmp_path / "b.faiss", DIM, MODEL).policy.kind == "hnsw"
    with pytest.raises(ConfigError):
        open_index("redis://x", tmp_path / "c.faiss", DIM, MODEL)


# ---- Milvus Lite specifics ------------------------------------------------------------------------------


def _listening_sockets() -> dict[int, str]:
    """inode -> local address of every listening TCP socket on the machine."""
    out: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A":  # LISTEN
                out[int(parts[9])] = parts[1]
    return out


def test_milvus_lite_listens_on_loopback_only(milvus_db: Path, tmp_path: Path) -> None:
    import os

    idx = open_index(f"milvus://{milvus_db}", tmp_path / "collection-loop.faiss", DIM, MODEL)
    try:
        mine = set()
        for fd in Path("/proc/self/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                mine.add(int(target[8:-1]))
        ours = {inode: addr for inode, addr in _listening_sockets().items() if inode in mine}
        assert ours, "Milvus Lite should be listening on some port of this process"
        # 127.0.0.1, ::1, ::ffff:127.0.0.1
        loopback = ("0100007F:", "00000000000000000000000001000000:", "0000000000000000FFFF00000100007F:")
        assert all(addr.startswith(loopback) for addr in ours.values()), ours
    finally:
        idx.destroy()


def test_milvus_lite_refuses_index_types_it_does_not_build(milvus_db: Path, tmp_path: Path) -> None:
    for kind in ("IVF_PQ", "DISKANN", "SCANN"):
        with pytest.raises(ConfigError):
            open_index(f"milvus://{milvus_db}?index={kind}", tmp_path / "collection-x.faiss", DIM, MODEL)


def test_milvus_lite_really_builds_hnsw(milvus_db: Path, tmp_path: Path, data) -> None:
    ids, vecs, _ = data
    idx = open_index(f"milvus://{milvus_db}?index=HNSW&M=8", tmp_path / "collection-built.faiss", DIM, MODEL)
    try:
        idx.add(ids, vecs)
        idx.save()
        info = idx.info()
        assert info["index_type"] == "HNSW"
        # "Finished" is not proof (Lite says so for IVF_PQ too): the HNSW files must exist on disk.
        # Lite builds them in a background thread after the flush.
        import time

        built: list[Path] = []
        deadline = time.monotonic() + 30
        while not built and time.monotonic() < deadline:
            built = [p for p in milvus_db.rglob("*.hnsw.idx") if "facevault_collection_built" in str(p)]
            time.sleep(0.2)
        assert built, sorted(str(p) for p in milvus_db.rglob("*"))
    finally:
        idx.destroy()
