"""Vector indexes behind one interface (base.VectorIndex): the embedded FAISS index (default) and
Milvus (Lite or server). ``open_index`` picks one from a setting such as ``--index``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import VectorIndex
from .faiss_index import FaissIndex
from .policy import IndexPolicy

__all__ = ["FaissIndex", "IndexPolicy", "VectorIndex", "discard_index", "open_index"]


def open_index(spec: str | None, path: Path, dim: int, model_id: str, **settings: Any) -> VectorIndex:
    """The index of one collection.

    ``spec``: ``None``/``""``/``"faiss"`` for the embedded FAISS index at ``path`` (kind by size);
    ``"faiss:flat"``, ``"faiss:hnsw"``, ``"faiss:ivfpq"`` pin a kind; ``milvus://PATH.db`` (Milvus Lite,
    PATH relative to ``path``'s directory) or ``milvus+http://HOST:19530`` for Milvus, where the Milvus
    collection is named after ``path``'s stem (``collection-3.faiss`` -> ``facevault_collection_3``).
    ``settings`` go to FaissIndex (IndexPolicy fields) and are refused for Milvus.
    """
    path = Path(path)
    spec = (spec or "faiss").strip()
    if spec == "faiss" or spec.startswith("faiss:"):
        kind = spec.partition(":")[2]
        if kind:
            settings = {"kind": kind, **settings}
        return FaissIndex(path, dim, model_id, **settings)
    from .milvus_index import MilvusIndex, collection_name, is_milvus_url

    if is_milvus_url(spec):
        if settings:
            from ..errors import ConfigError

            raise ConfigError(f"settings {sorted(settings)} apply to the FAISS index only")
        return MilvusIndex(spec, collection_name(path), dim, model_id, base_dir=path.parent)
    from ..errors import ConfigError

    raise ConfigError(
        f"unknown index backend {spec!r}: use faiss, faiss:KIND, milvus://PATH.db or milvus+http://HOST:PORT"
    )


def discard_index(spec: str | None, path: Path) -> None:
    """Delete a collection's index without opening it (it may be unreadable or hold another model's
    vectors): what ``doctor --repair`` does before rebuilding from the store."""
    path = Path(path)
    spec = (spec or "faiss").strip()
    if spec == "faiss" or spec.startswith("faiss:"):
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        for f in path.parent.glob(f"{path.stem}.g*.vectors"):
            f.unlink(missing_ok=True)
        return
    from .milvus_index import collection_name, milvus_client

    client = milvus_client(spec, path.parent)
    name = collection_name(path)
    if client.has_collection(name):
        client.drop_collection(name)
