"""Liveness, readiness, "who am I" and sign-in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...errors import FaceVaultError
from ...results import Principal
from ...service import Vault, packs
from ..auth import ANY_ROLE, require
from ..deps import base_vault, vault_for
from ..runner import run_sync

router = APIRouter()


@router.get("/healthz", tags=["system"], summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _readiness(vault: Vault) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        model_id = vault.settings.default_model
        packs.check_model(model_id)
        vault.pipeline(model_id)  # also warms the per-process pipeline
        checks["models"] = {"ok": True, "model_id": model_id}
    except FaceVaultError as exc:
        checks["models"] = {"ok": False, "error": exc.code}
    except Exception as exc:  # a broken model install must read "not ready", not crash the probe
        checks["models"] = {"ok": False, "error": type(exc).__name__}
    try:
        checks["store"] = {"ok": True, "collections": len(vault.list_collections())}
    except Exception as exc:
        checks["store"] = {"ok": False, "error": type(exc).__name__}
    return checks


@router.get("/readyz", tags=["system"], summary="Readiness: models loaded and store reachable")
async def readyz(request: Request) -> JSONResponse:
    checks = await run_sync(request, _readiness, base_vault(request))
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


@router.get("/api/v1/me", tags=["system"], summary="The calling key's name and role")
async def me(principal: Principal = Depends(require(*ANY_ROLE))) -> dict[str, Any]:
    return principal.to_dict()


@router.post(
    "/api/v1/login",
    tags=["system"],
    summary="Sign in: the calling key's name and role, with a `login` entry in the audit log",
)
async def login(
    request: Request,
    principal: Principal = Depends(require(*ANY_ROLE)),
    vault: Vault = vault_for(*ANY_ROLE),
) -> dict[str, Any]:
    """The web UI calls this once per sign-in (``GET /api/v1/me`` records nothing)."""
    seq = await run_sync(request, vault.log_login, principal)
    return {**principal.to_dict(), "audit_seq": seq}
