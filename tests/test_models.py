"""Model pinning, lazy loading, calibration tables, and the dlib ResNet in ONNX Runtime."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from facevault import calibration
from facevault.errors import ConfigError, ModelError, ModelMismatchError
from facevault.models import Embedder, ModelPack, get_pack, register_pack
from facevault.models.base import DetectedFace

from .conftest import write_image


class TinyGreyEmbedder(Embedder):
    """A deliberately small model for tests: the 8x8 grey thumbnail of a 32x32 centre crop."""

    model_id = "test-grey-64"
    dim = 64

    def align(self, pixels: np.ndarray, face: DetectedFace) -> np.ndarray:
        x1, y1, x2, y2 = (int(v) for v in face.box)
        crop = pixels[max(0, y1) : y2, max(0, x1) : x2]
        from PIL import Image

        return np.asarray(Image.fromarray(crop).resize((32, 32)))

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        out = [c.astype(np.float32).mean(axis=2).reshape(8, 4, 8, 4).mean(axis=(1, 3)).ravel() for c in chips]
        arr = np.asarray(out, np.float32)
        return arr - arr.mean(axis=1, keepdims=True)


@pytest.fixture(scope="module", autouse=True)
def _tiny_model() -> None:
    def factory() -> ModelPack:
        return ModelPack("test-grey-64", get_pack("dlib-resnet-v1").detector, TinyGreyEmbedder())

    register_pack("test-grey-64", factory)
    rng = np.random.default_rng(0)
    calibration.register(calibration.from_impostor_scores("test-grey-64", rng.normal(0, 0.2, 20000), "test"))


def test_collection_is_pinned_to_its_model(vault, astronaut: np.ndarray, tmp_path: Path) -> None:
    vault.create_collection("dlib")
    vault.create_collection("tiny", "test-grey-64")
    assert {c["name"]: c["model_id"] for c in vault.list_collections()} == {
        "dlib": "dlib-resnet-v1",
        "tiny": "test-grey-64",
    }
    vault.add_subject("tiny", "Eileen", purpose="t", consent_text="yes")
    assert vault.enroll("tiny", "Eileen", [write_image(tmp_path / "a.jpg", astronaut)])[0].ok
    # a dlib vector can never be compared with the tiny model's vectors, nor the reverse
    dlib_vec = np.ones(128, np.float32)
    with pytest.raises(ModelMismatchError):
        vault.search_embedding("tiny", dlib_vec, model_id="dlib-resnet-v1", purpose="t")
    with pytest.raises(ModelMismatchError):
        vault.search_embedding("dlib", np.ones(64, np.float32), model_id="test-grey-64", purpose="t")
    with pytest.raises(ModelMismatchError, match="dimensions"):
        vault.search_embedding("tiny", dlib_vec, model_id="test-grey-64", purpose="t")
    hits = vault.search_embedding(
        "tiny", np.ones(64, np.float32), model_id="test-grey-64", purpose="t", threshold=-1
    )
    assert [c.name for c in hits] == ["Eileen"]


def test_index_file_of_another_model_is_refused(tmp_path: Path) -> None:
    from facevault.index import FaissIndex

    idx = FaissIndex(tmp_path / "x.faiss", 64, "test-grey-64")
    idx.add(np.arange(3), np.eye(3, 64, dtype=np.float32))
    idx.save()
    with pytest.raises(ModelMismatchError):
        FaissIndex(tmp_path / "x.faiss", 128, "dlib-resnet-v1")


def test_importing_facevault_loads_no_model() -> None:
    code = (
        "import sys, facevault, facevault.cli, facevault.service;"
        "names = ('dlib', 'onnxruntime', 'faiss', 'face_recognition_models');"
        "heavy = [m for m in names if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_calibration_is_monotonic_and_invertible() -> None:
    cal = calibration.for_model("dlib-resnet-v1")
    assert cal.impostor_pairs > 1_000_000
    thresholds = [cal.threshold_for(f) for f in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8)]
    assert thresholds == sorted(thresholds)
    for f in (1e-2, 1e-3, 1e-4, 1e-5):
        assert cal.fmr_at(cal.threshold_for(f)) == pytest.approx(f, rel=0.05)
    assert cal.is_extrapolated(1e-8) and not cal.is_extrapolated(1e-4)
    assert calibration.search_fmr_for_gallery(10, 0.01, 1e-3) == 1e-3
    assert calibration.search_fmr_for_gallery(100_000, 0.01, 1e-3) == pytest.approx(1.005e-7, rel=0.01)


def test_onnx_embedder_matches_dlib_on_real_chips(astronaut: np.ndarray) -> None:
    from PIL import Image

    from facevault.models.dlib.models import DlibResnetEmbedder, DlibResnetOnnxEmbedder

    pack = get_pack("dlib-resnet-v1")
    faces = pack.detector.detect(astronaut)
    chips = [pack.embedder.align(astronaut, faces[0])]
    for angle in (5, -5, 10):
        rotated = np.asarray(Image.fromarray(astronaut).rotate(angle))
        chips += [pack.embedder.align(rotated, f) for f in pack.detector.detect(rotated)]
    ref = DlibResnetEmbedder().embed_chips(chips)
    got = DlibResnetOnnxEmbedder(threads=1).embed_chips(chips)
    assert got.shape == ref.shape == (len(chips), 128)
    assert float(np.abs(got - ref).max()) <= 1e-4


def test_execution_provider_choice() -> None:
    from facevault.models.onnx_runtime import CPU, CUDA, chosen_providers

    assert chosen_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert chosen_providers("auto", [CPU]) == [CPU]
    assert chosen_providers("cpu", [CUDA, CPU]) == [CPU]
    assert chosen_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(ModelError) as err:
        chosen_providers("cuda", ["AzureExecutionProvider", CPU])
    assert err.value.code == "provider_unavailable" and "onnxruntime-gpu" in err.value.message


def test_provider_setting_on_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real sessions: ``cpu`` runs on the CPU; ``cuda`` on a machine without a CUDA provider is an error,
    not a silent fallback; a misspelt setting is a configuration error."""
    import onnxruntime as ort

    from facevault.models.onnx_runtime import CPU, CUDA, make_session

    from .synthetic_pack import recognizer_graph

    model = recognizer_graph(tmp_path / "r.onnx", dim=8)
    monkeypatch.setenv("FACEVAULT_PROVIDER", "cpu")
    assert make_session(model, threads=1).get_providers() == [CPU]
    monkeypatch.setenv("FACEVAULT_PROVIDER", "gpu")
    with pytest.raises(ConfigError):
        make_session(model)
    monkeypatch.setenv("FACEVAULT_PROVIDER", "cuda")
    if CUDA in ort.get_available_providers():  # pragma: no cover - GPU machines only
        assert make_session(model).get_providers()[0] == CUDA
    else:
        with pytest.raises(ModelError) as err:
            make_session(model)
        assert err.value.code == "provider_unavailable"


