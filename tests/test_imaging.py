"""Every odd or bad image input gets a clear, coded answer; valid odd formats decode to upright RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facevault import imaging
from facevault.errors import ImageError, ImageTooLargeError, InputError

from .conftest import data_path, jpeg_bytes


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        imaging.load_image(tmp_path / "nope.jpg")
    assert e.value.code == "file_not_found"
    with pytest.raises(InputError) as e:
        imaging.load_image(tmp_path)
    assert e.value.code == "not_a_file"


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        imaging.load_image(p)


def test_truncated_jpeg(astronaut: np.ndarray) -> None:
    data = jpeg_bytes(astronaut)
    with pytest.raises(ImageError) as e:
        imaging.decode_image(data[: len(data) // 2], name="cut.jpg")
    assert e.value.code == "unreadable_image"
    assert "truncated" in e.value.message


def test_text_file_with_image_extension(tmp_path: Path) -> None:
    p = tmp_path / "photo.jpg"
    p.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageError, match="not a recognised image format"):
        imaging.load_image(p)


def test_unsupported_format_is_refused() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="ICO")
    with pytest.raises(ImageError, match="not supported"):
        imaging.decode_image(buf.getvalue())


def test_sixteen_bit_png_scales_to_eight_bit() -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    img = imaging.decode_image(buf.getvalue())
    assert img.pixels.shape == (64, 64, 3) and img.pixels.dtype == np.uint8
    assert img.pixels[-1, -1, 0] == ramp[-1, -1] >> 8


def test_cmyk_jpeg_becomes_rgb(astronaut: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(astronaut).convert("CMYK").save(buf, format="JPEG", quality=95)
    img = imaging.decode_image(buf.getvalue())
    assert img.pixels.shape == astronaut.shape
    assert np.abs(img.pixels.astype(int) - astronaut.astype(int)).mean() < 12


def test_palette_and_alpha_png(astronaut: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(astronaut).convert("P", palette=Image.Palette.ADAPTIVE).save(buf, format="PNG")
    assert imaging.decode_image(buf.getvalue()).pixels.shape == astronaut.shape
    rgba = np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)])  # fully transparent
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    # transparent pixels composite onto white, not onto black garbage
    assert imaging.decode_image(buf.getvalue()).pixels.min() == 255


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    img = imaging.decode_image(buf.getvalue())
    assert img.frames == 3
    r, g, b = img.pixels[16, 16]
    assert r > 150 and g < 50 and b < 50


def test_pgm_from_orl() -> None:
    img = imaging.load_image(data_path("orl_faces", "s1", "1.pgm"))
    assert img.format == "PPM" and img.pixels.shape == (112, 92, 3)


def test_pixel_limit_refuses_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("L", (6000, 5000)).save(buf, format="PNG")  # 30 Mpx of zeros: a tiny file
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageTooLargeError) as e:
        imaging.decode_image(buf.getvalue(), max_pixels=20_000_000)
    assert e.value.code == "image_too_large"


def test_byte_limit(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(b"\xff" * 2048)
    with pytest.raises(ImageTooLargeError):
        imaging.load_image(p, max_bytes=1024)


@pytest.mark.parametrize(("orientation", "rotate"), [(6, 90), (8, 270), (3, 180)])
def test_exif_orientation_is_applied(astronaut: np.ndarray, orientation: int, rotate: int) -> None:
    """A camera stores the sensor image plus an orientation tag; decoding must return it upright."""
    stored = Image.fromarray(astronaut).rotate(rotate, expand=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    img = imaging.decode_image(buf.getvalue())
    assert img.orientation_applied
    assert img.pixels.shape == astronaut.shape
    assert np.abs(img.pixels.astype(int) - astronaut.astype(int)).mean() < 8


def test_downscale_keeps_aspect() -> None:
    px = np.zeros((1000, 3000, 3), np.uint8)
    small, scale = imaging.downscale(px, 1500)
    assert small.shape == (500, 1500, 3) and scale == pytest.approx(0.5)
    same, one = imaging.downscale(px, 4000)
    assert same is px and one == 1.0


# ---- only regular files, at most the byte limit (issue 11, finding 12) --------------------------------
def _read_in_thread(path: Path, **kw: object) -> BaseException | bytes | None:
    """``read_file_bytes`` in a daemon thread, so that a read that blocks (the old behaviour on a named
    pipe) fails this test instead of hanging the run."""
    import threading

    result: list[BaseException | bytes] = []

    def read() -> None:
        try:
            result.append(imaging.read_file_bytes(path, **kw))  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the test
            result.append(exc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout=20)
    return result[0] if result else None


def test_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    got = _read_in_thread(fifo)
    assert got is not None, "reading a named pipe blocked"
    assert isinstance(got, InputError) and got.code == "not_a_file" and "named pipe" in got.message


def test_devices_and_sockets_are_refused_by_kind(tmp_path: Path) -> None:
    import socket

    with pytest.raises(InputError) as e:
        imaging.read_file_bytes("/dev/null")  # empty, harmless: still not a file
    assert e.value.code == "not_a_file" and "character device" in e.value.message
    sock = tmp_path / "s.jpg"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        with pytest.raises(InputError) as e:
            imaging.read_file_bytes(sock)
    assert e.value.code == "not_a_file" and "socket" in e.value.message


def test_byte_limit_is_exact_and_links_to_files_are_followed(tmp_path: Path) -> None:
    p = tmp_path / "blob.bin"
    p.write_bytes(b"x" * 1000)
    assert imaging.read_file_bytes(p, max_bytes=1000) == b"x" * 1000
    with pytest.raises(ImageTooLargeError):
        imaging.read_file_bytes(p, max_bytes=999)
    link = tmp_path / "link.jpg"
    link.symlink_to(p)
    assert len(imaging.read_file_bytes(link, max_bytes=1000)) == 1000
    to_device = tmp_path / "zero.jpg"
    to_device.symlink_to("/dev/null")
    with pytest.raises(InputError) as e:
        imaging.read_file_bytes(to_device)
    assert e.value.code == "not_a_file"
