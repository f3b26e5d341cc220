"""Installed face detectors that another pack's recognizer can use (e.g. YuNet boxes for
``dlib-resnet-v1``).

Every installed pack holds a detector: a detector-only pack (``facevault models fetch yunet``, a
manifest without ``recognizer``) and the detector of a full pack (``opencv-sface``'s YuNet). They are
named by their pack's name. ``installed_detectors`` lists them (reads manifests only; loads nothing) and
``load_detector`` returns a ready ``Detector`` after the same checks a pack gets at load (every file's
SHA-256, the license acceptance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import IntegrityError, ModelError, NotFoundError
from ..base import Detector
from .install import InstalledPack, get_installed, installed_packs, models_dir, verify_pack
from .manifest import DetectorSpec


@dataclass(frozen=True)
class InstalledDetector:
    name: str  # the pack's name
    kind: str  # "yunet" | "scrfd"
    detector_only: bool  # False: the detector of a full pack
    license_id: str
    commercial_use: bool
    folder: Path
    file: str

    @classmethod
    def of(cls, pack: InstalledPack) -> InstalledDetector:
        m = pack.manifest
        return cls(
            name=pack.name,
            kind=m.detector.kind,
            detector_only=m.detector_only,
            license_id=m.license.id,
            commercial_use=m.license.commercial_use,
            folder=pack.folder,
            file=m.detector.file,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "detector_only": self.detector_only,
            "license": self.license_id,
            "commercial_use": self.commercial_use,
            "folder": str(self.folder),
            "file": self.file,
        }


def installed_detectors(root: Path | None = None) -> list[InstalledDetector]:
    """The detectors installed in ``root`` (default: the models folder): detector-only packs first, then
    those of full packs, each group by name."""
    root = root or models_dir()
    only = installed_packs(root, detector_only=True)
    full = installed_packs(root)
    return [InstalledDetector.of(p) for p in [*only, *full]]


def build_detector(spec: DetectorSpec, folder: Path, threads: int | None = None) -> Detector:
    """The Detector a manifest's detector section describes (the network loads on first use)."""
    if spec.kind == "scrfd":
        from .scrfd import ScrfdDetector

        return ScrfdDetector(folder / spec.file, spec, threads)
    if spec.kind == "yunet":
        from .yunet import YunetDetector

        return YunetDetector(folder / spec.file, spec, threads)
    raise ModelError(f"unknown detector kind {spec.kind!r}")  # the manifest parser refuses others


def load_detector(name: str, root: Path | None = None, threads: int | None = None) -> Detector:
    """The detector of the installed pack ``name`` (detector-only or full), after checking the pack's
    files and license acceptance (an IntegrityError otherwise; NotFoundError when not installed)."""
    try:
        pack = get_installed(name, root)
    except NotFoundError as exc:
        raise NotFoundError(exc.message, code="detector_not_found") from exc
    problems = verify_pack(pack)
    if problems:
        raise IntegrityError(f"model pack {name!r} in {pack.folder} failed its check: " + "; ".join(problems))
    return build_detector(pack.manifest.detector, pack.folder, threads)
