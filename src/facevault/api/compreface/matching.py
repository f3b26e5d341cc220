"""CompreFace's recognition, verification and detection calls: ``/api/v1/recognition/recognize`` and
the verify and embedding calls next to it, ``/api/v1/detection/detect``, ``/api/v1/verification/...``.

Every search and comparison is audited under the key's purpose (and case), with the key as actor.
Similarities are on the scale of shapes.py; the embedding (``calculator`` plugin) is handed out only to
keys that may search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...service.compat_match import CompatResult
from ..runner import run_sync
from . import params
from .auth import Caller, caller
from .errors import MISSING_PARAMETER, CompatError, CompatRoute
from .shapes import face_json, plugins_versions, sample_id_of, similarity, subjects_json

router = APIRouter(include_in_schema=False, route_class=CompatRoute)
RECOGNITION = "/api/v1/recognition"


def _plugins(request: Request, who: Caller) -> set[str]:
    asked = params.plugins(request)
    if not who.key.may("searcher"):
        asked.discard("calculator")  # a face's vector is for keys that may compare faces
    return asked


def _options(request: Request) -> tuple[int, bool]:
    params.det_prob_threshold(request)
    params.bool_param(request, "detect_faces", True)  # faces are always detected: alignment needs them
    return params.int_param(request, "limit", 0), params.bool_param(request, "status", False)


def _wrap(result: list[dict[str, Any]], status: bool, model_id: str, plugins: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"result": result}
    if status:
        out["plugins_versions"] = plugins_versions(model_id, plugins)
    return out


def _comparisons(res: CompatResult, plugins: set[str]) -> list[dict[str, Any]]:
    out = []
    for c in res.comparisons:
        item = face_json(c.face, plugins) if c.face is not None else {"embedding": c.embedding}
        item["similarity"] = similarity(c.estimated_fmr)
        item["facevault"] = {"score": c.similarity, "estimated_fmr": c.estimated_fmr}
        out.append(item)
    return out


def _embeddings(body: Any, field: str = "embeddings") -> Any:
    value = body.get(field) if isinstance(body, dict) else None
    if not isinstance(value, list) or not value:
        raise CompatError(400, MISSING_PARAMETER, f'send {{"{field}": [[...], ...]}}')
    return value


# ---- recognition ---------------------------------------------------------------------------------------
@router.post(f"{RECOGNITION}/recognize")
async def recognize(request: Request) -> dict[str, Any]:
    who = await caller(request, "recognition", "searcher")
    limit, status = _options(request)
    top = params.int_param(request, "prediction_count", 1, 1, 1000)
    plugins = _plugins(request, who)
    (probe,) = await params.images(request, "file")
    res = await run_sync(
        request,
        who.vault.compat_recognize,
        who.collection,
        probe,
        purpose=who.purpose,
        case_id=who.case_id,
        top_k=top,
        limit=limit,
        embed="calculator" in plugins,
    )
    faces = [{**face_json(f, plugins), "subjects": subjects_json(f.candidates)} for f in res.faces]
    return _wrap(faces, status, res.model_id, plugins)


@router.post(f"{RECOGNITION}/faces/{{image}}/verify")
async def verify_face(request: Request, image: str) -> dict[str, Any]:
    who = await caller(request, "recognition", "searcher")
    limit, status = _options(request)
    plugins = _plugins(request, who)
    sample_id = sample_id_of(image)
    (probe,) = await params.images(request, "file")
    res = await run_sync(
        request,
        who.vault.compat_verify_sample,
        who.collection,
        sample_id,
        image=probe,
        purpose=who.purpose,
        case_id=who.case_id,
        limit=limit,
        embed="calculator" in plugins,
    )
    return _wrap(_comparisons(res, plugins), status, res.model_id, plugins)


@router.post(f"{RECOGNITION}/embeddings/recognize")
async def recognize_embeddings(request: Request) -> dict[str, Any]:
    who = await caller(request, "recognition", "searcher")
    top = params.int_param(request, "prediction_count", 1, 1, 1000)
    vectors = _embeddings(await params.json_body(request))
    res = await run_sync(
        request,
        who.vault.compat_recognize_embeddings,
        who.collection,
        vectors,
        purpose=who.purpose,
        case_id=who.case_id,
        top_k=top,
    )
    return {
        "result": [
            {"embedding": v, "similarities": subjects_json(m)}
            for v, m in zip(vectors, res.matches, strict=True)
        ]
    }


@router.post(f"{RECOGNITION}/embeddings/faces/{{image}}/verify")
async def verify_face_embeddings(request: Request, image: str) -> dict[str, Any]:
    who = await caller(request, "recognition", "searcher")
    sample_id = sample_id_of(image)
    vectors = _embeddings(await params.json_body(request))
    res = await run_sync(
        request,
        who.vault.compat_verify_sample,
        who.collection,
        sample_id,
        embeddings=vectors,
        purpose=who.purpose,
        case_id=who.case_id,
    )
    return {"result": _comparisons(res, set())}


# ---- detection -------------------------------------------------------------------------------------------
@router.post("/api/v1/detection/detect")
async def detect(request: Request) -> dict[str, Any]:
    who = await caller(request, "detection", "searcher")
    limit, status = _options(request)
    plugins = _plugins(request, who)
    (image,) = await params.images(request, "file")
    model = await run_sync(request, who.vault.compat_model, who.key.collection)
    res = await run_sync(
        request,
        who.vault.compat_detect,
        image,
        model=model,
        purpose=who.purpose,
        limit=limit,
        embed="calculator" in plugins,
    )
    return _wrap([face_json(f, plugins) for f in res.faces], status, res.model_id, plugins)


# ---- verification ----------------------------------------------------------------------------------------
@router.post("/api/v1/verification/verify")
async def verify(request: Request) -> dict[str, Any]:
    who = await caller(request, "verification", "searcher")
    limit, status = _options(request)
    plugins = _plugins(request, who)
    source, target = await params.images(request, "source_image", "target_image")
    model = await run_sync(request, who.vault.compat_model, who.key.collection)
    res = await run_sync(
        request,
        who.vault.compat_verify,
        source,
        target,
        model=model,
        purpose=who.purpose,
        case_id=who.case_id,
        limit=limit,
        embed="calculator" in plugins,
    )
    assert res.source is not None
    item: dict[str, Any] = {
        "source_image_face": face_json(res.source, plugins),
        "face_matches": _comparisons(res, plugins),
    }
    if status:
        item["plugins_versions"] = plugins_versions(res.model_id, plugins)
    return {"result": [item]}


@router.post("/api/v1/verification/embeddings/verify")
async def verify_embeddings(request: Request) -> dict[str, Any]:
    who = await caller(request, "verification", "searcher")
    body = await params.json_body(request)
    source = body.get("source") if isinstance(body, dict) else None
    if not isinstance(source, list) or not source:
        raise CompatError(400, MISSING_PARAMETER, 'send {"source": [...], "targets": [[...], ...]}')
    targets = _embeddings(body, "targets")
    model = await run_sync(request, who.vault.compat_model, who.key.collection)
    res = await run_sync(
        request,
        who.vault.compat_verify_embeddings,
        source,
        targets,
        model=model,
        purpose=who.purpose,
        case_id=who.case_id,
    )
    return {"result": _comparisons(res, set())}
