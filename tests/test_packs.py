"""Model packs: manifest, install/verify/fetch, SCRFD/YuNet decoding, 5-point alignment, ArcFace/SFace
embedding, registry wiring and pack pinning. The networks are small ONNX graphs built by
``tests/synthetic_pack.py`` with the real models' input/output names, shapes and conventions."""

from __future__ import annotations

import http.server
import json
import math
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facevault import calibration
from facevault.errors import (
    ConfigError,
    ConflictError,
    IntegrityError,
    ModelError,
    ModelMismatchError,
    NotFoundError,
)
from facevault.models import ModelPack, get_pack, register_pack
from facevault.models.packs import (
    MANIFEST_NAME,
    fetch_pack,
    install_pack,
    installed_packs,
    load_pack,
    parse_manifest,
    verify_installed,
)
from facevault.models.packs.align import align_five_points, similarity_transform, warp_affine
from facevault.models.packs.common import letterbox, nms
from facevault.models.packs.install import LICENSE_RECORD
from facevault.models.packs.manifest import ARCFACE_TEMPLATE_112, sha256_file
from facevault.models.packs.scrfd import anchor_centres, decode_scrfd
from facevault.models.packs.yunet import decode_yunet
from facevault.models.registry import register_installed_packs
from facevault.pipeline import Pipeline

from . import synthetic_pack as synthetic
from .conftest import write_image
from .pack_support import restore_registry

TEMPLATE = np.asarray(ARCFACE_TEMPLATE_112)


# ---- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Pack source folders, built once per module (graph building takes a moment)."""
    base = tmp_path_factory.mktemp("packs-src")
    rng = np.random.default_rng(1)
    cal = calibration.from_impostor_scores("x", rng.normal(0, 0.1, 5000), "synthetic").to_json()
    return {
        "scrfd_arcface": synthetic.make_pack_folder(base / "a", "pack-a", seed=1, calibration=cal),
        "scrfd_arcface_b": synthetic.make_pack_folder(base / "b", "pack-b", seed=2, calibration=cal),
        "yunet_sface": synthetic.make_pack_folder(
            base / "s", "pack-sface", detector="yunet", recognizer="sface", commercial_use=True
        ),
        "buffalo_layout": synthetic.make_pack_folder(base / "buffalo", "ignored", manifest=False),
    }


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    """Packs registered here point at temporary folders: leave the process-wide registry as found."""
    yield from restore_registry()


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _face_image(cell: tuple[int, int] = (9, 9), seed: int = 0) -> np.ndarray:
    return synthetic.bright_square_image((640, 640), cells=(cell,), seed=seed)


# ---- alignment ---------------------------------------------------------------------------------------
def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    r = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.hstack([r, [[tx], [ty]]])


