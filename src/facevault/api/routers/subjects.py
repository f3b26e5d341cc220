"""Subjects with their consent records, their samples (enrollment from uploaded photos), sample
thumbnails, and erasure."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from PIL import Image

from ... import imaging
from ...errors import FaceVaultError, InputError, NotFoundError
from ...results import EnrollOutcome
from ..auth import require
from ..context import request_id, traced, vault_as
from ..keys import Principal
from ..runner import run_sync
from ..schemas import EnrollParams, SubjectCreate, body_doc, parse_body
from ..uploads import read_upload, safe_name

router = APIRouter(prefix="/api/v1/collections/{collection}/subjects", tags=["subjects"])
THUMB_SIDE = 160


@router.get("", summary="List subjects, optionally filtered by name")
async def list_subjects(
    request: Request,
    collection: str,
    q: str | None = Query(default=None, max_length=200, description="Part of a name (any case)."),
    principal: Principal = Depends(require("enroller", "reviewer")),
) -> list[dict[str, Any]]:
    rows = await run_sync(request, vault_as(request, principal).list_subjects, collection)
    if q:
        needle = q.casefold()
        rows = [r for r in rows if needle in r["name"].casefold() or needle == (r["external_id"] or "")]
    return rows


def _add_subject(
    request: Request,
    principal: Principal,
    collection: str,
    body: SubjectCreate,
    evidence: tuple[str, bytes] | None,
) -> dict[str, Any]:
    vault = vault_as(request, principal)
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
    request: Request, collection: str, principal: Principal = Depends(require("enroller"))
) -> dict[str, Any]:
    body, files = await parse_body(request, SubjectCreate, max_files=1)
    evidence = None
    if files.get("consent_file"):
        upload = files["consent_file"][0]
        data = await read_upload(upload, request.app.state.api_settings.max_upload_bytes)
        evidence = (safe_name(upload.filename, "consent"), data)
    return await run_sync(request, _add_subject, request, principal, collection, body, evidence)


@router.get("/{subject}", summary="A subject: consent record and samples")
async def get_subject(
    request: Request,
    collection: str,
    subject: str,
    principal: Principal = Depends(require("enroller", "reviewer")),
) -> dict[str, Any]:
    return await run_sync(request, vault_as(request, principal).get_subject, collection, subject)


def erase_subject(request: Request, principal: Principal, collection: str, subject: str) -> dict[str, Any]:
    """Erase a subject: templates, samples, image records, review records, consent record, index entries
    and kept photo copies, with an erasure receipt in the audit log."""
    result = vault_as(request, principal).erase_subject(collection, subject)
    return {**result, "samples_removed": result["samples_erased"], "request_id": request_id(request)}


@router.delete("/{subject}", summary="Erase a subject with every sample and its consent record")
async def delete_subject(
    request: Request, collection: str, subject: str, principal: Principal = Depends(require("enroller"))
) -> dict[str, Any]:
    return await run_sync(request, erase_subject, request, principal, collection, subject)


# ---- samples ---------------------------------------------------------------------------------------
def _enroll(
    request: Request,
    principal: Principal,
    collection: str,
    subject: str,
    uploads: list[tuple[str, bytes | None, FaceVaultError | None]],
    largest: bool,
) -> list[EnrollOutcome]:
    """Enroll readable uploads; uploads refused before the vault (too large) keep their outcome."""
    settings = request.app.state.api_settings
    photos = request.app.state.photos
    enroll, extra = traced(request, principal, "enroll")
    coll = vault_as(request, principal).get_collection(collection)
    items: list[Any] = []
    written: list[Path] = []
    for name, data, _ in uploads:
        if data is None:
            continue
        if settings.keep_photos:
            path, new = photos.save(coll["id"], data)
            items.append(str(path))
            if new:
                written.append(path)
        else:
            items.append((f"upload:{name}", data))
    outcomes: list[EnrollOutcome] = []
    try:
        outcomes = enroll(collection, subject, items, largest=largest, **extra) if items else []
    finally:
        kept = {o.image for o in outcomes if o.ok}
        photos.discard(str(p) for p in written if str(p) not in kept)
    merged: list[EnrollOutcome] = []
    it = iter(outcomes)
    for name, data, error in uploads:
        if data is None:
            assert error is not None
            merged.append(
                EnrollOutcome(image=name, status="rejected", reason=error.code, message=error.message)
            )
        else:
            out = next(it)
            out.image = name  # report the uploaded file's name, not where its copy lives
            merged.append(out)
    return merged


@router.post(
    "/{subject}/samples",
    summary="Enroll photos of this subject (one face each); every photo gets an outcome",
    openapi_extra=body_doc(None, EnrollParams, {"images": "many"}),
)
async def enroll_samples(
    request: Request, collection: str, subject: str, principal: Principal = Depends(require("enroller"))
) -> dict[str, Any]:
    settings = request.app.state.api_settings
    params, files = await parse_body(request, EnrollParams, max_files=settings.max_files_per_request)
    images = files.get("images", [])
    if not images:
        raise InputError("send one or more photos as multipart file parts named 'images'", code="no_images")
    uploads: list[tuple[str, bytes | None, FaceVaultError | None]] = []
    for i, upload in enumerate(images, 1):
        name = safe_name(upload.filename, f"photo-{i}")
        try:
            uploads.append((name, await read_upload(upload, settings.max_upload_bytes), None))
        except FaceVaultError as exc:
            uploads.append((name, None, exc))
    outcomes = await run_sync(
        request, _enroll, request, principal, collection, subject, uploads, params.largest
    )
    return {
        "collection": collection,
        "subject": subject,
        "enrolled": sum(1 for o in outcomes if o.ok),
        "rejected": sum(1 for o in outcomes if not o.ok),
        "outcomes": [o.to_dict() for o in outcomes],
        "request_id": request_id(request),
    }


def _thumbnail(
    request: Request, principal: Principal, collection: str, subject: str, sample_id: int
) -> bytes:
    """A face crop of a sample's source photo, only while the file still exists and still has the
    enrolled content (a changed file is not that sample any more)."""
    vault = vault_as(request, principal)
    found = vault.get_subject(collection, subject)
    sample = next((s for s in found.get("samples", []) if s["sample_id"] == sample_id), None)
    if sample is None:
        raise NotFoundError(f"subject {subject!r} has no sample {sample_id}", code="sample_not_found")
    source = sample["image"]
    unavailable = NotFoundError(
        "the photo of this sample is no longer available", code="thumbnail_unavailable"
    )
    if source.startswith("upload:") or not Path(source).is_file():
        raise unavailable
    try:
        decoded = imaging.load_image(
            source, max_bytes=vault.settings.max_image_bytes, max_pixels=vault.settings.max_image_pixels
        )
    except FaceVaultError:
        raise unavailable from None
    if decoded.sha256 != sample["image_sha256"]:
        raise unavailable
    x1, y1, x2, y2 = sample["box"]
    pad = 0.25 * max(x2 - x1, y2 - y1)
    img = Image.fromarray(decoded.pixels)
    crop = img.crop(
        (
            max(0, int(x1 - pad)),
            max(0, int(y1 - pad)),
            min(img.width, int(x2 + pad)),
            min(img.height, int(y2 + pad)),
        )
    )
    crop.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@router.get(
    "/{subject}/samples/{sample_id}/thumbnail",
    summary="A face thumbnail of one sample (404 once its photo is gone)",
    responses={200: {"content": {"image/jpeg": {}}}},
    response_class=Response,
)
async def sample_thumbnail(
    request: Request,
    collection: str,
    subject: str,
    sample_id: int,
    principal: Principal = Depends(require("enroller", "searcher", "reviewer")),
) -> Response:
    data = await run_sync(request, _thumbnail, request, principal, collection, subject, sample_id)
    return Response(data, media_type="image/jpeg")
