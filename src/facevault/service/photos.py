"""Photos enrolled over HTTP: the copies the server keeps of them, and the face thumbnails cut from a
sample's source photo (what the web UI shows next to a match).

A kept copy lives at ``settings.photo_path(collection id, sha256 of the file)`` (one definition of the
layout, in ``facevault.config``) and is the source the vault records for the sample, so erasing the
subject or deleting the collection removes it. Everything here goes through the Vault's public API.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .. import imaging
from ..errors import FaceVaultError, NotFoundError
from ..results import EnrollOutcome

if TYPE_CHECKING:
    from .vault import Vault

THUMB_SIDE = 160
# A thumbnail shows the face box grown by this share of its longer side on every side.
THUMB_PAD = 0.25


# ---- kept copies ------------------------------------------------------------------------------------
def photos_root(vault: Vault) -> Path:
    """Where every kept copy lives (``<home>/photos``), as an absolute path."""
    return Path(vault.settings.photos_dir).resolve()


def copy_path(vault: Vault, collection_id: int, data: bytes) -> Path:
    """The kept copy of ``data`` in a collection (an absolute path: it is recorded as the sample's
    source, which must not depend on the server's working directory)."""
    sha = hashlib.sha256(data).hexdigest()
    return Path(vault.settings.photo_path(int(collection_id), sha)).resolve()


def keep_copy(vault: Vault, collection_id: int, data: bytes) -> tuple[Path, bool]:
    """Write the copy unless that exact photo is already kept; returns (path, newly written)."""
    path = copy_path(vault, collection_id, data)
    if path.exists():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path, True


def is_kept_copy(vault: Vault, source: str) -> bool:
    """Whether ``source`` is one of the server's kept copies (anything else is never deleted here)."""
    try:
        return Path(source).resolve().is_relative_to(photos_root(vault))
    except (OSError, ValueError):
        return False


def discard_copies(vault: Vault, sources: Iterable[str]) -> int:
    """Delete the kept copies among ``sources``; returns how many files were removed."""
    removed = 0
    for src in sources:
        if is_kept_copy(vault, src):
            try:
                Path(src).unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def discard_collection_copies(vault: Vault, collection_id: int) -> None:
    shutil.rmtree(vault.settings.collection_photos_dir(int(collection_id)), ignore_errors=True)


# ---- use cases --------------------------------------------------------------------------------------
def enroll_photos(
    vault: Vault,
    collection: str,
    subject: str,
    photos: Sequence[tuple[str, bytes]],
    *,
    largest: bool = False,
    keep_copies: bool = True,
) -> list[EnrollOutcome]:
    """Enroll uploaded photos, each given as (display name, file bytes); one outcome per photo, in order,
    naming the photo by its display name.

    With ``keep_copies`` each photo is first kept (see :func:`keep_copy`) and enrolled from its copy, so
    thumbnails can be cut from it later; copies written for photos that were not enrolled are removed
    again. Without it the photos are enrolled from memory as ``upload:<name>``."""
    if not photos:
        return []
    if keep_copies:
        outcomes = _enroll_from_copies(vault, collection, subject, [d for _, d in photos], largest)
    else:
        items = [(f"upload:{name}", data) for name, data in photos]
        outcomes = vault.enroll(collection, subject, items, largest=largest)
    for (name, _), out in zip(photos, outcomes, strict=True):
        out.image = name  # the uploaded file's name, not where its copy lives
    return outcomes


def _enroll_from_copies(
    vault: Vault, collection: str, subject: str, photos: Sequence[bytes], largest: bool
) -> list[EnrollOutcome]:
    coll = vault.get_collection(collection)
    items: list[Any] = []
    written: list[Path] = []
    for data in photos:
        path, new = keep_copy(vault, coll["id"], data)
        items.append(str(path))
        if new:
            written.append(path)
    outcomes: list[EnrollOutcome] = []
    try:
        outcomes = vault.enroll(collection, subject, items, largest=largest)
    finally:
        kept = {o.image for o in outcomes if o.ok}
        discard_copies(vault, (str(p) for p in written if str(p) not in kept))
    return outcomes


def delete_collection(vault: Vault, collection: str) -> dict[str, Any]:
    """Delete a collection with every subject and sample in it, and the photo copies kept for it."""
    coll = vault.get_collection(collection)
    counts = vault.delete_collection(collection)
    discard_collection_copies(vault, coll["id"])
    return counts


def sample_thumbnail(
    vault: Vault, collection: str, subject: str, sample_id: int, *, side: int = THUMB_SIDE
) -> bytes:
    """A JPEG face crop (at most ``side`` pixels square) of a sample's source photo, only while that file
    still exists and still has the enrolled content (a changed file is not that sample any more).

    Raises NotFoundError ``sample_not_found`` when the subject has no such sample and
    ``thumbnail_unavailable`` when its photo is gone or changed."""
    found = vault.get_subject(collection, subject)
    sample = next((s for s in found.get("samples", []) if s["sample_id"] == sample_id), None)
    if sample is None:
        raise NotFoundError(f"subject {subject!r} has no sample {sample_id}", code="sample_not_found")
    source = str(sample["image"])
    unavailable = NotFoundError(
        "the photo of this sample is no longer available", code="thumbnail_unavailable"
    )
    if source.startswith("upload:") or not Path(source).is_file():
        raise unavailable
    settings = vault.settings
    try:
        decoded = imaging.load_image(
            source, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    except FaceVaultError:
        raise unavailable from None
    if decoded.sha256 != sample["image_sha256"]:
        raise unavailable
    return _face_jpeg(decoded.pixels, sample["box"], side)


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
