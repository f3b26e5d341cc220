"""CompreFace's face-collection administration (base ``/api/v1/recognition``): subjects and their
faces (facevault's samples), on the collection the key is bound to.

facevault's rules hold: a subject exists only with the consent record that allows it (``POST
/subjects`` takes the consent fields, a documented extension, or is refused), a face is enrolled only
into such a subject (``POST /faces?subject=`` never creates one), every removal is an audited erasure
with a receipt, and wiping the whole collection (``DELETE /faces`` without a subject, ``DELETE
/subjects``) needs a key with the admin role."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ...errors import NotFoundError
from ...service import photos
from ..runner import run_sync
from . import params
from .auth import caller
from .errors import (
    CONSENT_REQUIRED,
    EMBEDDING_NOT_FOUND,
    MISSING_PARAMETER,
    NO_FACE,
    TOO_MANY_FACES,
    CompatError,
    CompatRoute,
)
from .shapes import image_id, page_json, sample_id_of

router = APIRouter(prefix="/api/v1/recognition", include_in_schema=False, route_class=CompatRoute)
SERVICE = "recognition"


def ref(subject: str) -> str:
    """CompreFace names a subject by its name: exactly that name (never an id or external id)."""
    return f"name:{subject}"


def consent_missing(subject: str, collection: str) -> CompatError:
    return CompatError(
        403,
        CONSENT_REQUIRED,
        f"subject {subject!r} has no consent record in this collection: facevault enrolls only people whose "
        f"consent is recorded. Record it first (facevault subject add {collection} {subject!r} --purpose ... "
        "--consent-text ..., or POST /api/v1/recognition/subjects with consent_text; see docs/API.md)",
        "consent_required",
    )


# ---- subjects -----------------------------------------------------------------------------------------
@router.post("/subjects", status_code=201)
async def add_subject(request: Request) -> dict[str, Any]:
    who = await caller(request, SERVICE, "enroller")
    body = await params.json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("subject"), str) or not body["subject"].strip():
        raise CompatError(400, MISSING_PARAMETER, 'send {"subject": "<name>"} with the consent fields')
    name = body["subject"].strip()
    text, evidence = body.get("consent_text"), body.get("consent_file_base64")
    if not (isinstance(text, str) and text.strip()) and not evidence:
        raise CompatError(
            403,
            CONSENT_REQUIRED,
            "facevault creates a subject only with the consent record that allows it: add consent_text "
            "(what the person agreed to, or where the signed form is) and optionally consent_purpose, "
            "consent_by, expires and external_id to the body (docs/API.md)",
            "consent_required",
        )
    kwargs = {
        "purpose": str(body.get("consent_purpose") or who.purpose),
        "consent_by": body.get("consent_by"),
        "expires": body.get("expires"),
        "external_id": body.get("external_id"),
    }
    if evidence:
        from ..uploads import decode_base64

        data = decode_base64(
            str(evidence), request.app.state.api_settings.max_upload_bytes, "consent_file_base64"
        )
        made = await run_sync(request, _with_file, who.vault, who.collection, name, data, kwargs)
    else:
        made = await run_sync(
            request, who.vault.add_subject, who.collection, name, consent_text=text, **kwargs
        )
    return {
        "subject": made["name"],
        "facevault": {"subject_id": made["id"], "consent_id": made["consent"]["id"]},
    }


def _with_file(vault: Any, collection: str, name: str, data: bytes, kwargs: dict[str, Any]) -> Any:
    with tempfile.TemporaryDirectory(prefix="facevault-consent-") as tmp:
        path = Path(tmp) / "consent"
        path.write_bytes(data)
        os.chmod(path, 0o600)
        return vault.add_subject(collection, name, consent_file=path, **kwargs)


@router.get("/subjects")
@router.get("/subjects/")
async def list_subjects(request: Request) -> dict[str, Any]:
    who = await caller(request, SERVICE, "enroller")
    rows = await run_sync(request, who.vault.list_subjects, who.collection)
    return {"subjects": [r["name"] for r in rows]}


@router.put("/subjects/{subject}")
async def rename_subject(request: Request, subject: str) -> dict[str, Any]:
    who = await caller(request, SERVICE, "enroller")
    body = await params.json_body(request)
    new = body.get("subject") if isinstance(body, dict) else None
    if not isinstance(new, str) or not new.strip():
        raise CompatError(400, MISSING_PARAMETER, 'send {"subject": "<new name>"}')
    changed = await run_sync(request, who.vault.rename_subject, who.collection, ref(subject), new)
    return {"updated": bool(changed)}


@router.delete("/subjects/{subject}")
async def delete_subject(request: Request, subject: str) -> dict[str, Any]:
    who = await caller(request, SERVICE, "enroller")
    receipt = await run_sync(request, who.vault.erase_subject, who.collection, ref(subject), reason="deleted")
    return {"subject": receipt["name"], "facevault": {"audit_seq": receipt["audit_seq"]}}


@router.delete("/subjects")
@router.delete("/subjects/")
async def delete_all_subjects(request: Request) -> dict[str, Any]:
    who = await caller(request, SERVICE, "admin")
    receipts = await run_sync(request, who.vault.erase_all_subjects, who.collection)
    return {"deleted": len(receipts)}


# ---- faces ----------------------------------------------------------------------------------------------
@router.post("/faces", status_code=201)
async def add_face(request: Request) -> dict[str, Any]:
    who = await caller(request, SERVICE, "enroller")
    subject = params.subject_param(request, required=True)
    assert subject is not None
    params.det_prob_threshold(request)
    ((name, data),) = await params.images(request, "file")
    try:
        await run_sync(request, who.vault.get_subject, who.collection, ref(subject))
    except NotFoundError as exc:
        if exc.code != "subject_not_found":
            raise
        raise consent_missing(subject, who.collection) from None
    outcomes = await run_sync(
        request,
        photos.enroll_photos,
        who.vault,
        who.collection,
        ref(subject),
        [(name, data)],
        keep_copies=request.app.state.api_settings.keep_photos,
    )
    out = outcomes[0]
    if not out.ok:
        code = {"no_face": NO_FACE, "multiple_faces": TOO_MANY_FACES}.get(out.reason or "", 26)
        status = 403 if (out.reason or "").startswith("consent") else 400
        raise CompatError(status, code, out.message or out.reason or "not enrolled", out.reason or "rejected")
    assert out.sample_id is not None
    return {"image_id": image_id(out.sample_id), "subject": subject}


@router.get("/faces")
async def list_faces(request: Request) -> dict[str, Any]:
    who = await caller(request, SERVICE, "enroller")
    page = params.int_param(request, "page", 0)
    size = params.int_param(request, "size", 20, 1, 1000)
    subject = params.subject_param(request, required=False)
    found = await run_sync(
        request,
        who.vault.list_faces,
        who.collection,
        None if subject is None else ref(subject),
        page=page,
        size=size,
    )
    faces = [{"image_id": image_id(f["sample_id"]), "subject": f["name"]} for f in found["faces"]]
    return page_json(faces, page, size, found["total"])


@router.delete("/faces")
async def delete_faces(request: Request) -> dict[str, Any]:
    subject = params.subject_param(request, required=False)
    who = await caller(request, SERVICE, "enroller" if subject is not None else "admin")
    if subject is None:
        receipts = await run_sync(request, who.vault.erase_samples, who.collection, everything=True)
    else:
        receipts = await run_sync(request, who.vault.erase_samples, who.collection, subject=ref(subject))
    return {"deleted": sum(len(r.sample_ids) for r in receipts)}


async def _delete_ids(request: Request, ids: list[int]) -> list[dict[str, Any]]:
    who = await caller(request, SERVICE, "enroller")
    receipts = await run_sync(request, who.vault.erase_samples, who.collection, sample_ids=ids)
    return [{"image_id": image_id(i), "subject": r.name} for r in receipts for i in r.sample_ids]


@router.post("/faces/delete")
async def delete_faces_by_id(request: Request) -> list[dict[str, Any]]:
    body = await params.json_body(request)
    if not isinstance(body, list) or not all(isinstance(v, str | int) for v in body) or len(body) > 1000:
        raise CompatError(400, MISSING_PARAMETER, "send a JSON list of at most 1000 image ids")
    ids = []
    for value in body:
        try:
            ids.append(sample_id_of(str(value)))
        except CompatError:
            continue  # CompreFace skips ids it does not know
    return await _delete_ids(request, ids)


@router.delete("/faces/{image}")
async def delete_face(request: Request, image: str) -> dict[str, Any]:
    gone = await _delete_ids(request, [sample_id_of(image)])
    if not gone:
        raise CompatError(404, EMBEDDING_NOT_FOUND, f"no face with image id {image!r}", "sample_not_found")
    return gone[0]


@router.get("/faces/{image}/img", response_model=None)
async def face_image(request: Request, image: str) -> Response | JSONResponse:
    """A face thumbnail of the sample (not the whole photo), audited as ``sample.view``."""
    who = await caller(request, SERVICE, "enroller")
    sample = await run_sync(request, who.vault.get_sample, who.collection, sample_id_of(image))
    data = await run_sync(
        request,
        photos.sample_thumbnail,
        who.vault,
        who.collection,
        f"#{sample['subject_id']}",
        sample["sample_id"],
        purpose=who.purpose,
        case_id=who.case_id,
    )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
