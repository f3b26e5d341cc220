"""Milvus backend over pymilvus: one Milvus collection per facevault collection, primary key = sample id.

- ``milvus://PATH.db``: Milvus Lite, embedded in this process (pymilvus starts it on a free port of
  127.0.0.1 with PATH.db as its data directory; nothing listens on another address). A relative PATH is
  resolved against the vault's index directory.
- ``milvus+http://HOST:19530`` (or ``milvus+https://``): a Milvus standalone or distributed server;
  ``milvus+http://HOST:19530/DB`` keeps the vault's collections in the Milvus database DB (created if
  missing), so several vaults can share one server without their collection names meeting.
  The token, if any, comes from ``FACEVAULT_MILVUS_TOKEN`` (never from the URL, which is logged).

Query options pick the index: ``?index=HNSW&M=16&ef_construction=200&ef=96``,
``?index=IVF_FLAT&nlist=1024&nprobe=32``, ``?index=IVF_SQ8&nlist=1024&nprobe=32`` or
``?index=IVF_PQ&nlist=1024&nprobe=32&pq_m=64``. Milvus Lite accepts IVF_PQ, DISKANN and SCANN and then fails
to build them in the background while ``describe_index`` still says "Finished" (it serves brute force
instead), so for Lite only the types it really builds are allowed (FLAT, HNSW, IVF_FLAT); a server gets
whatever it supports (IVF_SQ8, IVF_PQ, DISKANN, ...). The quantized types' scores are approximate, so for
them the search asks for ``rerank`` (default 4) times ``k`` candidates with their stored vectors and
returns the best ``k`` by exact inner product, as the FAISS IVF-PQ kind does.

``consistency`` (searches only; default Strong) trades freshness for latency: a Strong search waits for the
server's time tick to pass the request (measured ~200 ms per query on Milvus 2.3, docs/INDEX.md); Session
still sees this process's own writes; Bounded and Eventually may miss the last seconds of writes from any
process (an erased sample never comes back: the service re-scores candidates against the store, where
it is gone; a just-enrolled one may be missed by the duplicate check). Counts, listings and the removal
check always read Strong.

A server call that fails (the server is down, or does not answer within ``timeout`` seconds, default 60)
raises IndexUnavailableError, never a half-done change that looks complete: the store stays the truth and
the index manager rebuilds or re-applies from it once the server is back (``facevault doctor --repair``).

The collection's properties record ``facevault.model_id`` and ``facevault.dim``; opening it for another
model or dimension raises ModelMismatchError, as the FAISS header does.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from ..config import milvus_token_setting
from ..errors import ConfigError, FaceVaultError, IntegrityError, ModelMismatchError
from .base import VectorIndex


class IndexUnavailableError(FaceVaultError):
    """The Milvus server did not answer (down, restarting, or slower than the timeout)."""

    code = "index_unavailable"
    exit_code = 12  # 1-11 are taken (docs/CLI.md)


LITE_INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT")
SERVER_INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "SCANN", "AUTOINDEX")
_BUILD_KEYS = {"M": "M", "m": "M", "ef_construction": "efConstruction", "efConstruction": "efConstruction",
               "nlist": "nlist", "pq_m": "m"}  # fmt: skip
_SEARCH_KEYS = {"ef": "ef", "ef_search": "ef", "nprobe": "nprobe", "search_list": "search_list"}
# Types whose server-side distances are approximate: re-scored exactly from the stored vectors.
QUANTIZED = ("IVF_SQ8", "IVF_PQ", "SCANN", "DISKANN", "AUTOINDEX")
# Searches only; counts, listings and the removal check always read Strong.
CONSISTENCY = ("Strong", "Session", "Bounded", "Eventually")
_MAX_LIMIT = 16_384  # Milvus's largest topk
_DEFAULT_TIMEOUT_S = 60.0
_LOAD_TIMEOUT_S = 300.0
# The pymilvus calls that go to the server: given a timeout and their failures translated.
_RPCS = frozenset(
    [
        "insert",
        "delete",
        "search",
        "query",
        "query_iterator",
        "flush",
        "has_collection",
        "describe_collection",
        "create_collection",
        "drop_collection",
        "load_collection",
        "describe_index",
        "alter_collection_properties",
        "get_load_state",
    ]
)
_BATCH = 5_000
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def is_milvus_url(spec: str | None) -> bool:
    return bool(spec) and str(spec).split(":", 1)[0] in ("milvus", "milvus+http", "milvus+https")


def parse_url(spec: str, base_dir: Path | None = None) -> tuple[str, bool, dict[str, str]]:
    """(pymilvus uri, is_lite, options) from a facevault index URL."""
    scheme, _, rest = spec.partition("://")
    rest, _, query = rest.partition("?")
    options = dict(parse_qsl(query))
    if scheme == "milvus":
        if not rest.endswith(".db"):
            raise ConfigError(f"Milvus Lite URL must name a .db path: {spec!r}")
        path = Path(rest).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        return str(path), True, options
    if scheme in ("milvus+http", "milvus+https"):
        parts = urlsplit(f"{scheme.removeprefix('milvus+')}://{rest}")
        if not parts.hostname:
            raise ConfigError(f"Milvus server URL needs a host: {spec!r}")
        db = parts.path.strip("/")
        if db and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", db):
            raise ConfigError(f"Milvus database name must be letters, digits and _: {db!r} in {spec!r}")
        return f"{parts.scheme}://{parts.netloc}" + (f"/{db}" if db else ""), False, options
    raise ConfigError(f"not a Milvus URL: {spec!r}")


def _client(uri: str, lite: bool) -> Any:
    """The cached pymilvus client of ``uri``; a server URI's path names its database (one per vault
    sharing a server: collection names are the vault's own), created on first use."""
    from pymilvus import MilvusClient

    with _clients_lock:
        client = _clients.get(uri)
        if client is None:
            kwargs: dict[str, Any] = {}
            token = milvus_token_setting()
            if token and not lite:
                kwargs["token"] = token
            if lite:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
                client = MilvusClient(uri, **kwargs)
            else:
                parts = urlsplit(uri)
                server, db = f"{parts.scheme}://{parts.netloc}", parts.path.strip("/")
                try:
                    client = MilvusClient(server, **kwargs)
                    if db:
                        if db not in client.list_databases():
                            client.create_database(db)
                        # not using_database(): pymilvus 3 asks DescribeDatabase, which 2.3 lacks
                        client = MilvusClient(server, db_name=db, **kwargs)
                except _server_errors() as exc:
                    raise IndexUnavailableError(
                        f"Milvus at {server} did not answer: {getattr(exc, 'message', exc)}"
                    ) from exc
            _clients[uri] = client
        return client


