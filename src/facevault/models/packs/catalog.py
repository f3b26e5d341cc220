"""Packs facevault knows by name: where they come from, their file layout and how to read them.

A known pack can be installed from its original distribution (an InsightFace release zip, or the OpenCV
Zoo ONNX files) without a ``facevault-pack.json``: the manifest is written from the entry below, with the
SHA-256 of the files actually installed. ``facevault models fetch NAME`` downloads the files from the
URLs below and refuses them unless their SHA-256 matches a pinned digest or one given with ``--sha256``.

Pinned digests are those of files checked byte for byte against their publishers' (the YuNet 2023mar
digest is also the Git LFS object id OpenCV Zoo publishes for it; the SCRFD detector digests are the
ones InsightFace's buffalo_s/buffalo_sc and buffalo_m zips hold). A zip download whose own digest is not
pinned may still pin the files inside it (``Download.members``): those files are checked, and only
they are installed. Where nothing is pinned, pass the digest you obtained from a source you trust.

Detector-only entries (``recognizer`` None: ``yunet``, ``scrfd-500m``, ``scrfd-2.5g``) give boxes and
landmarks to another pack's recognizer (``packs.detectors``).
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

YUNET_LICENSE = {
    "id": "MIT",
    "commercial_use": True,
    "url": "https://github.com/opencv/opencv_zoo/blob/main/models/face_detection_yunet/LICENSE",
    "text": "YuNet (face_detection_yunet, OpenCV Zoo, Shiqi Yu) is distributed under the MIT License.",
}

YUNET_2023MAR_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
SCRFD_500M_SHA256 = "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a"
SCRFD_2_5G_SHA256 = "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9"

_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"
_ZOO = "https://github.com/opencv/opencv_zoo/raw/main/models"


@dataclass(frozen=True)
class Download:
    url: str
    filename: str  # what the download is saved as
    sha256: str | None = None  # pinned digest; None = the user must give one (unless members pins)
    # Pinned digests of files inside a zip download; with no download digest, only these are installed.
    members: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    version: str
    description: str
    detector: dict[str, Any]
    recognizer: dict[str, Any] | None  # None: a detector-only pack
    license: dict[str, Any]
    downloads: tuple[Download, ...]
    # Files of the original distribution that facevault does not install (never used: e.g. InsightFace's
    # gender/age network; facevault infers no demographics).
    ignored: tuple[str, ...] = field(default_factory=tuple)

    @property
    def detector_only(self) -> bool:
        return self.recognizer is None

    @property
    def required_files(self) -> set[str]:
        """The files the pack installs."""
        return {self.detector["file"]} | ({self.recognizer["file"]} if self.recognizer else set())

    @property
    def pinned_files(self) -> dict[str, str]:
        """{installed file: pinned SHA-256} for the files whose digest the catalog knows."""
        pins: dict[str, str] = {}
        for d in self.downloads:
            if d.sha256 and d.filename in self.required_files:
                pins[d.filename] = d.sha256
            pins.update({f: h for f, h in d.members.items() if f in self.required_files})
        return pins

    @property
    def source_url(self) -> str:
        return self.downloads[0].url if len(self.downloads) == 1 else ", ".join(d.url for d in self.downloads)

    def manifest_data(self, files: dict[str, str]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": 1,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "detector": dict(self.detector),
            "license": dict(self.license),
            "source_url": self.source_url,
            "files": files,
        }
        if self.recognizer is not None:
            data["recognizer"] = dict(self.recognizer)
        return data


_SCRFD = {"kind": "scrfd", "input_size": [640, 640], "mean": 127.5, "std": 128.0}
_YUNET = {"kind": "yunet", "input_size": [640, 640], "score_threshold": 0.6, "nms_threshold": 0.3}
_PINNED_DETECTORS = {"det_500m.onnx": SCRFD_500M_SHA256, "det_2.5g.onnx": SCRFD_2_5G_SHA256}


def _insightface(name: str, det: str, rec: str, desc: str, ignored: tuple[str, ...]) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        version="0.7",
        description=desc,
        detector={**_SCRFD, "file": det},
        recognizer={
            "kind": "arcface",
            "file": rec,
            "embedding_dim": 512,
            "input_size": [112, 112],
            "mean": [127.5, 127.5, 127.5],
            "std": [127.5, 127.5, 127.5],
        },
        license=INSIGHTFACE_LICENSE,
        downloads=(
            Download(
                f"{_RELEASE}/{name}.zip",
                f"{name}.zip",
                members={det: _PINNED_DETECTORS[det]} if det in _PINNED_DETECTORS else {},
            ),
        ),
        ignored=ignored,
    )


def _scrfd_only(name: str, det: str, release: str, desc: str) -> CatalogEntry:
    """An SCRFD detector from an InsightFace release zip: only the (pinned) detector is installed."""
    return CatalogEntry(
        name=name,
        version="0.7",
        description=desc,
        detector={**_SCRFD, "file": det},
        recognizer=None,
        license=INSIGHTFACE_LICENSE,
        downloads=(
            Download(f"{_RELEASE}/{release}.zip", f"{release}.zip", members={det: _PINNED_DETECTORS[det]}),
        ),
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
            detector={**_YUNET, "file": "face_detection_yunet_2023mar.onnx"},
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
                    sha256=YUNET_2023MAR_SHA256,
                ),
                Download(
                    f"{_ZOO}/face_recognition_sface/face_recognition_sface_2021dec.onnx",
                    "face_recognition_sface_2021dec.onnx",
                ),
            ),
        ),
        CatalogEntry(
            name="yunet",
            version="2023mar",
            description="OpenCV Zoo YuNet 2023mar face detector (5 landmarks), detector only, 232 KB",
            detector={**_YUNET, "file": "face_detection_yunet_2023mar.onnx"},
            recognizer=None,
            license=YUNET_LICENSE,
            downloads=(
                Download(
                    f"{_ZOO}/face_detection_yunet/face_detection_yunet_2023mar.onnx",
                    "face_detection_yunet_2023mar.onnx",
                    sha256=YUNET_2023MAR_SHA256,
                ),
            ),
        ),
        _scrfd_only(
            "scrfd-500m",
            "det_500m.onnx",
            "buffalo_sc",
            "InsightFace SCRFD-500MF face detector (5 landmarks, from buffalo_sc), detector only",
        ),
        _scrfd_only(
            "scrfd-2.5g",
            "det_2.5g.onnx",
            "buffalo_m",
            "InsightFace SCRFD-2.5GF face detector (5 landmarks, from buffalo_m), detector only",
        ),
    )
}


def layout_rank(entry: CatalogEntry, filenames: set[str]) -> tuple[int, int]:
    """How well a folder's files fit an entry (higher is better): the files it installs, then its
    ignored files that are present too."""
    return len(entry.required_files), len(set(entry.ignored) & filenames)


def recognise_layout(filenames: set[str]) -> list[CatalogEntry]:
    """Catalog entries whose files are all present, most specific first (a full pack before a
    detector-only one; an entry whose ignored files are present too before one whose are not)."""
    hits = [e for e in CATALOG.values() if e.required_files <= filenames]
    return sorted(hits, key=lambda e: tuple(-v for v in layout_rank(e, filenames)))
