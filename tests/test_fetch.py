"""``models fetch`` on the real download code path: a local HTTP server on 127.0.0.1 (in a thread) serves
the real weights of ``FACEVAULT_TEST_MODELS`` as a mirror (``FACEVAULT_MODELS_MIRROR``) with HTTP ranges;
digests are the catalog's pins; a corrupted copy is refused; a transfer dropped half way resumes.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from facevault import imaging
from facevault.errors import ConfigError, IntegrityError
from facevault.models.packs import (
    fetch_pack,
    installed_detectors,
    installed_packs,
    load_detector,
    verify_installed,
)
from facevault.models.packs.catalog import CATALOG
from facevault.models.packs.install import LICENSE_RECORD
from facevault.models.packs.manifest import sha256_file

from .conftest import data_path
from .pack_support import REAL_SHA256, real_model

YUNET = "face_detection_yunet_2023mar.onnx"


@dataclass
class Mirror:
    """What the local server serves, and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)  # first GET of a file stops after n bytes
    ranges: bool = True  # False: answer every request with the whole file (no range support)
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # path, Range, status
    url: str = ""


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    state = Mirror()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            body = state.files.get(name)
            asked = self.headers.get("Range")
            if body is None:
                state.requests.append((name, asked, 404))
                self.send_error(404)
                return
            start = 0
            if asked and state.ranges:
                start = int(asked.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    state.requests.append((name, asked, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            state.requests.append((name, asked, 206 if start or (asked and state.ranges) else 200))
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut = state.drop_after.pop(name, None)
            if cut is not None:  # send part of it, then drop the connection
                self.wfile.write(body[start:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def obama() -> np.ndarray:
    return imaging.load_image(data_path("face_recognition_examples", "examples", "obama.jpg")).pixels


def _no_leftovers(root: Path) -> bool:
    return not [p for p in root.iterdir() if p.name.startswith(".")]


def test_catalog_pins_the_real_digests_and_publisher_urls() -> None:
    yunet = CATALOG["yunet"]
    assert yunet.detector_only and yunet.license["commercial_use"]
    (d,) = yunet.downloads
    assert d.url == (
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
    )
    assert d.sha256 == REAL_SHA256[YUNET]
    for name, det, zip_name in (
        ("scrfd-500m", "det_500m.onnx", "buffalo_sc.zip"),
        ("scrfd-2.5g", "det_2.5g.onnx", "buffalo_m.zip"),
    ):
        e = CATALOG[name]
        assert e.detector_only and not e.license["commercial_use"]
        (z,) = e.downloads
        assert z.url == f"https://github.com/deepinsight/insightface/releases/download/v0.7/{zip_name}"
        assert z.members == {det: REAL_SHA256[det]}


def test_fetch_yunet_from_a_mirror_with_progress(
    mirror: Mirror, root: Path, obama: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = real_model(YUNET).read_bytes()
    mirror.files[YUNET] = data
    monkeypatch.setenv("FACEVAULT_MODELS_MIRROR", mirror.url + "/")
    seen: list[tuple[int, int | None]] = []
    pack = fetch_pack("yunet", root=root, progress=lambda done, total: seen.append((done, total)))
    assert mirror.requests == [(YUNET, None, 200)]
    assert pack.manifest.detector_only and pack.manifest.files == {YUNET: REAL_SHA256[YUNET]}
    assert sorted(p.name for p in pack.folder.iterdir()) == [YUNET, "facevault-pack.json"]
    # progress: increasing byte counts of a known total, ending complete
    assert len(seen) >= 3 and seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted({d for d, _ in seen}) and {t for _, t in seen} == {len(data)}
    # a detector, not a model: listed as a detector, never registered as a pack of its own
    assert installed_packs(root) == [] and verify_installed(root) == {"yunet": []}
    (det,) = installed_detectors(root)
    assert (det.name, det.kind, det.detector_only, det.commercial_use) == ("yunet", "yunet", True, True)
    faces = load_detector("yunet", root).detect(obama)
    assert len(faces) == 1 and faces[0].score > 0.9
    assert _no_leftovers(root)


def test_a_corrupted_copy_is_refused_and_nothing_is_installed(mirror: Mirror, root: Path) -> None:
    data = bytearray(real_model(YUNET).read_bytes())
    data[len(data) // 2] ^= 0xFF
    mirror.files[YUNET] = bytes(data)
    with pytest.raises(IntegrityError) as err:
        fetch_pack("yunet", root=root, mirror=mirror.url)
    assert err.value.code == "checksum_mismatch" and REAL_SHA256[YUNET] in err.value.message
    assert installed_detectors(root) == [] and not (root / "yunet").exists()
    assert _no_leftovers(root)  # the partial file is gone too
    # a user-given digest never overrides a pin
    with pytest.raises(IntegrityError):
        fetch_pack("yunet", root=root, mirror=mirror.url, sha256={"": hashlib.sha256(data).hexdigest()})


def test_an_interrupted_download_resumes_with_a_range_request(mirror: Mirror, root: Path) -> None:
    data = real_model(YUNET).read_bytes()
    half = len(data) // 2
    mirror.files[YUNET] = data
    mirror.drop_after[YUNET] = half
    with pytest.raises(ConfigError) as err:
        fetch_pack("yunet", root=root, mirror=mirror.url)
    assert err.value.code == "download_failed" and "resume" in err.value.message
    part = root / ".downloads" / f"{YUNET}.part"
    assert part.read_bytes() == data[:half]
    assert installed_detectors(root) == []
    seen: list[tuple[int, int | None]] = []
    pack = fetch_pack("yunet", root=root, mirror=mirror.url, progress=lambda d, t: seen.append((d, t)))
    assert mirror.requests[-1] == (YUNET, f"bytes={half}-", 206)
    assert seen[0][0] > half and seen[-1] == (len(data), len(data))  # only the rest came
    assert sha256_file(pack.folder / YUNET) == REAL_SHA256[YUNET]
    assert _no_leftovers(root)


def test_a_server_without_ranges_restarts_the_download(mirror: Mirror, root: Path) -> None:
    data = real_model(YUNET).read_bytes()
    mirror.files[YUNET] = data
    mirror.drop_after[YUNET] = 1000
    mirror.ranges = False
    with pytest.raises(ConfigError):
        fetch_pack("yunet", root=root, mirror=mirror.url)
    pack = fetch_pack("yunet", root=root, mirror=mirror.url)
    assert mirror.requests[-1] == (YUNET, "bytes=1000-", 200)  # asked for the rest, got the whole file
    assert sha256_file(pack.folder / YUNET) == REAL_SHA256[YUNET]


def test_a_complete_partial_file_is_not_downloaded_again(mirror: Mirror, root: Path) -> None:
    data = real_model(YUNET).read_bytes()
    mirror.files[YUNET] = data
    part = root / ".downloads" / f"{YUNET}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    fetch_pack("yunet", root=root, mirror=mirror.url)
    assert mirror.requests == [(YUNET, f"bytes={len(data)}-", 416)]
    assert [d.name for d in installed_detectors(root)] == ["yunet"]


def _release_zip(path: Path, det: str, payload: bytes) -> bytes:
    """An InsightFace-style release zip: the detector and a recognizer file (a stand-in: it is never
    installed) in a folder named after the release."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{path.stem}/{det}", payload)
        zf.writestr(f"{path.stem}/w600k_mbf.onnx", b"not installed by a detector-only fetch")
    return path.read_bytes()


@pytest.mark.parametrize(
    ("name", "det", "zip_name"),
    [("scrfd-500m", "det_500m.onnx", "buffalo_sc.zip"), ("scrfd-2.5g", "det_2.5g.onnx", "buffalo_m.zip")],
)
def test_scrfd_detectors_from_the_release_zip_behind_the_license_gate(
    mirror: Mirror, root: Path, tmp_path: Path, obama: np.ndarray, name: str, det: str, zip_name: str
) -> None:
    real = real_model(det).read_bytes()
    mirror.files[zip_name] = _release_zip(tmp_path / zip_name, det, real)
    with pytest.raises(ConfigError) as err:
        fetch_pack(name, root=root, mirror=mirror.url)
    assert err.value.code == "license_not_accepted" and mirror.requests == []  # nothing downloaded
    pack = fetch_pack(name, root=root, mirror=mirror.url, accept_license=True)
    assert sorted(p.name for p in pack.folder.iterdir()) == sorted(
        [det, "facevault-pack.json", LICENSE_RECORD]
    )
    assert sha256_file(pack.folder / det) == REAL_SHA256[det]
    (found,) = installed_detectors(root)
    assert (found.name, found.kind, found.commercial_use) == (name, "scrfd", False)
    faces = load_detector(name, root).detect(obama)
    assert len(faces) == 1 and faces[0].score > 0.7
    assert _no_leftovers(root)


def test_a_release_zip_with_a_changed_detector_is_refused(mirror: Mirror, root: Path, tmp_path: Path) -> None:
    real = bytearray(real_model("det_500m.onnx").read_bytes())
    real[1000] ^= 0x01
    mirror.files["buffalo_sc.zip"] = _release_zip(tmp_path / "buffalo_sc.zip", "det_500m.onnx", bytes(real))
    with pytest.raises(IntegrityError) as err:
        fetch_pack("scrfd-500m", root=root, mirror=mirror.url, accept_license=True)
    assert (
        err.value.code == "checksum_mismatch" and "det_500m.onnx inside buffalo_sc.zip" in err.value.message
    )
    assert installed_detectors(root) == [] and _no_leftovers(root)


def test_a_detector_only_pack_is_no_model_and_keeps_its_name(mirror: Mirror, root: Path) -> None:
    from facevault.errors import ModelError
    from facevault.models.packs import load_pack

    mirror.files[YUNET] = real_model(YUNET).read_bytes()
    fetch_pack("yunet", root=root, mirror=mirror.url)
    with pytest.raises(ModelError, match="detector-only"):
        load_pack("yunet", root)
    again = fetch_pack("yunet", root=root, mirror=mirror.url)  # re-fetching a detector replaces it
    assert again.manifest.detector_only


def test_cli_fetch_yunet_json(mirror: Mirror, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from facevault.cli.models import models_app

    mirror.files[YUNET] = real_model(YUNET).read_bytes()
    monkeypatch.setenv("FACEVAULT_MODELS_MIRROR", mirror.url)
    runner = CliRunner()
    res = runner.invoke(models_app, ["fetch", "yunet", "--models-dir", str(root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["name"] == "yunet" and out["detector"] == "yunet"
    res = runner.invoke(models_app, ["info", "yunet", "--models-dir", str(root)])
    assert res.exit_code == 0, res.output
    assert "detector-only" in res.output and REAL_SHA256[YUNET] in res.output
    res = runner.invoke(models_app, ["verify", "--models-dir", str(root)])
    assert res.exit_code == 0 and "yunet: ok" in res.output


def test_default_progress_is_logged_and_the_cli_renders_it(
    mirror: Mirror, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a callback, progress goes to the ``facevault.models.fetch`` logger; the CLI shows those
    records as one line on a terminal's stderr (stdout stays clean for --json)."""
    from facevault.cli.models import _progress_on_stderr

    data = real_model(YUNET).read_bytes()
    mirror.files[YUNET] = data
    with _progress_on_stderr(enabled=True):
        fetch_pack("yunet", root=root, mirror=mirror.url)
    out = capsys.readouterr()
    assert out.out == ""
    assert f"\r{YUNET}: 0.2 of 0.2 MB (100%)" in out.err and out.err.endswith("\n")
