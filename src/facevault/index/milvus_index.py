"""Milvus backend over pymilvus: one Milvus collection per facevault collection, primary key = sample id.

- ``milvus://PATH.db``: Milvus Lite, embedded in this process (pymilvus starts it on a free port of
  127.0.0.1 with PATH.db as its data directory; nothing listens on another address). A relative PATH is
  resolved against the vault's index directory.
- ``milvus+http://HOST:19530`` (or ``milvus+https://``): a Milvus standalone or distributed server.
  The token, if any, comes from ``FACEVAULT_MILVUS_TOKEN`` (never from the URL, which is logged).

Query options pick the index: ``?index=HNSW&M=16&ef_construction=200&ef=96`` or
``?index=IVF_FLAT&nlist=1024&nprobe=32``. Milvus Lite accepts IVF_PQ, DISKANN and SCANN and then fails to
build them in the background while ``describe_index`` still says "Finished" (it serves brute force
instead), so for Lite only the types it really builds are allowed (FLAT, HNSW, IVF_FLAT); a server gets
whatever it supports (IVF_PQ, DISKANN, ...). Approximate server-side scores are fine: the service
re-ranks every candidate exactly against the store.

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
from ..errors import ConfigError, IntegrityError, ModelMismatchError
from .base import VectorIndex

LITE_INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT")
SERVER_INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "SCANN", "AUTOINDEX")
_BUILD_KEYS = {"M": "M", "m": "M", "ef_construction": "efConstruction", "efConstruction": "efConstruction",
               "nlist": "nlist", "pq_m": "m"}  # fmt: skip
_SEARCH_KEYS = {"ef": "ef", "ef_search": "ef", "nprobe": "nprobe", "search_list": "search_list"}
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
        return f"{parts.scheme}://{parts.netloc}", False, options
    raise ConfigError(f"not a Milvus URL: {spec!r}")


def _client(uri: str, lite: bool) -> Any:
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
            _clients[uri] = client
        return client


def milvus_client(url: str, base_dir: Path | None = None) -> Any:
    """The (cached) pymilvus client for a facevault Milvus URL."""
    uri, lite, _ = parse_url(url, base_dir)
    return _client(uri, lite)


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
        self.client = _client(self.uri, self.lite)
        self._open()

    # ---- collection lifecycle ------------------------------------------------------------------------
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
            self.client.load_collection(self.name)
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
        self.client.load_collection(self.name)

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
        params: dict[str, Any] = {"metric_type": "IP", "params": dict(self.search_params)}
        if "ef" in params["params"]:
            params["params"]["ef"] = max(params["params"]["ef"], k)
        results = self.client.search(
            self.name, data=queries.tolist(), limit=k, search_params=params, output_fields=["id"]
        )
        for row, hits in enumerate(results):
            for col, hit in enumerate(list(hits)[:k]):
                out[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, out

    def ids(self) -> np.ndarray:
        it = self.client.query_iterator(self.name, batch_size=10_000, filter="", output_fields=["id"])
        found: list[int] = []
        try:
            while True:
                batch = it.next()
                if not batch:
                    break
                found.extend(int(r["id"]) for r in batch)
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
            "build_params": self.build_params,
            "search_params": self.search_params,
            "ram_bytes": None,
        }