def test_umeyama_recovers_a_known_similarity() -> None:
    m = _similarity(2.5, 30.0, 40.0, -12.0)
    src = TEMPLATE
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), m, atol=1e-9)
    # noisy points: least squares, still close; a mirrored set gives a rotation, never a reflection
    noisy = dst + np.random.default_rng(0).normal(0, 0.5, dst.shape)
    est = similarity_transform(src, noisy)
    np.testing.assert_allclose(est[:, :2], m[:, :2], atol=0.05)

    def residual(t: np.ndarray) -> float:
        return float(((src @ t[:, :2].T + t[:, 2] - noisy) ** 2).sum())

    assert residual(est) <= residual(m)  # least squares: no worse than the true transform
    mirrored = src * [-1, 1]
    est = similarity_transform(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0


def test_warp_maps_known_landmarks_onto_the_template() -> None:
    """Dots drawn at the template points pushed through a known similarity come back to the template."""
    m = _similarity(2.0, -20.0, 150.0, 60.0)
    pts = TEMPLATE @ m[:, :2].T + m[:, 2]
    img = np.zeros((420, 420, 3), np.uint8)
    for x, y in np.round(pts).astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    chip = align_five_points(img, pts, TEMPLATE, (112, 112))
    assert chip.shape == (112, 112, 3)
    grey = chip[..., 0].astype(float)
    for tx, ty in TEMPLATE:
        x, y = round(tx), round(ty)
        win = grey[y - 3 : y + 4, x - 3 : x + 4]
        assert win.max() > 150
        wy, wx = np.unravel_index(np.argmax(win), win.shape)
        assert abs(wx - 3) <= 1 and abs(wy - 3) <= 1
    # exact pixel-centre convention: an integer translation moves pixels exactly
    shifted = warp_affine(img, np.array([[1.0, 0, -10], [0, 1, -20]]), (100, 100))
    np.testing.assert_array_equal(shifted, img[20:120, 10:110])


def test_letterbox_keeps_aspect_and_pads_bottom_right() -> None:
    canvas, scale = letterbox(np.full((100, 200, 3), 200, np.uint8), 640, 640)
    assert scale == pytest.approx(3.2)
    assert canvas.shape == (640, 640, 3)
    assert canvas[:320].min() == 200 and canvas[320:].max() == 0


# ---- SCRFD -------------------------------------------------------------------------------------------
def test_anchor_centres_are_row_major_with_anchors_consecutive() -> None:
    c = anchor_centres(64, 32, 16, 2)
    assert c.shape == (2 * 4 * 2, 2)
    np.testing.assert_array_equal(c[:6], [[0, 0], [0, 0], [16, 0], [16, 0], [32, 0], [32, 0]])
    np.testing.assert_array_equal(c[8], [0, 16])


def test_scrfd_distance_decoding_and_output_grouping() -> None:
    w = h = 64
    outs = {}
    for s in (8, 16, 32):
        n = (h // s) * (w // s) * 2
        outs[s] = [np.zeros((n, 1), np.float32), np.zeros((n, 4), np.float32), np.zeros((n, 10), np.float32)]
    # stride 16, cell (row 1, col 2), anchor 1 -> row index (1 * 4 + 2) * 2 + 1 = 13; anchor at (32, 16)
    outs[16][0][13] = 0.9
    outs[16][1][13] = [1, 0.5, 2, 1]
    outs[16][2][13] = np.arange(10) / 10
    # shuffled order and a batch axis: grouping must not depend on either
    flat = [o[None] for s in (32, 8, 16) for o in outs[s][::-1]]
    boxes, scores, kps = decode_scrfd(flat, w, h, 0.5)
    assert scores.tolist() == pytest.approx([0.9])
    np.testing.assert_allclose(boxes[0], [32 - 16, 16 - 8, 32 + 32, 16 + 16])
    np.testing.assert_allclose(kps[0], np.arange(10).reshape(5, 2) / 10 * 16 + [32, 16])


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    scores = np.array([0.8, 0.9, 0.7, 0.8])
    assert nms(boxes, scores, 0.4) == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4) == []


def test_scrfd_graph_end_to_end(graphs: dict[str, Path], models_root: Path) -> None:
    install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root)
    pack = load_pack("pack-a", models_root, threads=1)
    det = pack.detector
    assert det._session.get_inputs()[0].name == "input.1"
    assert [o.shape[-1] for o in det._session.get_outputs()] == [1, 1, 1, 4, 4, 4, 10, 10, 10]
    faces = det.detect(_face_image((4, 6)))
    assert len(faces) == 1  # the cell's two anchors overlap: NMS keeps anchor 0 (higher score)
    f = faces[0]
    cx, cy = 6 * 32, 4 * 32  # SCRFD anchors sit on the cell's corner
    d = synthetic.DEFAULT_DIST
    np.testing.assert_allclose(
        f.box, [cx - d[0] * 32, cy - d[1] * 32, cx + d[2] * 32, cy + d[3] * 32], atol=1e-3
    )
    np.testing.assert_allclose(f.landmarks, np.asarray(synthetic.DEFAULT_KPS) * 32 + [cx, cy], atol=1e-3)
    assert f.left_eye[0] < f.right_eye[0] and f.landmarks[0, 0] < f.landmarks[1, 0]
    assert f.nose == pytest.approx((cx, cy + 0.15 * 32))
    # a half-size image is letterboxed up 2x and results come back in its own pixels
    small = _face_image((4, 6))[::2, ::2]
    two = det.detect(np.ascontiguousarray(small[:160, :160]))
    assert two and all(0 <= v <= 160 for v in two[0].box)
    assert det.detect(np.zeros((300, 200, 3), np.uint8)) == []


