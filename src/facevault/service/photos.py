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

The copies a photo library keeps of uploaded photos (``settings.library_photo_path(library id,
sha256)``, service/library_uploads.py) follow the same discipline with the same helpers
(``write_staged``, ``move_into_place``), in a staging area of their own under the library copies
folder; ``sweep_staging`` sweeps both.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
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
    """A photo copy written to a staging area, waiting for the transaction that owns it to commit.
    ``owner_id``: the collection (enrolled photos) or library (library photos) it belongs to."""

    path: Path
    final: Path
    owner_id: int
    sha256: str


def write_staged(folder: Path, stem: str, data: bytes) -> Path:
    """Write ``data`` to ``folder/<stem>-<pid>-<random>.part`` (0600, fsynced, never over another
    file): the name says what it is and which process is writing it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{stem}-{os.getpid()}-{uuid.uuid4().hex[:12]}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def move_into_place(path: Path, final: Path, still_owned: Callable[[], bool], fault: str) -> bool:
    """Move a staged file to ``final`` after the transaction owning it committed; returns whether it
    stayed. Ownership is checked after the move: if an erasure committed meanwhile (its own unlink came
    too early to see this file), the file goes again."""
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.replace(path, final)
    except FileNotFoundError:  # a sweep of another process took it (it thought this writer dead)
        return False
    faults.point(fault)
    if still_owned():
        return True
    final.unlink(missing_ok=True)
    return False


def stage(settings: Settings, collection_id: int, data: bytes) -> Staged:
    """Write an enrolled photo's copy to the staging area."""
    sha = hashlib.sha256(data).hexdigest()
    path = write_staged(staging_dir(settings), f"c{int(collection_id)}-{sha}", data)
    return Staged(path, final_path(settings, collection_id, sha), int(collection_id), sha)


def owned(ctx: ServiceContext, collection_id: int, sha256: str) -> bool:
    """Whether an image row owns the kept copy of this photo in this collection."""
    with ctx.read() as conn:
        return ctx.store.image_by_sha(conn, collection_id, sha256) is not None


def place(ctx: ServiceContext, staged: Staged) -> bool:
    """Move a staged copy into place after its enrollment committed; returns whether it stayed."""
    return move_into_place(
        staged.path, staged.final, lambda: owned(ctx, staged.owner_id, staged.sha256), "photos:placed"
    )


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


def _leftovers(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Files of ``folder`` whose writer is gone (group 3 of ``pattern`` is the writer's pid), and files
    that are not named as a writer names them."""
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        m = pattern.fullmatch(path.name)
        if m is None or not _writer_alive(int(m.group(3)), path):
            out.append(path)
    return out


def staging_leftovers(settings: Settings) -> list[Path]:
    """Staging files whose writer is gone (killed between writing a copy and moving or removing it)."""
    return _leftovers(staging_dir(settings), STAGED_NAME)


def sweep_staging(ctx: ServiceContext) -> tuple[int, int]:
    """Finish what killed writers left in the staging areas (enrolled photos, and library photos:
    ``sweep_library_copies``): a copy whose transaction committed is moved into place, any other is
    deleted. Returns (moved, deleted)."""
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
    lib_moved, lib_deleted = sweep_library_copies(ctx)
    return moved + lib_moved, deleted + lib_deleted


# ---- kept copies of library photos (service/library_uploads.py, library_erasure.py) ----------------
# l<library id>-<sha256>-<pid>-<random>.part: a copy waiting for its photo row to commit;
# l<library id>-files-<pid>-<random>.part: an erasure is changing that library's copies (blur, remove).
LIBRARY_STAGED_NAME = re.compile(r"l(\d+)-([0-9a-f]{64}|files)-(\d+)-[0-9a-f]+\.part")


def library_staging_dir(settings: Settings) -> Path:
    return Path(settings.library_photos_root).resolve() / STAGING


def library_copy_path(settings: Settings, library_id: int, sha256: str) -> Path:
    return Path(settings.library_photo_path(int(library_id), sha256)).resolve()


def library_copy_owned(ctx: ServiceContext, library_id: int, sha256: str) -> bool:
    """Whether a photo row of this library keeps a copy with this hash."""
    with ctx.read() as conn:
        row = ctx.store.library_photo_by_sha(conn, library_id, sha256)
    return row is not None and bool(row["stored"]) and row["status"] == "done"


def stage_library_copy(settings: Settings, library_id: int, data: bytes) -> Staged:
    """Write a library photo's copy to the library staging area (moved into place after its row
    commits: ``place_library_copy``)."""
    sha = hashlib.sha256(data).hexdigest()
    path = write_staged(library_staging_dir(settings), f"l{int(library_id)}-{sha}", data)
    return Staged(path, library_copy_path(settings, library_id, sha), int(library_id), sha)


def place_library_copy(ctx: ServiceContext, staged: Staged) -> bool:
    return move_into_place(
        staged.path,
        staged.final,
        lambda: library_copy_owned(ctx, staged.owner_id, staged.sha256),
        "library:copy_placed",
    )


def begin_library_file_changes(settings: Settings, library_id: int) -> Path:
    """A marker saying this process is about to change a library's kept copies after a commit (blur or
    remove them): if it is killed on the way, the next sweep deletes the copies no row owns any more."""
    return write_staged(library_staging_dir(settings), f"l{int(library_id)}-files", b"")


def unowned_library_copies(ctx: ServiceContext, library_id: int) -> list[Path]:
    """Files of a library's copy folder that no photo row keeps. The files are listed before the rows
    are read: a copy moved into place after its commit is owned by a row that the later read sees."""
    folder = library_copy_path(ctx.settings, library_id, "x").parent
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir())
    with ctx.read() as conn:
        kept = ctx.store.library_copy_shas(conn, library_id)
    return [p for p in files if p.name not in kept]


def sweep_library_copies(ctx: ServiceContext) -> tuple[int, int]:
    """What killed library writers left: a staged copy whose row committed is moved into place, any
    other staged file is deleted, and where an erasure was changing copies, the copies no row keeps
    any more are deleted. Returns (moved, deleted)."""
    moved = deleted = 0
    changed: set[int] = set()
    for path in _leftovers(library_staging_dir(ctx.settings), LIBRARY_STAGED_NAME):
        m = LIBRARY_STAGED_NAME.fullmatch(path.name)
        if m is not None and m.group(2) == "files":
            changed.add(int(m.group(1)))
        elif m is not None:
            lid, sha = int(m.group(1)), m.group(2)
            staged = Staged(path, library_copy_path(ctx.settings, lid, sha), lid, sha)
            if (
                not staged.final.exists()
                and library_copy_owned(ctx, lid, sha)
                and place_library_copy(ctx, staged)
            ):
                moved += 1
                continue
        path.unlink(missing_ok=True)
        deleted += 1
    for lid in sorted(changed):
        for path in unowned_library_copies(ctx, lid):
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
