"""Shared fixtures. Real face data comes from one setting, FACEVAULT_TEST_DATA (default ../shared/data
next to the repository); tests that need it skip cleanly when it is absent."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACEVAULT_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Converted models are cached once per test session, never in the user's home."""
    old = os.environ.get("FACEVAULT_MODEL_CACHE")
    os.environ["FACEVAULT_MODEL_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
    yield
    if old is None:
        os.environ.pop("FACEVAULT_MODEL_CACHE", None)
    else:
        os.environ["FACEVAULT_MODEL_CACHE"] = old


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEVAULT_HOME", str(tmp_path / "vault"))
    monkeypatch.setenv("USER", "tester")


def data_path(*parts: str) -> Path:
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"test data not available: {p} (set FACEVAULT_TEST_DATA)")
    return p


def lfw(name: str, number: int) -> Path:
    return data_path("lfw", "lfw-deepfunneled", name, f"{name}_{number:04d}.jpg")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins, public domain), cropped to her head and
    shoulders: the detector sees one face."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:300, 60:400])


def write_image(path: Path, pixels: np.ndarray, fmt: str = "JPEG", **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt, **kw)
    return path


def jpeg_bytes(pixels: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def vault(tmp_path: Path):  # type: ignore[no-untyped-def]
    import facevault

    v = facevault.open(str(tmp_path / "vault"), create=True)
    yield v
    v.close()


@pytest.fixture
def people_vault(vault):  # type: ignore[no-untyped-def]
    """A collection with two consented subjects."""
    vault.create_collection("people")
    vault.add_subject("people", "Alice", purpose="testing", consent_text="I agree (test)")
    vault.add_subject("people", "Bob", purpose="testing", consent_text="I agree too (test)")
    return vault


def run_cli(home: str, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    """``facevault ARGS`` in a child process on vault ``home``; ``crash_at`` names a fault-injection
    point (FACEVAULT_CRASH_AT) where the child kills itself with SIGKILL."""
    env = {**os.environ, "FACEVAULT_HOME": home}
    if crash_at:
        env["FACEVAULT_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "facevault.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
