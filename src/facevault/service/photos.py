"""Photos enrolled over HTTP: the copies the server keeps of them, and the face thumbnails cut from a
sample's source photo (what the web UI shows next to a match).

A kept copy lives at ``settings.photo_path(collection id, sha256 of the file)`` (one definition of the
layout, in ``facevault.config``) and is the source the vault records for the sample, so erasing the
subject or deleting the collection removes it.

No file holding a face exists without a store row that owns it (an image row of that collection with
that hash): a copy is written to ``<photos>/.staging`` first, named after its collection, hash and
writer process, and moved into place only once the enrollment has committed; after the move the image
row is looked up again, so an erasure that committed in between cannot leave the copy behind. A writer
killed on the way leaves a staging file: the next open finishes the move if the enrollment committed,
and deletes it otherwise (``sweep_staging``); ``doctor`` finds any other file that no row owns.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .. import faults, imaging
from ..audit_events import SampleViewed
from ..config import Settings
from ..errors import ConflictError, FaceVaultError, InputError, NotFoundError
from ..results import EnrollOutcome
from .context import ServiceContext

if TYPE_CHECKING:
    from .vault import Vault

THUMB_SIDE = 160
# A thumbnail shows the face box grown by this share of its longer side on every side.
THUMB_PAD = 0.25
STAGING = ".staging"
# c<collection id>-<sha256>-<pid>-<random>.part: which copy it is, and which process is writing it.
STAGED_NAME = re.compile(r"c(\d+)-([0-9a-f]{64})-(\d+)-[0-9a-f]+\.part")
# A staging file older than this belongs to no live writer, even if its pid was given to another process.
STAGING_MAX_AGE_S = 3600.0
# Every refused thumbnail read answers this, whatever the reason: a caller cannot tell from the answer
# whether the subject or the sample exists (finding 9 of issue 11).
THUMBNAIL_REFUSED = "no thumbnail for this subject and sample"


# ---- kept copies ------------------------------------------------------------------------------------
def staging_dir(settings: Settings) -> Path:
    return Path(settings.photos_dir).resolve() / STAGING


def final_path(settings: Settings, collection_id: int, sha256: str) -> Path:
    """The kept copy of a photo (an absolute path: it is recorded as the sample's source, which must
    not depend on the server's working directory)."""
    return Path(settings.photo_path(int(collection_id), sha256)).resolve()


@dataclass(frozen=True)
class Staged:
    """A photo copy written to the staging area, waiting for its enrollment to commit."""

    path: Path
    final: Path
    collection_id: int
    sha256: str


def stage(settings: Settings, collection_id: int, data: bytes) -> Staged:
    """Write ``data`` to the staging area (0600, fsynced) under a name that says what it is."""
    sha = hashlib.sha256(data).hexdigest()
    folder = staging_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"c{int(collection_id)}-{sha}-{os.getpid()}-{uuid.uuid4().hex[:12]}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Staged(path, final_path(settings, collection_id, sha), int(collection_id), sha)


def owned(ctx: ServiceContext, collection_id: int, sha256: str) -> bool:
    """Whether an image row owns the kept copy of this photo in this collection."""
    with ctx.read() as conn:
        return ctx.store.image_by_sha(conn, collection_id, sha256) is not None


def place(ctx: ServiceContext, staged: Staged) -> bool:
    """Move a staged copy into place after its enrollment committed; returns whether it stayed. The row
    is looked up after the move: if an erasure committed meanwhile (its own unlink came too early to see
    this file), the copy goes again."""
    staged.final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.replace(staged.path, staged.final)
    except FileNotFoundError:  # a sweep of another process took it (it thought this writer dead)
        return False
    faults.point("photos:placed")
    if owned(ctx, staged.collection_id, staged.sha256):
        return True
    staged.final.unlink(missing_ok=True)
    return False


def _writer_alive(pid: int, path: Path) -> bool:
    if pid == os.getpid():
        return True
    try:
        if time.time() - path.stat().st_mtime > STAGING_MAX_AGE_S:
            return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except FileNotFoundError:
        return True  # gone already: its writer moved or removed it
    except PermissionError:
        return True  # a process of another user has that pid
    return True


def staging_leftovers(settings: Settings) -> list[Path]:
    """Staging files whose writer is gone (killed between writing a copy and moving or removing it)."""
    folder = staging_dir(settings)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        m = STAGED_NAME.fullmatch(path.name)
        if m is None or not _writer_alive(int(m.group(3)), path):
            out.append(path)
    return out


def sweep_staging(ctx: ServiceContext) -> tuple[int, int]:
    """Finish what killed writers left in the staging area: a copy whose enrollment committed is moved
    into place, any other is deleted. Returns (moved, deleted)."""
    moved = deleted = 0
    for path in staging_leftovers(ctx.settings):
        m = STAGED_NAME.fullmatch(path.name)
        if m is not None:
            cid, sha = int(m.group(1)), m.group(2)
            staged = Staged(path, final_path(ctx.settings, cid, sha), cid, sha)
            if not staged.final.exists() and owned(ctx, cid, sha) and place(ctx, staged):
                moved += 1
                continue
        path.unlink(missing_ok=True)
        deleted += 1
    return moved, deleted


def unowned_copies(ctx: ServiceContext) -> dict[int, list[Path]]:
    """Files under ``<photos>/c<collection id>`` that no image row owns, by collection id (doctor).
    The files are listed before the rows are read: a copy moved into place after its commit is owned by
    a row that the later read sees."""
    root = Path(ctx.settings.photos_dir).resolve()
    if not root.is_dir():
        return {}
    listed: dict[int, list[Path]] = {}
    for folder in sorted(root.iterdir()):
        m = re.fullmatch(r"c(\d+)", folder.name)
        if m is None or not folder.is_dir():
            continue
        listed[int(m.group(1))] = sorted(p for p in folder.rglob("*") if not p.is_dir())
    out: dict[int, list[Path]] = {}
    with ctx.read() as conn:
        for cid, files in listed.items():
            shas = ctx.store.image_shas(conn, cid)
            stray = [p for p in files if p.parent.name != f"c{cid}" or p.name not in shas]
            if stray:
                out[cid] = stray
    return out


def remove_copies(settings: Settings, collection_id: int, shas: Sequence[str]) -> int:
    """Delete the kept copies of these photos of a collection; returns how many files went."""
    removed = 0
    for sha in shas:
        try:
            final_path(settings, collection_id, sha).unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


# ---- use cases --------------------------------------------------------------------------------------
def enroll_photos(
    vault: Vault,
    collection: str,
    subject: str,
    photos: Sequence[tuple[str, bytes]],
    *,
    largest: bool = False,
    keep_copies: bool = True,
    anyway: bool = False,
) -> list[EnrollOutcome]:
    """Enroll uploaded photos, each given as (display name, file bytes); one outcome per photo, in order,
    naming the photo by its display name.

    With ``keep_copies`` each photo is staged, enrolled from memory under the path its kept copy will
    have, and moved there once the enrollment has committed (module docstring), so thumbnails can be cut
    from it later; a photo that was not enrolled leaves no file. Without it the photos are enrolled from
    memory as ``upload:<name>``. ``anyway``: enroll faces that resemble another subject (the warning
    tier of ``service.enroll``). Outcomes and their messages name the uploaded file, never the path or
    hash of the server's copy."""
    if not photos:
        return []
    if keep_copies:
        outcomes = _enroll_from_copies(vault, collection, subject, [d for _, d in photos], largest, anyway)
    else:
        items = [(f"upload:{name}", data) for name, data in photos]
        outcomes = (vault.enroll_anyway if anyway else vault.enroll)(
            collection, subject, items, largest=largest
        )
    for (name, _), out in zip(photos, outcomes, strict=True):
        if out.message and out.image and out.image in out.message:
            out.message = out.message.replace(out.image, name)
        out.image = name  # the uploaded file's name, not where its copy lives
    return outcomes


def _enroll_from_copies(
    vault: Vault, collection: str, subject: str, photos: Sequence[bytes], largest: bool, anyway: bool
) -> list[EnrollOutcome]:
    ctx = vault.context
    cid = int(vault.get_collection(collection)["id"])
    staged: list[Staged] = []
    try:
        for data in photos:
            staged.append(stage(ctx.settings, cid, data))
        faults.point("photos:staged")
        items: list[Any] = [(str(s.final), data) for s, data in zip(staged, photos, strict=True)]
        outcomes = (vault.enroll_anyway if anyway else vault.enroll)(
            collection, subject, items, largest=largest
        )
        faults.point("photos:enrolled")
        for st, out in zip(staged, outcomes, strict=True):
            if out.ok:
                place(ctx, st)
    finally:
        for st in staged:  # the copies of photos that were not enrolled (or all, on an error)
            st.path.unlink(missing_ok=True)
    return outcomes


def sample_thumbnail(
    vault: Vault,
    collection: str,
    subject: str,
    sample_id: int,
    *,
    side: int = THUMB_SIDE,
    purpose: str | None = None,
    case_id: str | None = None,
) -> bytes:
    """A JPEG face crop (at most ``side`` pixels square) of a sample's source photo, only while that file
    still exists and still has the enrolled content (a changed file is not that sample any more).

    Every thumbnail shown is audited (``sample.view``: who, which subject and sample, with the purpose
    and case id given). Every refusal is the same NotFoundError ``thumbnail_unavailable``, whether the
    subject, the sample or the photo is missing or the reference is ambiguous or malformed, so that the
    answer never tells a caller whether someone is enrolled."""
    refused = NotFoundError(THUMBNAIL_REFUSED, code="thumbnail_unavailable")
    try:
        found = vault.get_subject(collection, subject)
    except (NotFoundError, ConflictError, InputError):
        raise refused from None
    sample = next((s for s in found.get("samples", []) if s["sample_id"] == sample_id), None)
    if sample is None:
        raise refused
    source = str(sample["image"])
    if source.startswith("upload:") or not Path(source).is_file():
        raise refused
    settings = vault.settings
    try:
        decoded = imaging.load_image(
            source, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    except FaceVaultError:
        raise refused from None
    if decoded.sha256 != sample["image_sha256"]:
        raise refused
    jpeg = _face_jpeg(decoded.pixels, sample["box"], side)
    ctx = vault.context
    with ctx.write() as conn:  # no face leaves without its audit entry
        ctx.log(
            conn,
            SampleViewed(
                purpose=purpose,
                case_id=case_id,
                collection=collection,
                subject_id=int(found["id"]),
                sample_id=int(sample_id),
            ),
        )
    return jpeg


def _face_jpeg(pixels: Any, box: Sequence[float], side: int) -> bytes:
    x1, y1, x2, y2 = box
    pad = THUMB_PAD * max(x2 - x1, y2 - y1)
    img = Image.fromarray(pixels)
    crop = img.crop(
        (
            max(0, int(x1 - pad)),
            max(0, int(y1 - pad)),
            min(img.width, int(x2 + pad)),
            min(img.height, int(y2 + pad)),
        )
    )
    crop.thumbnail((side, side))
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
