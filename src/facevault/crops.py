"""Loose face crops kept for re-embedding (collections with ``keep_crops``): how one is cut from the
enrollment photo, encoded, encrypted and read back. Nothing here touches the store.

A crop is the detected face box grown by half its width and height on every side (clipped to the
photo), so a later detector, whose boxes and landmarks differ from today's, still sees the whole head
with context; it is shrunk so its longer side is at most 320 px (enough for any recognizer's 112-150 px
chip, small enough to keep) and stored as a JPEG of quality 95 without chroma subsampling. The encoded
bytes are sealed with AES-256-GCM under the current template key, with the collection and the sample as
associated data, so a crop moved to another row or collection no longer opens.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import imaging
from .protection import TemplateKey

MARGIN = 0.5  # of the box's width (height) added on the left and right (top and bottom)
MAX_SIDE = 320
JPEG_QUALITY = 95
MEDIA_TYPE = "image/jpeg"
MAX_CROP_BYTES = 4 * 1024 * 1024  # a 320 px JPEG is far smaller; anything bigger is not ours


@dataclass(frozen=True)
class FaceCrop:
    """An encoded crop (never stored as such: see ``seal``) and the face box in its pixels."""

    data: bytes
    media_type: str
    size: tuple[int, int]  # width, height
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in crop pixels


def crop_region(
    width: int, height: int, box: tuple[float, float, float, float], margin: float = MARGIN
) -> tuple[int, int, int, int]:
    """The integer region (x1, y1, x2, y2) of a ``width`` x ``height`` photo that a crop of ``box``
    covers: the box grown by ``margin`` of its size on each side, clipped to the photo."""
    x1, y1, x2, y2 = (float(v) for v in box)
    mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
    rx1, ry1 = max(0, math.floor(x1 - mw)), max(0, math.floor(y1 - mh))
    rx2, ry2 = min(width, math.ceil(x2 + mw)), min(height, math.ceil(y2 + mh))
    if rx2 - rx1 < 1 or ry2 - ry1 < 1:
        raise ValueError(f"face box {box} lies outside the {width}x{height} photo")
    return rx1, ry1, rx2, ry2


def make_crop(pixels: np.ndarray, box: tuple[float, float, float, float]) -> FaceCrop:
    """The crop of the face at ``box`` (photo pixels) of an RGB uint8 photo."""
    h, w = pixels.shape[:2]
    rx1, ry1, rx2, ry2 = crop_region(w, h, box)
    region = np.ascontiguousarray(pixels[ry1:ry2, rx1:rx2])
    small, _ = imaging.downscale(region, MAX_SIDE)
    sh, sw = small.shape[:2]
    sx, sy = sw / (rx2 - rx1), sh / (ry2 - ry1)  # per axis: rounding makes them differ slightly
    x1, y1, x2, y2 = (float(v) for v in box)
    inside = (
        max(0.0, (x1 - rx1) * sx),
        max(0.0, (y1 - ry1) * sy),
        min(float(sw), (x2 - rx1) * sx),
        min(float(sh), (y2 - ry1) * sy),
    )
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return FaceCrop(buf.getvalue(), MEDIA_TYPE, (sw, sh), inside)


def decode_crop(data: bytes) -> np.ndarray:
    """The RGB pixels of an encoded crop."""
    return imaging.decode_image(data, max_bytes=MAX_CROP_BYTES, name="stored crop").pixels


def context(collection_id: int, sample_id: int) -> bytes:
    """Associated data binding a crop to its collection and sample."""
    return f"crop:{collection_id}:{sample_id}".encode()


def seal(key: TemplateKey, data: bytes, collection_id: int, sample_id: int) -> bytes:
    """AES-256-GCM ciphertext of an encoded crop, bound to its collection and sample."""
    return key.encrypt(data, context(collection_id, sample_id))


def open_sealed(key: TemplateKey, blob: bytes, collection_id: int, sample_id: int) -> bytes:
    """The encoded crop; ``WrongKeyError`` for another key, tampered data or a crop of another sample."""
    return key.decrypt(blob, context(collection_id, sample_id), f"the stored crop of sample #{sample_id}")
