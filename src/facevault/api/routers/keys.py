"""API key administration (admin only). The secret is shown once, in the reply to its creation; every
creation and revocation is audited (``apikey.create``, ``apikey.revoke``) with the admin key that did it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from .. import keys
from ..auth import require
from ..context import vault_as
from ..keys import Principal
from ..runner import run_sync
from ..schemas import KeyCreate

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


@router.get("", summary="List API keys (never their secrets)")
async def list_keys(
    request: Request, principal: Principal = Depends(require("admin"))
) -> list[dict[str, Any]]:
    return await run_sync(request, keys.list_keys, request.app.state.vault)


@router.post("", status_code=201, summary="Create an API key; the reply holds the secret, shown once")
async def create_key(
    request: Request, body: KeyCreate, principal: Principal = Depends(require("admin"))
) -> dict[str, Any]:
    vault = vault_as(request, principal)
    secret, record = await run_sync(request, keys.create_key, vault, body.role, body.name)
    return {**record, "key": secret}


@router.delete("/{prefix}", summary="Revoke an API key")
async def revoke_key(
    request: Request,
    prefix: str = Path(max_length=200),
    principal: Principal = Depends(require("admin")),
) -> dict[str, Any]:
    return await run_sync(request, keys.revoke_key, vault_as(request, principal), prefix)
