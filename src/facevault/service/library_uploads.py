"""Photos added to a library by upload (the web UI, ``POST /api/v1/libraries/{library}/uploads``).

An uploaded photo has no server path to refer to, so the library keeps a copy of it at
``settings.library_photo_path(library id, sha256)`` and the library is marked ``keep_copies``. The
photos go through the same ingest as ``library add`` (``library_ingest.ingest``: de-duplicated by
SHA-256, resumable, one bad file never stops the batch, opt-outs block faces, people placed after each
chunk, one ``library.add`` audit entry); each copy is written to the library staging area before its
chunk's transaction and moved into place only once its photo row has committed (service/photos.py), so
no copy exists without the row that owns it. A photo is recorded with the source ``upload:<name>``,
its uploaded file name tamed (never used as a path). A face blocked by an opt-out is not stored and is
blurred in the copy before the copy is staged (the file's result counts it as ``faces_blurred``; the
photo's row then has the blurred copy's hash, and the uploaded file's hash is remembered, so uploading
it again is skipped: library_ingest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InputError
from .context import ServiceContext
from .library_ingest import FileOutcome, Incoming, ingest

_UNSAFE = re.compile(r"[^\w.() -]+")
MAX_NAME = 120


def upload_name(name: str | None, index: int) -> str:
    """The display name of an uploaded file: its base name, without control or path characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" ._")[:MAX_NAME]
    return base or f"photo-{index}"


def add_uploads(
    ctx: ServiceContext,
    library: str,
    files: Sequence[tuple[str, bytes]],
    progress: Callable[[dict[str, int]], None] | None = None,
    *,
    workers: int | None = 1,
) -> dict[str, Any]:
    """Add uploaded photos, each (file name, bytes), to ``library``, keeping a copy of each. Returns the
    counts of ``library add`` plus ``files``: one result per file, in order (name, sha256 of the file
    uploaded, status ``added``/``skipped``/``failed``, faces stored, photo_id, the error's code when it
    failed, and ``faces_blurred`` when an opt-out blocked faces of it)."""
    if not files:
        raise InputError("send one or more photos", code="no_images")
    names = [upload_name(name, i) for i, (name, _) in enumerate(files, 1)]
    with ctx.write() as conn:
        lib = ctx.store.get_library(conn, library)
        if not lib["keep_copies"]:
            ctx.store.update_library(conn, lib["id"], keep_copies=True)
    items = [Incoming(f"upload:{n}", data) for n, (_, data) in zip(names, files, strict=True)]
    report, outcomes = ingest(ctx, library, items, keep_copies=True, workers=workers, progress=progress)
    report["files"] = [_file_view(n, o) for n, o in zip(names, outcomes, strict=True)]
    return report


def _file_view(name: str, outcome: FileOutcome) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "sha256": outcome.sha256,
        "status": outcome.status,
        "faces": outcome.faces,
        "photo_id": outcome.photo_id,
    }
    if outcome.error:
        out["error"] = outcome.error
    if outcome.blurred:  # faces an opt-out blocks: not stored, and blurred in the copy kept
        out["faces_blurred"] = outcome.blurred
    return out
