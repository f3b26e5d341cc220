"""The dlib ResNet -> ONNX converter: format parsing, graph contract, and parity with dlib itself on
>= 100 real LFW faces (max |difference| <= 1e-4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from facevault.models.dlib import convert as m

frm = pytest.importorskip("face_recognition_models")
ort = pytest.importorskip("onnxruntime")

from .conftest import DATA as DATA_DIR  # noqa: E402

LFW_GLOB = "lfw/lfw-deepfunneled/*/*.jpg"
N_IMAGES = 120
MIN_CHIPS = 100
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------- decoder


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x01\x00", 0),
        (b"\x01\x02", 2),
        (b"\x81\x05", -5),
        (b"\x02\xe8\x03", 1000),
        (b"\x82\x00\x01", -256),
        (b"\x08" + (2**63 - 1).to_bytes(8, "little"), 2**63 - 1),
    ],
)
def test_integer_encoding(raw: bytes, value: int) -> None:
    r = m._Reader(raw)
    assert r.integer() == value
    assert r.at_end()


def test_float_encoding() -> None:
    # 0.6f as written by dlib: mantissa 0x99999a, exponent -24 (trailing zero bytes shifted off).
    r = m._Reader(b"\x03\x9a\x99\x99\x81\x18" + b"\x01\x00\x02\x00\x7d")
    assert np.float32(r.real()) == np.float32(0.6)
    assert r.real() == float("inf")  # exponent 32000 == is_inf


def test_bad_control_byte_rejected() -> None:
    with pytest.raises(m.DlibSerializationError):
        m._Reader(b"\x31").integer()


# ---------------------------------------------------------------------------------------- structure


@pytest.fixture(scope="module")
def weights() -> m.DlibResnetWeights:
    return m.parse_dlib_resnet(frm.face_recognition_model_location())


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "dlib_resnet.onnx"
    digest = m.convert(frm.face_recognition_model_location(), path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    return path


@pytest.fixture(scope="module")
def session(onnx_path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def test_parsed_structure(weights: m.DlibResnetWeights) -> None:
    kinds = [layer.kind for layer in weights.layers]
    assert kinds.count("con") == 29
    assert kinds.count("affine") == 29
    assert kinds.count("add_prev") == 14
    assert weights.input_size == (150, 150)
    assert weights.input_mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert weights.layers[0].arrays["filters"].shape == (32, 3, 7, 7)
    assert weights.layers[-1].arrays["weights"].shape == (256, 128)
    assert "biases" not in weights.layers[-1].arrays  # fc_no_bias
    n_params = sum(a.size for layer in weights.layers for a in layer.arrays.values())
    assert n_params == 5_614_592


def test_convert_is_deterministic_and_atomic(tmp_path: Path, onnx_path: Path) -> None:
    out = tmp_path / "sub" / "model.onnx"
    digest = m.convert(frm.face_recognition_model_location(), out)
    assert digest == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # no temp file left behind


def test_graph_contract(session: ort.InferenceSession) -> None:
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.shape[1:], inp.type) == ("chip", [150, 150, 3], "tensor(float)")
    assert (out.name, out.shape[1:], out.type) == ("embedding", [128], "tensor(float)")
    assert isinstance(inp.shape[0], str)  # dynamic batch
    x = np.random.default_rng(0).integers(0, 256, size=(3, 150, 150, 3)).astype(np.float32)
    batched = session.run(None, {"chip": x})[0]
    single = np.concatenate([session.run(None, {"chip": x[i : i + 1]})[0] for i in range(3)])
    assert batched.shape == (3, 128)
    np.testing.assert_allclose(batched, single, atol=1e-5)


# ---------------------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def lfw_chips() -> list[np.ndarray]:
    if not DATA_DIR.is_dir():
        pytest.skip(f"test data dir {DATA_DIR} not present")
    files = sorted(DATA_DIR.glob(LFW_GLOB))[:N_IMAGES]
    if not files:
        pytest.skip(f"no LFW images under {DATA_DIR}")
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    shape_predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    chips = []
    for path in files:
        img = dlib.load_rgb_image(str(path))
        dets = detector(img, 1)
        if len(dets) == 0:
            continue
        chips.append(np.asarray(dlib.get_face_chip(img, shape_predictor(img, dets[0]), 150, 0.25)))
    return chips


def test_matches_dlib_on_lfw(lfw_chips: list[np.ndarray], session: ort.InferenceSession) -> None:
    dlib = pytest.importorskip("dlib")
    assert len(lfw_chips) >= MIN_CHIPS
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    ref = np.array([np.array(rec.compute_face_descriptor(chip)) for chip in lfw_chips])
    batch = np.stack(lfw_chips).astype(np.float32)
    got = np.concatenate(
        [session.run(None, {"chip": batch[i : i + 32]})[0] for i in range(0, len(batch), 32)]
    )
    assert got.shape == ref.shape == (len(lfw_chips), 128)
    max_err = float(np.abs(got - ref).max())
    print(f"\n{len(lfw_chips)} chips, max abs diff vs dlib = {max_err:.3e}")
    assert max_err <= TOLERANCE
