"""Collections: a named gallery pinned to one embedding model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...config import iso, models_dir_setting
from ...service import Vault, packs
from ..auth import ANY_ROLE
from ..deps import vault_for
from ..runner import run_sync
from ..schemas import CollectionCreate, KeepCropsSet, known_model
from ..serialize import to_json

router = APIRouter(prefix="/api/v1/collections", tags=["collections"])


def _public(result: Any) -> dict[str, Any]:
    row = to_json(result)
    out = {k: row[k] for k in ("id", "name", "model_id", "dim", "retention_days") if k in row}
    if "keep_crops" in row:
        out["keep_crops"] = bool(row["keep_crops"])
    if "detector" in row:
        out["detector"] = row["detector"]
    created = row.get("created_at")
    if created is not None:  # every stored time is UTC (SQLite hands back naive datetimes)
        out["created_at"] = created if isinstance(created, str) else iso(created)
    for k in ("subjects", "samples"):
        if k in row:
            out[k] = row[k]
    return out


@router.get("", summary="List collections")
async def list_collections(request: Request, vault: Vault = vault_for(*ANY_ROLE)) -> list[dict[str, Any]]:
    rows = await run_sync(request, vault.list_collections)
    return [_public(r) for r in rows]


@router.post("", status_code=201, summary="Create a collection")
async def create_collection(
    request: Request, body: CollectionCreate, vault: Vault = vault_for("admin")
) -> dict[str, Any]:
    row = await run_sync(
        request,
        vault.create_collection,
        body.name,
        known_model(body.model),
        keep_crops=body.keep_crops,
        detector=body.detector,
    )
    return _public(row)


# Two segments, so that it shadows no collection: GET /{collection} takes any one-segment name.
@router.get(
    "/-/choices",
    summary="The model packs and detectors a new collection can use (admin): what collection create's "
    "model and detector take",
)
async def collection_choices(request: Request, vault: Vault = vault_for("admin")) -> dict[str, Any]:
    found = await run_sync(request, packs.list_packs, models_dir_setting(vault.settings.home))
    models = [p["name"] for p in found["builtin"]] + [p["name"] for p in found["installed"]]
    detectors = [
        {k: d[k] for k in ("name", "kind", "landmarks", "license", "commercial_use")}
        for d in found["detectors"]
    ]
    return {"models": models, "detectors": detectors}


@router.get("/{collection}", summary="One collection")
async def get_collection(
    request: Request, collection: str, vault: Vault = vault_for(*ANY_ROLE)
) -> dict[str, Any]:
    return _public(await run_sync(request, vault.get_collection, collection))


@router.put(
    "/{collection}/keep-crops",
    summary="Keep encrypted face crops (for migrating to another model pack), or stop and delete them",
)
async def set_keep_crops(
    request: Request, collection: str, body: KeepCropsSet, vault: Vault = vault_for("admin")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.set_keep_crops, collection, body.keep_crops))


@router.delete("/{collection}", summary="Delete a collection with every subject and sample in it")
async def delete_collection(
    request: Request, collection: str, vault: Vault = vault_for("admin")
) -> dict[str, Any]:
    counts = await run_sync(request, vault.delete_collection, collection)  # its photo copies too
    return {"collection": collection, **to_json(counts)}