def _server_errors() -> tuple[type[BaseException], ...]:
    """What pymilvus raises when the server fails (some paths let gRPC's own error through)."""
    import grpc
    from pymilvus.exceptions import MilvusException

    return (MilvusException, grpc.RpcError)


class _Guarded:
    """A pymilvus client whose server calls carry a timeout and raise IndexUnavailableError on failure."""

    def __init__(self, client: Any, where: str, timeout: float | None) -> None:
        self._client, self._where, self._timeout = client, where, timeout

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in _RPCS:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._timeout is not None:
                kwargs.setdefault("timeout", self._timeout)
            try:
                return attr(*args, **kwargs)
            except _server_errors() as exc:
                raise IndexUnavailableError(
                    f"Milvus at {self._where} failed on {name}: {getattr(exc, 'message', exc)}"
                ) from exc

        return call


def _timeout(options: dict[str, str], lite: bool) -> float | None:
    raw = options.pop("timeout", None)
    if raw is None:
        return None if lite else _DEFAULT_TIMEOUT_S
    value = float(raw)
    if value <= 0:
        raise ConfigError(f"Milvus timeout must be positive, not {raw!r}")
    return value


def milvus_client(url: str, base_dir: Path | None = None) -> Any:
    """The (cached) pymilvus client for a facevault Milvus URL, with its timeout and error translation."""
    uri, lite, options = parse_url(url, base_dir)
    return _Guarded(_client(uri, lite), uri if lite else url.split("?")[0], _timeout(options, lite))


def collection_name(path_or_name: str | Path) -> str:
    """A Milvus-safe name from the index path: ``collection-3.faiss`` -> ``facevault_collection_3``."""
    stem = Path(str(path_or_name)).stem
    return "facevault_" + re.sub(r"[^0-9A-Za-z_]", "_", stem)


