"""API key administration (admin only). The secret is shown once, in the reply to its creation; every
creation and revocation is audited (``apikey.create``, ``apikey.revoke``) with the admin key that did it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request

from ...service import Vault
from ..deps import vault_for
from ..runner import run_sync
from ..schemas import KeyCreate
from ..serialize import to_json

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


@router.get("", summary="List API keys (never their secrets)")
async def list_keys(request: Request, vault: Vault = vault_for("admin")) -> list[dict[str, Any]]:
    return to_json(await run_sync(request, vault.list_api_keys))


@router.post("", status_code=201, summary="Create an API key; the reply holds the secret, shown once")
async def create_key(request: Request, body: KeyCreate, vault: Vault = vault_for("admin")) -> dict[str, Any]:
    secret, record = await run_sync(request, vault.create_api_key, body.role, body.name)
    return {**to_json(record), "key": secret}


@router.delete("/{prefix}", summary="Revoke an API key")
async def revoke_key(
    request: Request,
    prefix: str = Path(max_length=200),
    vault: Vault = vault_for("admin"),
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.revoke_api_key, prefix))
