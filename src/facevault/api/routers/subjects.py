"""Subjects with their consent records, their samples (enrollment from uploaded photos), sample
thumbnails, and erasure."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import InputError
from ...results import EnrollOutcome
from ...service import Vault, photos, samples
from ..deps import request_id, vault_for
from ..errors import api_message
from ..runner import run_sync
from ..schemas import EnrollParams, SubjectCreate, body_doc, parse_body
from ..serialize import to_json
from ..uploads import NamedUpload, read_named_uploads, read_upload, safe_name

router = APIRouter(prefix="/api/v1/collections/{collection}/subjects", tags=["subjects"])


@router.get("", summary="List subjects, optionally filtered by name")
async def list_subjects(
    request: Request,
    collection: str,
    q: str | None = Query(default=None, max_length=200, description="Part of a name (any case)."),
    vault: Vault = vault_for("enroller", "reviewer"),
) -> list[dict[str, Any]]:
    rows = to_json(await run_sync(request, vault.list_subjects, collection))
    if q:
        needle = q.casefold()
        rows = [r for r in rows if needle in r["name"].casefold() or needle == (r["external_id"] or "")]
    return rows


def _add_subject(
    vault: Vault, collection: str, body: SubjectCreate, evidence: tuple[str, bytes] | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "purpose": body.purpose,
        "consent_by": body.consent_by,
        "expires": body.expires,
        "external_id": body.external_id,
    }
    if evidence is None:
        return vault.add_subject(collection, body.name, consent_text=body.consent_text, **kwargs)
    if body.consent_text is not None:
        raise InputError(
            "give exactly one piece of consent evidence: a file or a text", code="consent_required"
        )
    # Vault.add_subject reads evidence from a path and records its base name: keep the uploaded name.
    with tempfile.TemporaryDirectory(prefix="facevault-consent-") as tmp:
        path = Path(tmp) / evidence[0]
        path.write_bytes(evidence[1])
        return vault.add_subject(collection, body.name, consent_file=path, **kwargs)


@router.post(
    "",
    status_code=201,
    summary="Add a subject with the consent record that allows it to exist",
    openapi_extra=body_doc(SubjectCreate, SubjectCreate, {"consent_file": "optional"}),
)
async def create_subject(
    request: Request, collection: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    body, files = await parse_body(request, SubjectCreate, max_files=1)
    evidence = None
    if files.get("consent_file"):
        upload = files["consent_file"][0]
        data = await read_upload(upload, request.app.state.api_settings.max_upload_bytes)
        evidence = (safe_name(upload.filename, "consent"), data)
    return to_json(await run_sync(request, _add_subject, vault, collection, body, evidence))


# ---- one subject -------------------------------------------------------------------------------------
# ``{subject}`` is a subject reference (docs/API.md): an integer is the subject's id, ``ext:E-12`` an
# external id, ``name:Ann Lee`` an exact name, and any other text must name exactly one subject by id,
# external id or name (else 409 ``ambiguous``: nothing is guessed). The ``by-external-id`` routes take
# an external id as it is, whatever it looks like. Declared first: they win over ``{subject}``.
BY_EXTERNAL_ID = "/by-external-id/{external_id}"


def external_ref(external_id: str) -> str:
    """The subject reference of an external id, whatever it looks like (``25``, ``#3``, ``ext:x``)."""
    return f"ext:{external_id}"


@router.get(BY_EXTERNAL_ID, summary="A subject by its external id: consent record and samples")
async def get_subject_by_external_id(
    request: Request, collection: str, external_id: str, vault: Vault = vault_for("enroller", "reviewer")
) -> dict[str, Any]:
    return to_json(await run_sync(request, _subject, vault, collection, external_ref(external_id)))


@router.delete(BY_EXTERNAL_ID, summary="Erase the subject with this external id (and nobody else)")
async def delete_subject_by_external_id(
    request: Request, collection: str, external_id: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return await _erase(request, vault, collection, external_ref(external_id))


@router.get("/{subject}", summary="A subject: consent record and samples")
async def get_subject(
    request: Request, collection: str, subject: str, vault: Vault = vault_for("enroller", "reviewer")
) -> dict[str, Any]:
    return to_json(await run_sync(request, _subject, vault, collection, subject))


def _subject(vault: Vault, collection: str, subject: str) -> Any:
    """The subject with its samples, each named by its uploaded file where it was enrolled over HTTP."""
    return samples.with_original_names(vault, vault.get_subject(collection, subject))


@router.delete("/{subject}", summary="Erase a subject with every sample and its consent record")
async def delete_subject(
    request: Request, collection: str, subject: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return await _erase(request, vault, collection, subject)


async def _erase(request: Request, vault: Vault, collection: str, ref: str) -> dict[str, Any]:
    # templates, samples, image records, review records, consent record, index entries and kept photo
    # copies go, with an erasure receipt in the audit log
    result = to_json(await run_sync(request, vault.erase_subject, collection, ref))
    return {**result, "samples_removed": result["samples_erased"], "request_id": request_id(request)}


# ---- samples ---------------------------------------------------------------------------------------


def _outcome_json(outcome: EnrollOutcome) -> dict[str, Any]:
    out = to_json(outcome)
    return {**out, "message": api_message(out.get("reason"), out.get("message"))}


@router.post(
    "/{subject}/samples",
    summary="Enroll photos of this subject (one face each); every photo gets an outcome",
    openapi_extra=body_doc(None, EnrollParams, {"images": "many"}),
)
async def enroll_samples(
    request: Request,
    collection: str,
    subject: str,
    anyway: bool = Query(
        default=False,
        description="Enroll faces that resemble another subject (resembles_another_subject) anyway.",
    ),
    vault: Vault = vault_for("enroller"),
) -> dict[str, Any]:
    settings = request.app.state.api_settings
    params, files = await parse_body(request, EnrollParams, max_files=settings.max_files_per_request)
    images = files.get("images", [])
    if not images:
        raise InputError("send one or more photos as multipart file parts named 'images'", code="no_images")
    uploads = await read_named_uploads(images, settings.max_upload_bytes)
    readable = [(name, data) for name, data, _ in uploads if data is not None]
    enrolled = await run_sync(
        request,
        _enroll_named,
        vault,
        collection,
        subject,
        readable,
        largest=params.largest,
        keep_copies=settings.keep_photos,
        anyway=anyway,
    )
    outcomes = _merge(uploads, enrolled)
    return {
        "collection": collection,
        "subject": subject,
        "enrolled": sum(1 for o in outcomes if o.ok),
        "rejected": sum(1 for o in outcomes if not o.ok),
        "outcomes": [_outcome_json(o) for o in outcomes],
        "request_id": request_id(request),
    }


def _enroll_named(
    vault: Vault, collection: str, subject: str, readable: list[tuple[str, bytes]], **options: Any
) -> list[EnrollOutcome]:
    """Enroll the uploads, then keep each enrolled photo's uploaded file name with its image record
    (``original_name``): outcomes and sample lists name the user's file, never the server's copy."""
    outcomes = photos.enroll_photos(vault, collection, subject, readable, **options)
    samples.record_original_names(vault, collection, outcomes, [name for name, _ in readable])
    return outcomes


def _merge(uploads: list[NamedUpload], enrolled: list[EnrollOutcome]) -> list[EnrollOutcome]:
    """One outcome per upload, in order: the vault's for readable uploads, the refusal for the others
    (too large to read)."""
    it = iter(enrolled)
    merged: list[EnrollOutcome] = []
    for name, data, error in uploads:
        if data is None:
            assert error is not None
            merged.append(
                EnrollOutcome(
                    image=name,
                    status="rejected",
                    reason=error.code,
                    message=error.message,
                    original_name=name,
                )
            )
        else:
            merged.append(next(it))
    return merged


@router.get(
    "/{subject}/samples/{sample_id}/thumbnail",
    summary="A face thumbnail of one sample; each one shown is audited (sample.view), and every refusal "
    "is the same 404 thumbnail_unavailable",
    responses={200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
)
async def sample_thumbnail(
    request: Request,
    collection: str,
    subject: str,
    sample_id: int,
    purpose: str | None = Query(
        default=None, max_length=500, description="Why the face is looked at (audited with the read)."
    ),
    case_id: str | None = Query(default=None, max_length=200, description="The case it belongs to."),
    size: int = Query(default=photos.THUMB_SIDE, ge=32, le=512, description="Longest side in pixels."),
    vault: Vault = vault_for("enroller", "searcher", "reviewer"),
) -> Response:
    data = await run_sync(
        request,
        photos.sample_thumbnail,
        vault,
        collection,
        subject,
        sample_id,
        side=size,
        purpose=purpose,
        case_id=case_id,
    )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.delete(
    "/{subject}/samples/{sample_id}",
    summary="Erase one sample of this subject (a wrong photo): template, crop, image record and kept "
    "copy go, with an erasure receipt in the audit log; the subject and consent record stay",
)
async def delete_sample(
    request: Request, collection: str, subject: str, sample_id: int, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    receipt = to_json(await run_sync(request, vault.erase_sample, collection, subject, sample_id))
    return {**receipt, "request_id": request_id(request)}


class SampleMoveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=1, max_length=300, description="A subject reference of the same collection.")


@router.post(
    "/{subject}/samples/{sample_id}/move",
    summary="Move one sample to the subject it really shows (same collection, valid consent; audited)",
)
async def move_sample(
    request: Request,
    collection: str,
    subject: str,
    sample_id: int,
    body: SampleMoveBody,
    vault: Vault = vault_for("enroller"),
) -> dict[str, Any]:
    moved = to_json(await run_sync(request, vault.move_sample, collection, subject, sample_id, body.to))
    return {**moved, "request_id": request_id(request)}
