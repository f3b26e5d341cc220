"""Collections: a named gallery pinned to one embedding model."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from fastapi import APIRouter, Depends, Request

from ..auth import ANY_ROLE, require
from ..context import vault_as
from ..keys import Principal
from ..runner import run_sync
from ..schemas import CollectionCreate, KeepCropsSet, known_model

router = APIRouter(prefix="/api/v1/collections", tags=["collections"])


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in ("id", "name", "model_id", "dim") if k in row}
    if "keep_crops" in row:
        out["keep_crops"] = bool(row["keep_crops"])
    created = row.get("created_at")
    if created is not None:  # SQLite hands back naive datetimes; every stored time is UTC
        out["created_at"] = (created if created.tzinfo else created.replace(tzinfo=UTC)).isoformat()
    for k in ("subjects", "samples"):
        if k in row:
            out[k] = row[k]
    return out


@router.get("", summary="List collections")
async def list_collections(
    request: Request, principal: Principal = Depends(require(*ANY_ROLE))
) -> list[dict[str, Any]]:
    rows = await run_sync(request, vault_as(request, principal).list_collections)
    return [_public(r) for r in rows]


@router.post("", status_code=201, summary="Create a collection")
async def create_collection(
    request: Request, body: CollectionCreate, principal: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    vault = vault_as(request, principal)
    row = await run_sync(
        request, vault.create_collection, body.name, known_model(body.model), keep_crops=body.keep_crops
    )
    return _public(row)


@router.get("/{collection}", summary="One collection")
async def get_collection(
    request: Request, collection: str, principal: Principal = Depends(require(*ANY_ROLE))
) -> dict[str, Any]:
    return _public(await run_sync(request, vault_as(request, principal).get_collection, collection))


@router.put(
    "/{collection}/keep-crops",
    summary="Keep encrypted face crops (for migrating to another model pack), or stop and delete them",
)
async def set_keep_crops(
    request: Request, collection: str, body: KeepCropsSet, principal: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    vault = vault_as(request, principal)
    return await run_sync(request, vault.set_keep_crops, collection, body.keep_crops)


def _delete_collection(request: Request, principal: Principal, collection: str) -> dict[str, Any]:
    vault = vault_as(request, principal)
    coll = vault.get_collection(collection)
    counts = vault.delete_collection(collection)
    request.app.state.photos.discard_collection(coll["id"])
    return {"collection": collection, **counts}


@router.delete("/{collection}", summary="Delete a collection with every subject and sample in it")
async def delete_collection(
    request: Request, collection: str, principal: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    return await run_sync(request, _delete_collection, request, principal, collection)
