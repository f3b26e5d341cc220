"""A library photo's pixels, for a browser to show with the boxes of its faces.

A photo is read from the copy the library keeps (uploads) or from the server path it was added from,
and only while that file still has the content that was indexed: its SHA-256 is checked against the
stored one, so a file changed or gone since is a clear error (``photo_changed``, ``photo_missing``),
never other pixels under old boxes. The bytes are decoded as ingest decoded them (EXIF orientation
applied, ``imaging.decode_image``), so the image is in the frame of the face boxes: the person views'
``image_width`` x ``image_height``. It is sent as a JPEG at most ``MAX_SIDE`` pixels on its longer side;
a larger photo is scaled down, and a client scales the boxes by the image's width over ``image_width``.

Viewing is not audited, like a face's crop (``library.face_crop``): browsing a library's people is the
curation its declared purpose covers; searching it is audited (service/library_search.py).

The blur used when a person is erased with ``photos="blur"`` or by an opt-out (service/
library_erasure.py), and on a face an opt-out blocks in an uploaded photo (service/library_ingest.py),
is here too: it works on the same decoded pixels (``blurred_bytes``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from .. import imaging
from ..errors import ConflictError, FaceVaultError, NotFoundError
from ..store.refs import check_id
from .context import ServiceContext
from .photos import library_copy_path

MAX_SIDE = 2048
JPEG_QUALITY = 90
MEDIA_TYPE = "image/jpeg"
# A blurred region is the face box grown by this share of its longer side on every side (hair, ears).
BLUR_PAD = 0.25
# The region is first reduced to about this many cells across, then smoothed: no facial detail survives.
BLUR_CELLS = 6
LOSSLESS = frozenset({"PNG", "BMP", "TIFF", "GIF", "PPM"})


def photo_file(ctx: ServiceContext, library_id: int, photo: dict[str, Any]) -> Path:
    """Where a photo's pixels are: the kept copy, or the server path it was added from."""
    if photo["stored"]:
        return library_copy_path(ctx.settings, library_id, photo["sha256"])
    source = str(photo["source"])
    if source.startswith("upload:") or not source:
        raise NotFoundError(f"no file is kept for photo #{photo['id']}", code="photo_missing")
    return Path(source)


def read_photo(ctx: ServiceContext, library_id: int, photo: dict[str, Any]) -> imaging.DecodedImage:
    """A photo's upright pixels, only if its file still has the indexed content (module docstring)."""
    pid = int(photo["id"])
    if photo["status"] != "done":
        raise NotFoundError(f"photo #{pid} has no pixels to show ({photo['status']})", code="photo_not_found")
    path = photo_file(ctx, library_id, photo)
    s = ctx.settings
    try:
        data = imaging.read_file_bytes(path, max_bytes=s.max_image_bytes)
    except FaceVaultError as exc:
        if exc.code == "file_not_found":
            raise NotFoundError(
                f"the file of photo #{pid} is gone since it was indexed", code="photo_missing"
            ) from None
        raise
    decoded = imaging.decode_image(data, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
    if decoded.sha256 != photo["sha256"]:
        raise ConflictError(
            f"the file of photo #{pid} changed since it was indexed: its faces are not these pixels",
            code="photo_changed",
        )
    return decoded


def photo_image(ctx: ServiceContext, library: str, photo_id: int) -> tuple[bytes, str]:
    """A library photo as a JPEG (at most ``MAX_SIDE`` pixels on its longer side), upright, in the frame
    of its face boxes; returns (bytes, media type)."""
    photo_id = check_id(photo_id, "photo id")  # 2**63 overflows the store's integer: an input error
    with ctx.read() as conn:
        lib = ctx.store.get_library(conn, library)
        photo = ctx.store.library_photos(conn, [photo_id]).get(photo_id)
    if photo is None or photo["library_id"] != lib["id"]:
        raise NotFoundError(f"no photo #{photo_id} in library {lib['name']!r}", code="photo_not_found")
    decoded = read_photo(ctx, int(lib["id"]), photo)
    pixels, _ = imaging.downscale(decoded.pixels, MAX_SIDE)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), MEDIA_TYPE


# ---- blur (erasure) ----------------------------------------------------------------------------------
def blur_region(width: int, height: int, box: Sequence[float]) -> tuple[int, int, int, int]:
    """The pixels a face's blur covers: its box grown by ``BLUR_PAD``, within the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    pad = BLUR_PAD * max(x2 - x1, y2 - y1)
    return (
        max(0, math.floor(x1 - pad)),
        max(0, math.floor(y1 - pad)),
        min(width, math.ceil(x2 + pad)),
        min(height, math.ceil(y2 + pad)),
    )


def blur_faces(pixels: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """``pixels`` with each face region replaced by a strong blur: reduced to ``BLUR_CELLS`` cells
    across (the face's detail is gone, not just softened), enlarged again and smoothed."""
    img = Image.fromarray(pixels)
    for box in boxes:
        region = blur_region(img.width, img.height, box)
        patch = img.crop(region)
        if patch.width < 2 or patch.height < 2:
            continue
        cell = max(patch.width, patch.height) / BLUR_CELLS
        small = patch.resize(
            (max(1, round(patch.width / cell)), max(1, round(patch.height / cell))), Image.Resampling.BOX
        )
        smooth = small.resize(patch.size, Image.Resampling.BILINEAR)
        smooth = smooth.filter(ImageFilter.GaussianBlur(radius=max(2.0, cell / 2)))
        img.paste(smooth, region[:2])
    return np.asarray(img)


def encode_like(pixels: np.ndarray, source_format: str) -> bytes:
    """Encode replacement pixels for a kept copy: lossless sources as PNG, others as a high-quality
    JPEG (without EXIF: the pixels are upright already, so the boxes still line up)."""
    buf = io.BytesIO()
    img = Image.fromarray(pixels)
    if source_format in LOSSLESS:
        img.save(buf, format="PNG")
    else:
        img.save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def blurred_bytes(decoded: imaging.DecodedImage, boxes: Sequence[Sequence[float]]) -> bytes:
    """The file that replaces a photo's kept copy: its upright pixels (the frame of the face boxes) with
    these faces blurred, encoded as ``encode_like`` does."""
    return encode_like(blur_faces(decoded.pixels, boxes), decoded.format)
