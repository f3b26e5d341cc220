"""Packs facevault knows by name: where they come from, their file layout and how to read them.

A known pack can be installed from its original distribution (an InsightFace release zip, or the OpenCV
Zoo ONNX files) without a ``facevault-pack.json``: the manifest is written from the entry below, with the
SHA-256 of the files actually installed. ``facevault models fetch NAME`` downloads the files from the
URLs below and refuses them unless their SHA-256 matches a pinned digest or one given with ``--sha256``.

Digests are not pinned here because they could not be checked from the machine this was written on
(no access to the download hosts); pass the digest you obtained from a source you trust. When a digest
has been checked, put it in ``Download.sha256``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INSIGHTFACE_LICENSE = {
    "id": "insightface-non-commercial",
    "commercial_use": False,
    "url": "https://github.com/deepinsight/insightface#license",
    "text": (
        "InsightFace pretrained models: the code of the InsightFace Python library is MIT licensed; the "
        "pretrained models provided with it (auto-downloaded or manually downloaded) are available for "
        "non-commercial research purposes only. Training data: see the InsightFace model zoo. "
        "Full terms: https://github.com/deepinsight/insightface#license"
    ),
}

OPENCV_ZOO_LICENSE = {
    "id": "Apache-2.0 AND MIT",
    "commercial_use": True,
    "url": "https://github.com/opencv/opencv_zoo",
    "text": (
        "SFace (face_recognition_sface) is distributed by OpenCV Zoo under the Apache License 2.0; "
        "YuNet (face_detection_yunet) under the MIT License."
    ),
}

_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
_ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"


@dataclass(frozen=True)
class Download:
    url: str
    filename: str  # what the download is saved as
    sha256: str | None = None  # pinned digest; None = the user must give one


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    version: str
    description: str
    detector: dict[str, Any]
    recognizer: dict[str, Any]
    license: dict[str, Any]
    downloads: tuple[Download, ...]
    # Files of the original distribution that facevault does not install (never used: e.g. InsightFace's
    # gender/age network; facevault infers no demographics).
    ignored: tuple[str, ...] = field(default_factory=tuple)

    @property
    def source_url(self) -> str:
        return self.downloads[0].url if len(self.downloads) == 1 else ", ".join(d.url for d in self.downloads)

    def manifest_data(self, files: dict[str, str]) -> dict[str, Any]:
        return {
            "format": 1,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "detector": dict(self.detector),
            "recognizer": dict(self.recognizer),
            "license": dict(self.license),
            "source_url": self.source_url,
            "files": files,
        }


def _insightface(name: str, det: str, rec: str, desc: str, ignored: tuple[str, ...]) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        version="0.7",
        description=desc,
        detector={"kind": "scrfd", "file": det, "input_size": [640, 640], "mean": 127.5, "std": 128.0},
        recognizer={
            "kind": "arcface",
            "file": rec,
            "embedding_dim": 512,
            "input_size": [112, 112],
            "mean": [127.5, 127.5, 127.5],
            "std": [127.5, 127.5, 127.5],
        },
        license=INSIGHTFACE_LICENSE,
        downloads=(Download(f"{_RELEASE}/{name}.zip", f"{name}.zip"),),
        ignored=ignored,
    )


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        _insightface(
            "buffalo_l",
            "det_10g.onnx",
            "w600k_r50.onnx",
            "InsightFace buffalo_l: SCRFD-10GF detector, ArcFace ResNet-50 (WebFace600K), 512-d",
            ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx"),
        ),
        _insightface(
            "buffalo_m",
            "det_2.5g.onnx",
            "w600k_r50.onnx",
            "InsightFace buffalo_m: SCRFD-2.5GF detector, ArcFace ResNet-50 (WebFace600K), 512-d",
            ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx"),
        ),
        _insightface(
            "buffalo_s",
            "det_500m.onnx",
            "w600k_mbf.onnx",
            "InsightFace buffalo_s: SCRFD-500MF detector, ArcFace MobileFaceNet (WebFace600K), 512-d",
            ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx"),
        ),
        _insightface(
            "antelopev2",
            "scrfd_10g_bnkps.onnx",
            "glintr100.onnx",
            "InsightFace antelopev2: SCRFD-10GF detector, ArcFace ResNet-100 (Glint360K), 512-d",
            ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx"),
        ),
        CatalogEntry(
            name="opencv-sface",
            version="2021dec+2023mar",
            description="OpenCV Zoo: YuNet detector (2023mar), SFace recognizer (2021dec), 128-d",
            detector={
                "kind": "yunet",
                "file": "face_detection_yunet_2023mar.onnx",
                "input_size": [640, 640],
                "score_threshold": 0.6,
                "nms_threshold": 0.3,
            },
            recognizer={
                "kind": "sface",
                "file": "face_recognition_sface_2021dec.onnx",
                "embedding_dim": 128,
                "input_size": [112, 112],
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
            },
            license=OPENCV_ZOO_LICENSE,
            downloads=(
                Download(
                    f"{_ZOO}/face_detection_yunet/face_detection_yunet_2023mar.onnx",
                    "face_detection_yunet_2023mar.onnx",
                ),
                Download(
                    f"{_ZOO}/face_recognition_sface/face_recognition_sface_2021dec.onnx",
                    "face_recognition_sface_2021dec.onnx",
                ),
            ),
        ),
    )
}


def recognise_layout(filenames: set[str]) -> list[CatalogEntry]:
    """Catalog entries whose detector and recognizer files are both present (most specific first:
    an entry whose ignored files are present too ranks higher)."""
    hits = [e for e in CATALOG.values() if {e.detector["file"], e.recognizer["file"]} <= filenames]
    return sorted(hits, key=lambda e: -len(set(e.ignored) & filenames))