def test_scrfd_landmarks_in_box(graphs: dict[str, Path], models_root: Path) -> None:
    install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root)
    det = load_pack("pack-a", models_root).detector
    img = _face_image((9, 9))
    found = det.detect(img)[0]
    again = det.landmarks_in_box(img, found.box)
    assert again.fallback
    np.testing.assert_allclose(again.landmarks, found.landmarks, atol=1e-3)
    blank = det.landmarks_in_box(np.zeros((200, 200, 3), np.uint8), (50, 50, 150, 150))
    assert blank.fallback and blank.landmarks.shape == (5, 2) and 50 < blank.nose[0] < 150


# ---- YuNet -------------------------------------------------------------------------------------------
def test_yunet_decoding_by_name() -> None:
    w, h = 64, 32
    outs, names = [], []
    for kind, last in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
        for s in (8, 16, 32):
            outs.append(np.zeros((1, (h // s) * (w // s), last), np.float32))
            names.append(f"{kind}_{s}")
    # stride 16 grid is 2 rows x 4 cols; cell (row 1, col 3) -> index 7
    outs[1][0, 7, 0], outs[4][0, 7, 0] = 0.81, 1.0  # score sqrt(0.81 * 1) = 0.9
    outs[7][0, 7] = [0.5, 0.25, math.log(2), 0.0]
    outs[10][0, 7] = np.arange(10) / 10
    order = np.random.default_rng(0).permutation(12)
    boxes, scores, kps = decode_yunet([outs[i] for i in order], [names[i] for i in order], w, h, 0.6)
    assert scores.tolist() == pytest.approx([0.9])
    cx, cy = (3 + 0.5) * 16, (1 + 0.25) * 16
    np.testing.assert_allclose(boxes[0], [cx - 16, cy - 8, cx + 16, cy + 8])
    np.testing.assert_allclose(kps[0], (np.arange(10).reshape(5, 2) / 10 + [3, 1]) * 16)


def test_yunet_graph_end_to_end_and_sface_batch_one(graphs: dict[str, Path], models_root: Path) -> None:
    install_pack(graphs["yunet_sface"], root=models_root)  # permissive license: no acceptance needed
    pack = load_pack("pack-sface", models_root, threads=1)
    names = [o.name for o in pack.detector._session.get_outputs()]
    assert names[:3] == ["cls_8", "cls_16", "cls_32"] and names[-1] == "kps_32"
    faces = pack.detector.detect(_face_image((2, 3)))
    assert len(faces) == 1
    f = faces[0]
    np.testing.assert_allclose(f.landmarks[0], np.array([0.15 + 3, 0.3 + 2]) * 32, atol=1e-3)
    assert f.box[0] == pytest.approx((3 + 0.5) * 32 - 16, abs=1e-3)
    chips = [pack.embedder.align(_face_image((2, 3)), f)] * 3
    assert pack.embedder._fixed_batch == 1
    vecs = pack.embedder.embed_chips(chips)
    assert vecs.shape == (3, 128) and pack.dim == 128
    np.testing.assert_allclose(vecs[0], vecs[2], rtol=1e-5)


def test_arcface_preprocessing_and_batched_embedding(graphs: dict[str, Path], models_root: Path) -> None:
    install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root)
    emb = load_pack("pack-a", models_root).embedder
    blob = emb.preprocess([np.full((112, 112, 3), [0, 127.5, 255], np.float32)])
    assert blob.shape == (1, 3, 112, 112)
    np.testing.assert_allclose(blob[0, :, 0, 0], [-1, 0, 1])
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (112, 112, 3)).astype(np.uint8) for _ in range(40)]
    emb.spec = emb.spec.__class__(**{**emb.spec.__dict__, "batch_size": 16})
    vecs = emb.embed_chips(chips)
    assert vecs.shape == (40, 512) and emb._fixed_batch is None
    np.testing.assert_allclose(vecs[5], emb.embed_chips([chips[5]])[0], rtol=1e-4, atol=1e-5)
    assert emb.embed_chips([]).shape == (0, 512)


# ---- manifest, install, verify -----------------------------------------------------------------------
def test_manifest_validation(graphs: dict[str, Path]) -> None:
    good = json.loads((graphs["scrfd_arcface"] / MANIFEST_NAME).read_text())
    assert parse_manifest(good).recognizer.embedding_dim == 512
    for patch, msg in (
        ({"detector": {**good["detector"], "kind": "mtcnn"}}, "detector kind"),
        ({"recognizer": {**good["recognizer"], "file": "other.onnx"}}, "not listed"),
        ({"files": {**good["files"], "det_10g.onnx": "abc"}}, "SHA-256"),
        ({"name": "Bad Name"}, "pack name"),
        ({"name": "dlib-resnet-v2"}, "reserved"),
        ({"files": {**good["files"], "../escape.onnx": "0" * 64}}, "bad file name"),
        ({"license": {"id": "nc", "commercial_use": False}}, "text or URL"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_manifest({**good, **patch})
    sface = parse_manifest({**good, "recognizer": {**good["recognizer"], "kind": "sface"}})
    assert sface.recognizer.mean == (0.0, 0.0, 0.0) and sface.recognizer.std == (1.0, 1.0, 1.0)


def test_install_needs_license_acceptance_and_records_it(graphs: dict[str, Path], models_root: Path) -> None:
    with pytest.raises(ConfigError, match="--accept-license") as err:
        install_pack(graphs["scrfd_arcface"], root=models_root)
    assert err.value.code == "license_not_accepted"
    assert installed_packs(models_root) == []
    pack = install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root, accepted_by="ada")
    record = json.loads((pack.folder / LICENSE_RECORD).read_text())
    assert record["accepted_by"] == "ada" and record["license_text"] == "Synthetic test weights."
    assert record["accepted_at"].endswith("+00:00")
    assert sorted(p.name for p in pack.folder.iterdir()) == sorted(
        [MANIFEST_NAME, LICENSE_RECORD, "det_10g.onnx", "w600k_r50.onnx"]
    )
    # without the record (copied by hand) the pack is refused at load
    (pack.folder / LICENSE_RECORD).unlink()
    with pytest.raises(IntegrityError, match="not been accepted"):
        load_pack("pack-a", models_root)


def test_install_from_zip_and_insightface_layout(
    graphs: dict[str, Path], tmp_path: Path, models_root: Path
) -> None:
    src = graphs["buffalo_layout"]
    extra = tmp_path / "buffalo_l"
    shutil.copytree(src, extra)
    (extra / "genderage.onnx").write_bytes(b"not used")
    zpath = tmp_path / "buffalo_l.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in extra.iterdir():
            zf.write(p, f"buffalo_l/{p.name}")  # wrapped in a folder, as some releases are
    with pytest.raises(ConfigError, match="--accept-license"):
        install_pack(zpath, root=models_root)
    pack = install_pack(zpath, accept_license=True, root=models_root)
    assert pack.name == "buffalo_l"
    m = pack.manifest
    assert (m.detector.kind, m.recognizer.kind, m.recognizer.embedding_dim) == ("scrfd", "arcface", 512)
    assert m.license.id == "insightface-non-commercial" and "releases/download" in m.source_url
    assert not (pack.folder / "genderage.onnx").exists()  # facevault infers no demographics
    assert m.files["w600k_r50.onnx"] == sha256_file(src / "w600k_r50.onnx")
    # a zip that escapes its folder is refused
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../../evil.onnx", b"x")
    with pytest.raises(ConfigError, match="outside"):
        install_pack(bad, accept_license=True, root=models_root)


def test_detector_only_manifest(graphs: dict[str, Path]) -> None:
    from facevault.models.packs import build_pack
    from facevault.models.packs.manifest import NO_RECOGNIZER

    full = json.loads((graphs["yunet_sface"] / "facevault-pack.json").read_text())
    det_file = full["detector"]["file"]
    data = {k: v for k, v in full.items() if k != "recognizer"}
    data["files"] = {det_file: full["files"][det_file]}
    m = parse_manifest(data)
    assert m.detector_only and m.recognizer == NO_RECOGNIZER and m.recognizer.embedding_dim == 0
    assert "recognizer" not in m.to_json() and parse_manifest(m.to_json()) == m
    assert not parse_manifest(full).detector_only
    with pytest.raises(ConfigError, match="no scores to calibrate"):
        parse_manifest({**data, "calibration": {"x": 1}})
    with pytest.raises(ConfigError, match="recognizer kind"):
        parse_manifest({**data, "recognizer": {"kind": "none", "file": det_file, "embedding_dim": 1}})
    with pytest.raises(ModelError, match="detector-only"):
        build_pack(m, graphs["yunet_sface"])


def test_detector_only_packs_install_list_and_load(graphs: dict[str, Path], models_root: Path) -> None:
    from facevault.models.packs import installed_detectors, load_detector

    full = json.loads((graphs["yunet_sface"] / "facevault-pack.json").read_text())
    det_file = full["detector"]["file"]
    src = models_root.parent / "det-src"
    src.mkdir()
    shutil.copy(graphs["yunet_sface"] / det_file, src / det_file)
    data = {k: v for k, v in full.items() if k != "recognizer"}
    (src / "facevault-pack.json").write_text(
        json.dumps({**data, "name": "my-yunet", "files": {det_file: full["files"][det_file]}})
    )
    install_pack(src, root=models_root)
    install_pack(graphs["yunet_sface"], root=models_root)
    assert [p.name for p in installed_packs(models_root)] == ["pack-sface"]  # a detector is no model
    assert [p.name for p in installed_packs(models_root, detector_only=True)] == ["my-yunet"]
    dets = installed_detectors(models_root)
    assert [(d.name, d.kind, d.detector_only) for d in dets] == [
        ("my-yunet", "yunet", True),
        ("pack-sface", "yunet", False),
    ]
    assert verify_installed(models_root) == {"my-yunet": [], "pack-sface": []}
    for name in ("my-yunet", "pack-sface"):
        faces = load_detector(name, models_root).detect(_face_image((2, 3)))
        assert len(faces) == 1 and faces[0].landmarks.shape == (5, 2)
    # a model's name cannot be taken by a detector, nor the reverse
    (src / "facevault-pack.json").write_text(
        json.dumps({**data, "name": "pack-sface", "files": {det_file: full["files"][det_file]}})
    )
    with pytest.raises(ConflictError):
        install_pack(src, root=models_root)
    with pytest.raises(NotFoundError):
        load_detector("nobody", models_root)
    shutil.copy(graphs["buffalo_layout"] / "det_10g.onnx", models_root / "my-yunet" / det_file)
    with pytest.raises(IntegrityError):
        load_detector("my-yunet", models_root)


def test_a_known_layout_must_match_the_catalog_pins(graphs: dict[str, Path], models_root: Path) -> None:
    """A folder holding only a synthetic ``face_detection_yunet_2023mar.onnx`` is not OpenCV Zoo's
    YuNet: installing it as ``yunet`` is refused (the real file installs, see test_real_weights)."""
    src = models_root.parent / "only-yunet"
    src.mkdir()
    shutil.copy(graphs["yunet_sface"] / "face_detection_yunet_2023mar.onnx", src)
    with pytest.raises(IntegrityError) as err:
        install_pack(src, root=models_root)
    assert err.value.code == "checksum_mismatch" and "'yunet'" in err.value.message


def test_changed_file_is_refused_by_verify_and_at_load(graphs: dict[str, Path], models_root: Path) -> None:
    pack = install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root)
    assert verify_installed(models_root) == {"pack-a": []}
    load_pack("pack-a", models_root)
    rec = pack.folder / "w600k_r50.onnx"
    data = bytearray(rec.read_bytes())
    data[-1] ^= 0xFF
    rec.write_bytes(bytes(data))
    problems = verify_installed(models_root)["pack-a"]
    assert len(problems) == 1 and "w600k_r50.onnx: SHA-256" in problems[0]
    with pytest.raises(IntegrityError, match="failed its check"):
        load_pack("pack-a", models_root)
    # and through the registry, as a collection would load it
    register_installed_packs(models_root)
    with pytest.raises(IntegrityError):
        get_pack("pack-a")


def test_a_pack_name_is_never_reused_for_other_weights(
    graphs: dict[str, Path], tmp_path: Path, models_root: Path
) -> None:
    install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root)
    install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root)  # same weights: fine
    other = tmp_path / "other"
    shutil.copytree(graphs["scrfd_arcface_b"], other)
    manifest = json.loads((other / MANIFEST_NAME).read_text())
    manifest["name"] = "pack-a"
    (other / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ConflictError, match="another name"):
        install_pack(other, accept_license=True, root=models_root)
    assert verify_installed(models_root) == {"pack-a": []}


