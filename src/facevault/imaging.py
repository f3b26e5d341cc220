"""Bytes -> RGB uint8 array.

The format is sniffed from the content (never from the file name), size limits are checked from the
header before any pixel is decoded (decompression bombs), EXIF orientation is applied so faces are
upright, and every odd pixel format (16-bit, CMYK, palette, alpha, grey, animated) becomes plain RGB.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError, InputError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "MPO"})
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000

# We enforce our own pixel limit below; Pillow's own check would only warn at this size.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (H, W, 3) uint8 RGB, upright
    sha256: str  # of the original bytes
    format: str
    frames: int
    orientation_applied: bool

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(p: Path, mode: int) -> InputError:
    if stat.S_ISDIR(mode):
        return InputError(f"{p}: is a directory, not an image file", code="not_a_file")
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return InputError(f"{p}: is {kind}, not a regular file; only regular files are read", code="not_a_file")


def read_file_bytes(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Pipes, devices and sockets are refused before anything is read (a FIFO would block forever and
    ``/dev/zero`` would fill the memory). The file is opened without blocking and checked again on the
    open descriptor (it may have been swapped since the first look), and at most ``max_bytes + 1`` bytes
    are read, so a file that grows while it is read cannot go past the limit either."""
    p = Path(path)
    try:
        info = p.stat()
    except FileNotFoundError as exc:
        raise InputError(f"{p}: no such file", code="file_not_found") from exc
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied", code="permission_denied") from exc
    except (OSError, ValueError) as exc:  # a name too long, a loop of links, a NUL byte in the name
        raise InputError(
            f"{p}: cannot be read ({getattr(exc, 'strerror', None) or exc})", code="not_a_file"
        ) from exc
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(p, info.st_mode)
    if info.st_size > max_bytes:
        raise ImageTooLargeError(f"{p}: {info.st_size} bytes is over the limit of {max_bytes} bytes")
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied", code="permission_denied") from exc
    except OSError as exc:
        raise InputError(f"{p}: cannot be opened ({exc.strerror or exc})", code="not_a_file") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(p, mode)
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})", code="not_a_file") from exc
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{p}: more than {max_bytes} bytes, the limit")
    return data


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        grey = ((arr - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "image",
) -> DecodedImage:
    """Decode image bytes into an upright RGB array, or raise a coded ImageError."""
    if not data:
        raise ImageError(f"{name}: empty file")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{name}: {len(data)} bytes is over the limit of {max_bytes} bytes")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"{name}: not a recognised image format") from exc
    fmt = (img.format or "").upper()
    if fmt not in ALLOWED_FORMATS:
        raise ImageError(f"{name}: image format {fmt or 'unknown'} is not supported")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}"
        )
    frames = int(getattr(img, "n_frames", 1) or 1)
    try:
        if frames > 1:
            img.seek(0)
        img.load()
        orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
        upright = ImageOps.exif_transpose(img) if orientation not in (None, 1) else img
        pixels = _to_rgb(upright)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: damaged or truncated image ({exc})") from exc
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    return DecodedImage(
        pixels=pixels,
        sha256=digest,
        format=fmt,
        frames=frames,
        orientation_applied=orientation not in (None, 1),
    )


def load_image(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    data = read_file_bytes(path, max_bytes=max_bytes)
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, name=str(path))


def decode_input(
    item: str | os.PathLike[str] | tuple[str, bytes], *, max_bytes: int, max_pixels: int
) -> DecodedImage:
    """An image path, or (name, bytes) as received, decoded within the given limits."""
    if isinstance(item, tuple):
        name, data = item
        return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels, name=name)
    return load_image(item, max_bytes=max_bytes, max_pixels=max_pixels)


def downscale(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns (pixels, scale factor applied)."""
    h, w = pixels.shape[:2]
    side = max(h, w)
    if side <= max_side:
        return pixels, 1.0
    scale = max_side / side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(small), scale