def test_landmark_refinement_on_a_real_face(monkeypatch: pytest.MonkeyPatch) -> None:
    """FACEVAULT_LANDMARK_REFINE=1: the points are the mean of six predictor runs (sub-pixel values), stay
    within a few pixels of the single run, and the mirror image's refined points mirror back."""
    from facevault import imaging
    from facevault.models.dlib.builtin import dlib_resnet_v1
    from facevault.models.dlib.models import DlibHogDetector

    from .conftest import lfw

    pixels = imaging.load_image(lfw("Tony_Blair", 1)).pixels
    plain = DlibHogDetector().detect(pixels)[0]
    refined = DlibHogDetector(refine=True).detect(pixels)[0]
    assert plain.box == refined.box
    assert np.all(plain.landmarks == np.round(plain.landmarks))  # the predictor's own integer points
    assert not np.all(refined.landmarks == np.round(refined.landmarks))  # an average of several runs
    assert np.abs(refined.landmarks - plain.landmarks).max() < 0.05 * plain.eye_distance + 1
    mirrored = DlibHogDetector(refine=True).detect(np.ascontiguousarray(pixels[:, ::-1]))[0]
    back = mirrored.landmarks.copy()
    back[:, 0] = pixels.shape[1] - 1 - back[:, 0]
    np.testing.assert_allclose(back[[2, 3, 0, 1, 4]], refined.landmarks, atol=1.5)
    monkeypatch.delenv("FACEVAULT_LANDMARK_REFINE", raising=False)
    assert dlib_resnet_v1().detector.refine is False  # off by default (the ingest speed target)
    monkeypatch.setenv("FACEVAULT_LANDMARK_REFINE", "1")
    assert dlib_resnet_v1().detector.refine is True