# ---- registry, collections, pinning ------------------------------------------------------------------
def test_pack_mismatch_is_refused(vault, graphs: dict[str, Path], models_root: Path, tmp_path: Path) -> None:
    install_pack(graphs["scrfd_arcface"], accept_license=True, root=models_root)
    install_pack(graphs["scrfd_arcface_b"], accept_license=True, root=models_root)
    assert sorted(register_installed_packs(models_root)) == ["pack-a", "pack-b"]
    coll = vault.create_collection("a", model="pack-a")
    assert (coll["model_id"], coll["dim"]) == ("pack-a", 512)
    vault.create_collection("b", model="pack-b")
    vault.add_subject("a", "Square", purpose="t", consent_text="yes")
    out = vault.enroll("a", "Square", [write_image(tmp_path / "sq.png", _face_image(), fmt="PNG")])
    assert out[0].ok, (out[0].reason, out[0].message)

    img = _face_image()
    vec_a = Pipeline(get_pack("pack-a")).analyze(img)[0].embedding
    vec_b = Pipeline(get_pack("pack-b")).analyze(img)[0].embedding
    assert vec_a.shape == vec_b.shape == (512,)  # same size: only the pinning tells them apart
    with pytest.raises(ModelMismatchError):
        vault.search_embedding("a", vec_b, model_id="pack-b", purpose="t")
    with pytest.raises(ModelMismatchError):
        vault.search_embedding("b", vec_a, model_id="pack-a", purpose="t")
    hits = vault.search_embedding("a", vec_a, model_id="pack-a", purpose="t", threshold=-1)
    assert [c.name for c in hits] == ["Square"]

    # a pack that would hand pack B's networks to collection A is refused before any vector is made
    def masquerade() -> ModelPack:
        return load_pack("pack-b", models_root)

    register_pack("pack-a-swapped", masquerade)
    with pytest.raises(ModelError, match="reports id"):
        get_pack("pack-a-swapped")


