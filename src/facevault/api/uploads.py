"""Getting image bytes out of a request (multipart parts or base64 JSON) within the size limits. (The
copies of enrolled photos that let the UI show thumbnails are kept by ``facevault.service.photos``.)"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

from starlette.datastructures import UploadFile

from ..errors import FaceVaultError, ImageTooLargeError, InputError

# Letters and digits of any script, and the punctuation file names usually have; anything else (path
# separators, double quotes, control and bidirectional-override characters...) becomes "_".
_UNSAFE = re.compile(r"[^\w.()\[\],+'&@ -]+")
CHUNK = 1024 * 1024


def safe_name(filename: str | None, default: str = "upload") -> str:
    """A display name for an uploaded file: its base name, tamed (it is kept as the photo's
    ``original_name`` and shown to users). It is never used as a server path."""
    base = unicodedata.normalize("NFC", filename or "").replace("\\", "/").rsplit("/", 1)[-1]
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


# One multipart file part: its display name, and its bytes or why they were refused (too large).
NamedUpload = tuple[str, bytes | None, FaceVaultError | None]


async def read_named_uploads(parts: list[UploadFile], max_bytes: int) -> list[NamedUpload]:
    """Every part, in order, with its tamed name (``photo-N`` when it has none): one part over the limit
    is refused alone, the others are read."""
    out: list[NamedUpload] = []
    for i, upload in enumerate(parts, 1):
        name = safe_name(upload.filename, f"photo-{i}")
        try:
            out.append((name, await read_upload(upload, max_bytes), None))
        except FaceVaultError as exc:
            out.append((name, None, exc))
    return out


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