class MilvusIndex(VectorIndex):
    def __init__(
        self,
        url: str,
        name: str,
        dim: int,
        model_id: str,
        *,
        base_dir: Path | None = None,
    ) -> None:
        self.url = url
        self.uri, self.lite, options = parse_url(url, base_dir)
        self.name = name
        self.dim = int(dim)
        self.model_id = model_id
        self.index_type = options.pop("index", "HNSW").upper()
        self.timeout = _timeout(options, self.lite)
        self.consistency = options.pop("consistency", "Strong").capitalize()
        if self.consistency not in CONSISTENCY:
            raise ConfigError(f"Milvus consistency must be one of {', '.join(CONSISTENCY)} in {url!r}")
        self.rerank = int(options.pop("rerank", 4))
        if self.rerank < 1:
            raise ConfigError(f"Milvus rerank must be at least 1 in {url!r}")
        allowed = LITE_INDEX_TYPES if self.lite else SERVER_INDEX_TYPES
        if self.index_type not in allowed:
            where = (
                "Milvus Lite (it reports other types as built but does not build them)"
                if self.lite
                else "Milvus"
            )
            raise ConfigError(
                f"index type {self.index_type} is not usable on {where}; use {', '.join(allowed)}"
            )
        self.build_params: dict[str, Any] = {}
        self.search_params: dict[str, Any] = {}
        for key, value in options.items():
            if key in _BUILD_KEYS:
                self.build_params[_BUILD_KEYS[key]] = int(value)
            elif key in _SEARCH_KEYS:
                self.search_params[_SEARCH_KEYS[key]] = int(value)
            else:
                raise ConfigError(f"unknown Milvus index option {key!r} in {url!r}")
        if self.index_type == "HNSW":
            self.build_params.setdefault("M", 16)
            self.build_params.setdefault("efConstruction", 200)
            self.search_params.setdefault("ef", 96)
        elif self.index_type.startswith("IVF"):
            self.build_params.setdefault("nlist", 1024)
            self.search_params.setdefault("nprobe", 32)
        self.client = _Guarded(
            _client(self.uri, self.lite), self.uri if self.lite else url.split("?")[0], self.timeout
        )
        self._open()

    # ---- collection lifecycle ------------------------------------------------------------------------
    def _load_timeout(self) -> float | None:
        """Loading waits for the server to bring the segments into memory: after a server restart that
        takes longer than one call should (seconds per segment on a busy machine)."""
        return None if self.timeout is None else max(self.timeout, _LOAD_TIMEOUT_S)

    def _open(self) -> None:
        if self.client.has_collection(self.name):
            desc = self.client.describe_collection(self.name)
            props = desc.get("properties", {}) or {}
            vec = next((f for f in desc["fields"] if f["name"] == "vector"), None)
            dim = int(vec["params"]["dim"]) if vec else -1
            model = props.get("facevault.model_id")
            if model is None:
                raise IntegrityError(f"Milvus collection {self.name} was not created by facevault")
            if model != self.model_id or dim != self.dim:
                raise ModelMismatchError(
                    f"Milvus collection {self.name} holds {model}/{dim}-d vectors, "
                    f"collection expects {self.model_id}/{self.dim}-d"
                )
            self.client.load_collection(self.name, timeout=self._load_timeout())
        else:
            self._create()

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        params.add_index(
            field_name="vector", index_type=self.index_type, metric_type="IP", params=self.build_params
        )
        self.client.create_collection(
            self.name,
            schema=schema,
            index_params=params,
            consistency_level="Strong",
            properties={"facevault.model_id": self.model_id, "facevault.dim": str(self.dim)},
        )
        desc = self.client.describe_collection(self.name)
        if (desc.get("properties") or {}).get("facevault.model_id") != self.model_id:
            self.client.alter_collection_properties(
                self.name, properties={"facevault.model_id": self.model_id, "facevault.dim": str(self.dim)}
            )
        self.client.load_collection(self.name, timeout=self._load_timeout())

    # ---- the interface -------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.size % self.dim or (vectors.ndim > 1 and vectors.shape[-1] != self.dim):
            raise ModelMismatchError(f"vectors of shape {vectors.shape} given to a {self.dim}-d index")
        vectors = vectors.reshape(-1, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        for start in range(0, len(ids), _BATCH):
            rows = [
                {"id": int(i), "vector": v}
                for i, v in zip(
                    ids[start : start + _BATCH], vectors[start : start + _BATCH].tolist(), strict=True
                )
            ]
            self.client.insert(self.name, rows)

    def _present(self, ids: np.ndarray) -> list[int]:
        found: list[int] = []
        for start in range(0, len(ids), 1_000):
            chunk = ", ".join(str(int(i)) for i in ids[start : start + 1_000])
            rows = self.client.query(self.name, filter=f"id in [{chunk}]", output_fields=["id"])
            found.extend(int(r["id"]) for r in rows)
        return found

    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        if not len(ids):
            return 0
        present = self._present(ids)
        for start in range(0, len(present), 1_000):
            self.client.delete(self.name, ids=present[start : start + 1_000])
        return len(present)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n, k = len(queries), max(int(k), 0)
        scores, out = np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
        if k == 0 or n == 0:
            return scores, out
        exact = self.index_type not in QUANTIZED
        limit = k if exact else min(k * self.rerank, _MAX_LIMIT)
        params: dict[str, Any] = {"metric_type": "IP", "params": dict(self.search_params)}
        if "ef" in params["params"]:
            params["params"]["ef"] = max(params["params"]["ef"], limit)
        fields = ["id"] if exact else ["id", "vector"]
        results = self.client.search(
            self.name,
            data=queries.tolist(),
            limit=limit,
            search_params=params,
            output_fields=fields,
            consistency_level=self.consistency,
        )
        for row, hits in enumerate(results):
            hits = list(hits)
            if not hits:
                continue
            found = np.asarray([int(h["id"]) for h in hits], dtype=np.int64)
            if exact:
                got = np.asarray([float(h["distance"]) for h in hits], dtype=np.float32)
            else:  # exact inner products of the candidates, best first
                stored = np.asarray([h["entity"]["vector"] for h in hits], dtype=np.float32)
                got = stored @ queries[row]
                order = np.argsort(-got, kind="stable")
                found, got = found[order], got[order]
            m = min(k, len(found))
            out[row, :m], scores[row, :m] = found[:m], got[:m]
        return scores, out

    def ids(self) -> np.ndarray:
        return self._lite_ids() if self.lite else self._server_ids()

    def _server_ids(self) -> np.ndarray:
        """Every id, by primary-key windows (no query iterator: pymilvus 3's asks the server for an MVCC
        timestamp that Milvus 2.3 does not give, and right after a server restart it timed out here).
        A window that comes back empty doubles, a crowded one halves, until the count is reached."""
        total = len(self)
        found = [int(r["id"]) for r in self.client.query(self.name, filter="id < 0", output_fields=["id"])]
        lo, width = 0, 1 << 20
        while len(found) < total and lo < 1 << 62:
            rows = self.client.query(
                self.name, filter=f"id >= {lo} and id < {lo + width}", output_fields=["id"]
            )
            found.extend(int(r["id"]) for r in rows)
            lo += width
            if not rows:
                width *= 2
            elif len(rows) > 200_000:
                width = max(width // 2, 1)
        return np.asarray(sorted(set(found)), dtype=np.int64)

    def _lite_ids(self) -> np.ndarray:
        it = self.client.query_iterator(self.name, batch_size=10_000, filter="", output_fields=["id"])
        found: list[int] = []
        try:
            while True:
                batch = it.next()
                if not batch:
                    break
                found.extend(int(r["id"]) for r in batch)
        except _server_errors() as exc:
            raise IndexUnavailableError(f"Milvus failed listing {self.name}: {exc}") from exc
        finally:
            it.close()
        return np.asarray(sorted(found), dtype=np.int64)

    def __len__(self) -> int:
        rows = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def save(self) -> None:
        """Milvus persists every insert/delete itself; flush seals the growing segment so the index
        covers it."""
        self.client.flush(self.name)

    def reset(self) -> None:
        self.client.drop_collection(self.name)
        self._create()

    def destroy(self) -> None:
        if self.client.has_collection(self.name):
            self.client.drop_collection(self.name)

    def stamp(self) -> object:
        return None

    def wait_built(
        self, rows: int | None = None, timeout: float = 600.0, *, settled: bool = True
    ) -> dict[str, Any]:
        """Wait until the server has built the index over ``rows`` rows (default: every row; segments
        under 1,024 rows are never indexed, so ask for fewer then) and, if ``settled``, has none pending
        (a compaction that merged segments re-indexes the merged one: at 1M rows that is minutes more);
        returns ``describe_index``. For tests and benchmarks: searches are correct before that too (a segment
        without its index is searched by brute force)."""
        import time

        rows = len(self) if rows is None else rows
        deadline = time.monotonic() + timeout
        while True:
            described = self.client.describe_index(self.name, "vector") or {}
            indexed = int(described.get("indexed_rows", 0) or 0)
            pending = int(described.get("pending_index_rows", 0) or 0)
            if indexed >= rows and (not pending or not settled):
                return described
            if time.monotonic() > deadline:
                raise IndexUnavailableError(f"Milvus index of {self.name} not built after {timeout:.0f} s")
            time.sleep(0.2)

    # ---- introspection -------------------------------------------------------------------------------
    def tune(self, **values: Any) -> dict[str, Any]:
        """Search-time knobs: ``ef`` (HNSW) or ``nprobe`` (IVF)."""
        for key, value in values.items():
            if value is None:
                continue
            if key not in _SEARCH_KEYS:
                raise ConfigError(f"Milvus search setting must be one of {', '.join(_SEARCH_KEYS)}")
            self.search_params[_SEARCH_KEYS[key]] = int(value)
        return dict(self.search_params)

    def info(self) -> dict[str, Any]:
        described = self.client.describe_index(self.name, "vector") or {}
        return {
            "kind": "milvus-lite" if self.lite else "milvus",
            "count": len(self),
            "dim": self.dim,
            "model_id": self.model_id,
            "collection": self.name,
            "uri": self.uri if self.lite else self.url.split("?")[0],
            "index_type": described.get("index_type", self.index_type),
            "index_state": described.get("state"),
            "indexed_rows": described.get("indexed_rows"),
            "pending_index_rows": described.get("pending_index_rows"),
            "rerank": None if self.index_type not in QUANTIZED else self.rerank,
            "consistency": self.consistency,
            "build_params": self.build_params,
            "search_params": self.search_params,
            "ram_bytes": None,
        }
