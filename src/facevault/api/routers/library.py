"""Photo libraries over HTTP. Roles: ``admin`` creates libraries and erases people; ``enroller`` adds
photos (paths on the server, or uploads the library keeps copies of) and curates people (name with
consent, merge, split, move, remove, hide, recluster); ``enroller``, ``reviewer`` and ``searcher`` browse
people, face crops and photos; only ``searcher`` (and admin) searches, with a purpose, audited."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ...errors import InputError
from ...service import Vault
from ..deps import vault_for
from ..errors import ApiError
from ..runner import run_sync
from ..schemas import body_doc, known_model, parse_body
from ..serialize import to_json
from ..uploads import read_named_uploads, read_upload, safe_name

router = APIRouter(prefix="/api/v1/libraries", tags=["libraries"])
BROWSE = ("enroller", "reviewer", "searcher")
COUNTS = ("photos", "added", "skipped", "failed", "faces", "blocked", "people_created")


class LibraryCreate(BaseModel):
    name: str = Field(max_length=200)
    purpose: str = Field(max_length=2000)
    basis: str = Field(max_length=2000)
    owner: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=100)
    retention_days: int = 1095
    keep_crops: bool = False


class PhotosAdd(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=10_000)
    recursive: bool = False


class PersonName(BaseModel):
    name: str = Field(max_length=300)
    purpose: str = Field(max_length=2000)
    consent_text: str = Field(max_length=20_000)
    consent_by: str | None = Field(default=None, max_length=200)
    expires: str | None = Field(default=None, max_length=40)


class Merge(BaseModel):
    other: str = Field(max_length=20)


class Faces(BaseModel):
    faces: list[int] = Field(min_length=1, max_length=10_000)


class MoveFace(BaseModel):
    to: str = Field(max_length=20)


class Hide(BaseModel):
    hidden: bool = True


class Feature(BaseModel):
    face_id: int


@router.get("", summary="List the photo libraries")
async def list_libraries(request: Request, vault: Vault = vault_for(*BROWSE)) -> list[dict[str, Any]]:
    return to_json(await run_sync(request, vault.libraries.list_libraries))


@router.post("", status_code=201, summary="Create a library with its purpose, legal basis and retention")
async def create_library(request: Request, body: LibraryCreate, vault: Vault = vault_for()) -> dict[str, Any]:
    opts = body.model_dump(exclude={"name"})
    if "model" in opts:
        opts["model"] = known_model(opts["model"])  # an unknown model is bad input (422), not a 503
    return to_json(await run_sync(request, vault.libraries.create_library, body.name, **opts))


@router.post("/{library}/photos", summary="Add photos (server paths): resumable, de-duplicated")
async def add_photos(
    request: Request, library: str, body: PhotosAdd, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    configured = request.app.state.api_settings.library_roots
    roots = [Path(r).expanduser().resolve() for r in configured.split(os.pathsep) if r.strip()]
    if not roots:  # otherwise an enroller key could index, then view, any image the server can read
        raise ApiError(
            403,
            "server_paths_disabled",
            "adding photos by server path over HTTP is off on this server: upload them "
            "(POST /api/v1/libraries/{library}/uploads), or an operator allows folders with "
            "FACEVAULT_API_LIBRARY_ROOTS",
        )
    return to_json(
        await run_sync(
            request,
            vault.libraries.library_add,
            library,
            body.paths,
            recursive=body.recursive,
            workers=1,
            roots=roots,
        )
    )


class UploadParams(BaseModel):
    """No text fields: the photos are the file parts ``files``."""


@router.post(
    "/{library}/uploads",
    summary="Add uploaded photos (kept as copies): de-duplicated, one result per file",
    openapi_extra=body_doc(None, UploadParams, {"files": "many"}),
)
async def upload_photos(
    request: Request, library: str, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    settings = request.app.state.api_settings
    _, parts = await parse_body(request, UploadParams, max_files=settings.max_files_per_request)
    uploads = parts.get("files", [])
    if not uploads:
        raise InputError("send one or more photos as multipart file parts named 'files'", code="no_images")
    read = await read_named_uploads(uploads, settings.max_upload_bytes)  # too large: that file fails alone
    readable = [(name, data) for name, data, _ in read if data is not None]
    if readable:
        report = await run_sync(request, vault.libraries.library_upload, library, readable)
    else:
        await run_sync(request, vault.libraries.get_library, library)  # an unknown library: 404
        report = {"library": library, **dict.fromkeys(COUNTS, 0), "audit_seq": None, "files": []}
    done = iter(report["files"])
    files = [
        next(done)
        if data is not None
        else {
            "name": name,
            "sha256": None,
            "status": "failed",
            "faces": 0,
            "photo_id": None,
            "error": error.code if error else None,
        }
        for name, data, error in read
    ]
    unread = sum(1 for _, data, _ in read if data is None)
    report |= {"files": files, "photos": report["photos"] + unread, "failed": report["failed"] + unread}
    return to_json(report)


@router.get("/{library}/photos/{photo_id}", summary="A photo's pixels (JPEG) in the frame of its face boxes")
async def photo_image(
    request: Request, library: str, photo_id: int, vault: Vault = vault_for(*BROWSE)
) -> Response:
    data, media_type = await run_sync(request, vault.libraries.library_photo, library, photo_id)
    return Response(content=data, media_type=media_type)  # Cache-Control: no-store, as every /api/ reply


@router.get(
    "/{library}/people", summary="The people of a library with face and photo counts, a page at a time"
)
async def people(
    request: Request,
    library: str,
    hidden: bool = False,
    limit: int | None = Query(default=None, ge=1, le=1000, description="People per page (default: all)."),
    offset: int = Query(default=0, ge=0, description="People to skip, most faces first."),
    vault: Vault = vault_for(*BROWSE),
) -> list[dict[str, Any]]:
    return to_json(
        await run_sync(
            request,
            vault.libraries.library_people,
            library,
            include_hidden=hidden,
            limit=limit,
            offset=offset,
        )
    )


@router.get("/{library}/people/{person}", summary="One person and every face, with its photo")
async def person(
    request: Request, library: str, person: str, vault: Vault = vault_for(*BROWSE)
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.libraries.library_person, library, person))


@router.get("/{library}/faces/{face_id}/crop", summary="A face's thumbnail (libraries that keep crops)")
async def crop(request: Request, library: str, face_id: int, vault: Vault = vault_for(*BROWSE)) -> Response:
    found = await run_sync(request, vault.libraries.library_face_crop, library, face_id)
    if found is None:
        raise InputError("this library keeps no face crops", code="no_crop")
    data, media_type = found
    return Response(content=data, media_type=media_type)  # Cache-Control: no-store, as every /api/ reply


@router.post("/{library}/people/{person}/name", summary="Name a person, with a consent record")
async def name(
    request: Request, library: str, person: str, body: PersonName, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    consent = body.model_dump(exclude={"name"})
    return to_json(
        await run_sync(request, vault.libraries.library_name_person, library, person, body.name, **consent)
    )


@router.post("/{library}/people/{person}/merge", summary="Merge another person into this one")
async def merge(
    request: Request, library: str, person: str, body: Merge, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.libraries.library_merge, library, person, body.other))


@router.post("/{library}/people/{person}/split", summary="Move faces out into a new person")
async def split(
    request: Request, library: str, person: str, body: Faces, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.libraries.library_split, library, person, body.faces))


@router.post("/{library}/faces/{face_id}/move", summary="Put a face on another person")
async def move(
    request: Request, library: str, face_id: int, body: MoveFace, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.libraries.library_move_face, library, face_id, body.to))


@router.post("/{library}/people/{person}/remove/{face_id}", summary="Not this person: remove a face")
async def remove(
    request: Request, library: str, person: str, face_id: int, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.libraries.library_remove_face, library, person, face_id))


@router.post("/{library}/people/{person}/hide", summary="Hide (or show) a person")
async def hide(
    request: Request, library: str, person: str, body: Hide, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.libraries.library_hide, library, person, body.hidden))


@router.post("/{library}/people/{person}/feature", summary="Choose the face a person is shown with")
async def feature(
    request: Request, library: str, person: str, body: Feature, vault: Vault = vault_for("enroller")
) -> dict[str, Any]:
    return to_json(
        await run_sync(request, vault.libraries.library_feature_face, library, person, body.face_id)
    )


@router.post("/{library}/recluster", summary="Group every face again, keeping manual decisions")
async def recluster(request: Request, library: str, vault: Vault = vault_for("enroller")) -> dict[str, Any]:
    return to_json(await run_sync(request, vault.libraries.library_recluster, library))


@router.delete(
    "/{library}/people/{person}",
    summary="Erase a person: templates, crops, name; photos kept, blurred or removed",
)
async def erase(
    request: Request,
    library: str,
    person: str,
    photos: str = Query(
        default="keep",
        pattern="^(keep|blur|remove)$",
        description="The photos the person is in: keep them, blur the person's faces in the kept copies, "
        "or remove the photos from the library (for everyone in them).",
    ),
    vault: Vault = vault_for(),
) -> dict[str, Any]:
    return to_json(
        await run_sync(request, vault.libraries.library_erase_person, library, person, photos=photos)
    )


@router.post("/{library}/search", summary="Every photo of the probe's person (purpose required, audited)")
async def search(request: Request, library: str, vault: Vault = vault_for("searcher")) -> dict[str, Any]:
    form = await request.form()
    upload = form.get("image")
    purpose = form.get("purpose")
    if upload is None or isinstance(upload, str):
        raise InputError("send one photo as the file part 'image'", code="no_image")
    data = await read_upload(upload, request.app.state.api_settings.max_upload_bytes)
    probe = (f"upload:{safe_name(upload.filename, 'image')}", data)
    case = form.get("case_id")
    return to_json(
        await run_sync(
            request,
            vault.libraries.library_search,
            library,
            probe,
            purpose=str(purpose or ""),
            case_id=str(case) if case else None,
        )
    )
