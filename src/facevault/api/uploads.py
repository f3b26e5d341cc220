"""Getting image bytes out of a request (multipart parts or base64 JSON) within the size limits, and
the optional copies of enrolled photos that let the UI show thumbnails of matched samples."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from starlette.datastructures import UploadFile

from ..errors import ImageTooLargeError, InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
CHUNK = 1024 * 1024


def safe_name(filename: str | None, default: str = "upload") -> str:
    """A display name for an uploaded file: its base name, tamed. It is never used as a server path."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")[:120]
    return base or default


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read one multipart file part, refusing to hold more than ``max_bytes`` of it."""
    buf = bytearray()
    while chunk := await upload.read(CHUNK):
        buf += chunk
        if len(buf) > max_bytes:
            raise ImageTooLargeError(
                f"{safe_name(upload.filename)} is larger than the upload limit of {max_bytes} bytes"
            )
    return bytes(buf)


def decode_base64(text: str, max_bytes: int, field: str) -> bytes:
    if len(text) > (max_bytes * 4) // 3 + 8:
        raise ImageTooLargeError(f"{field} is larger than the upload limit of {max_bytes} bytes")
    if "," in text[:100] and text.startswith("data:"):
        text = text.split(",", 1)[1]  # a data: URL as a browser makes it
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{field} is not valid base64", code="invalid_base64") from exc
    if not data:
        raise InputError(f"{field} is empty", code="empty_image")
    return data


class PhotoStore:
    """Copies of enrolled photos under ``<home>/photos/c<collection id>/<sha256>``. The vault records
    the copy's path as the sample's source; erasing a subject through the API deletes its copies."""

    def __init__(self, home: Path) -> None:
        self.root = (home / "photos").resolve()

    def path_for(self, collection_id: int, data: bytes) -> Path:
        return self.root / f"c{int(collection_id)}" / hashlib.sha256(data).hexdigest()

    def save(self, collection_id: int, data: bytes) -> tuple[Path, bool]:
        """Write the photo unless that exact photo is already kept; returns (path, newly written)."""
        path = self.path_for(collection_id, data)
        if path.exists():
            return path, False
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return path, True

    def owns(self, source: str) -> bool:
        try:
            return Path(source).resolve().is_relative_to(self.root)
        except (OSError, ValueError):
            return False

    def discard(self, sources: Iterable[str]) -> int:
        removed = 0
        for src in sources:
            if self.owns(src):
                try:
                    Path(src).unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def discard_collection(self, collection_id: int) -> None:
        shutil.rmtree(self.root / f"c{int(collection_id)}", ignore_errors=True)