def test_collection_needs_a_calibrated_pack(vault, graphs: dict[str, Path], models_root: Path) -> None:
    install_pack(graphs["yunet_sface"], root=models_root)
    register_installed_packs(models_root)
    with pytest.raises(ConfigError, match="no score calibration"):
        vault.create_collection("s", model="pack-sface")
    # a calibration.json next to the manifest (e.g. from bench/calibrate.py --out) is picked up
    rng = np.random.default_rng(0)
    cal = calibration.from_impostor_scores("pack-sface", rng.normal(0, 0.1, 5000), "test")
    calibration.save(cal, models_root / "pack-sface" / "calibration.json")
    register_installed_packs(models_root)
    assert vault.create_collection("s", model="pack-sface")["dim"] == 128
    assert verify_installed(models_root) == {"pack-sface": []}  # extra files are not part of the check


def test_packs_in_facevault_models_are_registered(
    graphs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facevault.models import available_models
    from facevault.models.packs import models_dir
    from facevault.models.registry import ensure_registered

    root = tmp_path / "shared-models"
    install_pack(graphs["yunet_sface"], root=root)
    monkeypatch.setenv("FACEVAULT_MODELS", str(root))
    assert models_dir() == root
    ensure_registered(models_dir())
    assert "pack-sface" in available_models()
    assert get_pack("pack-sface").dim == 128
    monkeypatch.delenv("FACEVAULT_MODELS")
    assert models_dir(tmp_path / "home") == tmp_path / "home" / "models"


# ---- fetch -------------------------------------------------------------------------------------------
@pytest.fixture
def buffalo_zip(graphs: dict[str, Path], tmp_path: Path) -> Path:
    z = tmp_path / "dl" / "buffalo_l.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as zf:
        for p in graphs["buffalo_layout"].iterdir():
            zf.write(p, p.name)
    return z


def test_fetch_checks_the_digest_from_a_file_url(buffalo_zip: Path, models_root: Path) -> None:
    url = buffalo_zip.as_uri()
    digest = sha256_file(buffalo_zip)
    with pytest.raises(ConfigError, match="--accept-license"):
        fetch_pack("buffalo_l", url=url, sha256={"": digest}, root=models_root)
    with pytest.raises(ConfigError) as err:
        fetch_pack("buffalo_l", url=url, accept_license=True, root=models_root)
    assert err.value.code == "checksum_required"
    with pytest.raises(IntegrityError) as err2:
        fetch_pack("buffalo_l", url=url, accept_license=True, sha256={"": "0" * 64}, root=models_root)
    assert err2.value.code == "checksum_mismatch"
    assert installed_packs(models_root) == []
    pack = fetch_pack(
        "buffalo_l", url=url, accept_license=True, sha256={"buffalo_l.zip": digest}, root=models_root
    )
    assert pack.name == "buffalo_l" and verify_installed(models_root) == {"buffalo_l": []}
    assert not [p for p in models_root.iterdir() if p.name.startswith(".")]  # temp folders cleaned up


@pytest.fixture
def local_http(buffalo_zip: Path) -> Iterator[str]:
    folder = str(buffalo_zip.parent)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=folder, **kw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_over_http_via_the_cli(local_http: str, buffalo_zip: Path, models_root: Path) -> None:
    from typer.testing import CliRunner

    from facevault.cli.models import models_app

    runner = CliRunner()
    args = ["--models-dir", str(models_root), "--json"]
    url = f"{local_http}/buffalo_l.zip"
    res = runner.invoke(models_app, ["fetch", "buffalo_l", "--url", url, *args])
    assert res.exit_code == 2 and "license_not_accepted" in res.output
    digest = sha256_file(buffalo_zip)
    res = runner.invoke(
        models_app, ["fetch", "buffalo_l", "--url", url, "--accept-license", "--sha256", digest, *args]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["name"] == "buffalo_l"


# ---- CLI ---------------------------------------------------------------------------------------------
def test_cli_install_list_info_verify(graphs: dict[str, Path], models_root: Path) -> None:
    from typer.testing import CliRunner

    from facevault.cli.models import models_app

    runner = CliRunner()
    d = ["--models-dir", str(models_root)]
    res = runner.invoke(models_app, ["install", str(graphs["scrfd_arcface"]), *d])
    assert res.exit_code == 2 and "--accept-license" in res.output
    res = runner.invoke(models_app, ["install", str(graphs["scrfd_arcface"]), "--accept-license", *d])
    assert res.exit_code == 0 and "installed pack-a" in res.output
    listed = json.loads(runner.invoke(models_app, ["list", "--catalog", "--json", *d]).output)
    assert [p["name"] for p in listed["installed"]] == ["pack-a"]
    assert listed["installed"][0]["license_accepted_at"] and listed["installed"][0]["calibrated"]
    assert {"buffalo_l", "buffalo_s", "antelopev2", "opencv-sface"} <= {c["name"] for c in listed["catalog"]}
    info = json.loads(runner.invoke(models_app, ["info", "pack-a", "--json", *d]).output)
    assert info["recognizer"]["template"][0] == [38.2946, 51.6963]
    assert info["license_record"]["license_id"] == "test-only"
    assert runner.invoke(models_app, ["info", "nope", *d]).exit_code == 4
    assert runner.invoke(models_app, ["verify", *d]).exit_code == 0
    f = models_root / "pack-a" / "det_10g.onnx"
    f.write_bytes(f.read_bytes() + b"\0")
    res = runner.invoke(models_app, ["verify", "--json", *d])
    assert res.exit_code == 8
    assert json.loads(res.output)["packs"]["pack-a"]["ok"] is False


def test_importing_the_models_cli_loads_no_runtime() -> None:
    import subprocess
    import sys

    code = (
        "import sys, facevault.cli.models, facevault.models.packs;"
        "print(','.join(m for m in ('onnxruntime', 'onnx', 'dlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
