"""The pack manifest: ``facevault-pack.json`` at the root of a pack folder or zip.

A manifest names every file of the pack with its SHA-256, says which detector and recognizer kinds read
them and how (input size, mean/std, colour order, embedding dimension, alignment template), and carries
the license and the source. See docs/MODELS.md for the format.

A manifest without ``recognizer`` describes a detector-only pack (``PackManifest.detector_only``): it
gives faces and landmarks to another pack's recognizer (``packs.detectors``) and is never a model of its
own, since no vector is made with it. Its ``recognizer`` is ``NO_RECOGNIZER`` (kind "none", 0-d), so
code that summarises packs needs no special case.

A recognizer's mean and std are per channel (one number or three), in pixel units: MobileFaceNet's x/255
then ImageNet normalisation is mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConfigError

MANIFEST_NAME = "facevault-pack.json"
FORMAT_VERSION = 1

DETECTOR_KINDS = ("scrfd", "yunet")
RECOGNIZER_KINDS = ("arcface", "sface")

# The 5-point reference of 112x112 ArcFace-style chips (eye centres, nose tip, mouth corners; the first
# point is the one with the smaller x in the image, i.e. the subject's right eye).
ARCFACE_TEMPLATE_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class DetectorSpec:
    kind: str  # "scrfd" | "yunet"
    file: str
    input_size: tuple[int, int] = (640, 640)  # width, height the image is letterboxed into
    mean: float = 127.5
    std: float = 128.0
    color: str = "RGB"  # channel order the network expects
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    max_faces: int = 0  # 0 = no limit


@dataclass(frozen=True)
class RecognizerSpec:
    kind: str  # "arcface" | "sface"
    file: str
    embedding_dim: int
    input_size: tuple[int, int] = (112, 112)
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    color: str = "RGB"
    template: tuple[tuple[float, float], ...] = ARCFACE_TEMPLATE_112
    batch_size: int = 32


# The recognizer of a detector-only pack (a null object: kind "none", no file, no dimension).
NO_RECOGNIZER = RecognizerSpec(kind="none", file="", embedding_dim=0)


@dataclass(frozen=True)
class LicenseInfo:
    id: str  # an SPDX id where one exists, else a short name such as "insightface-non-commercial"
    commercial_use: bool
    text: str = ""
    url: str = ""

    @property
    def needs_acceptance(self) -> bool:
        return not self.commercial_use


@dataclass(frozen=True)
class PackManifest:
    name: str
    version: str
    detector: DetectorSpec
    recognizer: RecognizerSpec  # NO_RECOGNIZER for a detector-only pack
    license: LicenseInfo
    files: dict[str, str]  # relative path -> sha256
    source_url: str = ""
    description: str = ""
    calibration: dict[str, Any] | None = None  # impostor statistics, as written by calibration.save
    format: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def detector_only(self) -> bool:
        return self.recognizer == NO_RECOGNIZER

    @property
    def model_id(self) -> str:
        """The id stored with every vector of this pack: the pack name."""
        return self.name

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["detector"]["input_size"] = list(self.detector.input_size)
        if self.detector_only:
            data.pop("recognizer")
        else:
            rec = data["recognizer"]
            rec["input_size"] = list(self.recognizer.input_size)
            rec["mean"], rec["std"] = list(self.recognizer.mean), list(self.recognizer.std)
            rec["template"] = [list(p) for p in self.recognizer.template]
        if not data["calibration"]:
            data.pop("calibration")
        if not data["extra"]:
            data.pop("extra")
        return data

    def write(self, folder: Path) -> Path:
        path = folder / MANIFEST_NAME
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path


def _req(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ConfigError(f"pack manifest: {where} needs {key!r}")
    return data[key]


def _triple(value: Any, where: str) -> tuple[float, float, float]:
    if isinstance(value, int | float):
        return (float(value),) * 3  # type: ignore[return-value]
    vals = tuple(float(v) for v in value)
    if len(vals) != 3:
        raise ConfigError(f"pack manifest: {where} needs one value or three")
    return vals  # type: ignore[return-value]


def _size(value: Any, where: str) -> tuple[int, int]:
    vals = tuple(int(v) for v in value)
    if len(vals) != 2 or min(vals) <= 0:
        raise ConfigError(f"pack manifest: {where} must be [width, height]")
    return vals  # type: ignore[return-value]


def _color(value: Any, where: str) -> str:
    c = str(value).upper()
    if c not in ("RGB", "BGR"):
        raise ConfigError(f"pack manifest: {where} must be RGB or BGR")
    return c


def _recognizer(r: Any) -> RecognizerSpec:
    if not isinstance(r, dict):
        raise ConfigError("pack manifest: 'recognizer' must be an object (absent for a detector-only pack)")
    rec_kind = str(_req(r, "kind", "recognizer"))
    if rec_kind not in RECOGNIZER_KINDS:
        raise ConfigError(
            f"pack manifest: recognizer kind {rec_kind!r} is not one of {', '.join(RECOGNIZER_KINDS)}"
        )
    # SFace (OpenCV) feeds raw 0-255 RGB; ArcFace (InsightFace) feeds (x - 127.5) / 127.5.
    rec_defaults: dict[str, Any] = {"sface": {"mean": 0.0, "std": 1.0}}
    rd = {**rec_defaults.get(rec_kind, {}), **r}
    template = tuple(tuple(float(v) for v in p) for p in rd.get("template", ARCFACE_TEMPLATE_112))
    if len(template) != 5 or any(len(p) != 2 for p in template):
        raise ConfigError("pack manifest: recognizer.template must be 5 [x, y] points")
    dim = int(_req(r, "embedding_dim", "recognizer"))
    if dim <= 0:
        raise ConfigError("pack manifest: recognizer.embedding_dim must be positive")
    return RecognizerSpec(
        kind=rec_kind,
        file=str(_req(r, "file", "recognizer")),
        embedding_dim=dim,
        input_size=_size(rd.get("input_size", (112, 112)), "recognizer.input_size"),
        mean=_triple(rd.get("mean", 127.5), "recognizer.mean"),
        std=_triple(rd.get("std", 127.5), "recognizer.std"),
        color=_color(rd.get("color", "RGB"), "recognizer.color"),
        template=template,  # type: ignore[arg-type]
        batch_size=max(1, int(rd.get("batch_size", 32))),
    )


def parse_manifest(data: dict[str, Any]) -> PackManifest:
    """Validate a manifest dict; every problem is a ConfigError naming the field."""
    if not isinstance(data, dict):
        raise ConfigError("pack manifest must be a JSON object")
    fmt = int(data.get("format", FORMAT_VERSION))
    if fmt > FORMAT_VERSION:
        raise ConfigError(f"pack manifest format {fmt} is newer than this facevault understands")
    name = str(_req(data, "name", "the pack"))
    if not _NAME_RE.match(name):
        raise ConfigError(f"pack name {name!r}: use lower-case letters, digits, '.', '_' or '-'")
    if name.startswith("dlib-") or name.startswith("test-"):
        raise ConfigError(f"pack name {name!r} is reserved")
    files = _req(data, "files", "the pack")
    if not isinstance(files, dict) or not files:
        raise ConfigError("pack manifest: 'files' must map file names to SHA-256 digests")
    clean_files: dict[str, str] = {}
    for rel, digest in files.items():
        rel_path = Path(str(rel))
        if rel_path.is_absolute() or ".." in rel_path.parts or str(rel) == MANIFEST_NAME:
            raise ConfigError(f"pack manifest: bad file name {rel!r}")
        if not isinstance(digest, str) or not _SHA_RE.match(digest.lower()):
            raise ConfigError(f"pack manifest: {rel!r} needs a 64-digit hex SHA-256")
        clean_files[str(rel)] = digest.lower()

    d = _req(data, "detector", "the pack")
    det_kind = str(_req(d, "kind", "detector"))
    if det_kind not in DETECTOR_KINDS:
        raise ConfigError(
            f"pack manifest: detector kind {det_kind!r} is not one of {', '.join(DETECTOR_KINDS)}"
        )
    det_defaults = {
        "yunet": {"mean": 0.0, "std": 1.0, "color": "BGR", "score_threshold": 0.6, "nms_threshold": 0.3}
    }
    dd = {**det_defaults.get(det_kind, {}), **d}
    detector = DetectorSpec(
        kind=det_kind,
        file=str(_req(d, "file", "detector")),
        input_size=_size(dd.get("input_size", (640, 640)), "detector.input_size"),
        mean=float(dd.get("mean", 127.5)),
        std=float(dd.get("std", 128.0)),
        color=_color(dd.get("color", "RGB"), "detector.color"),
        score_threshold=float(dd.get("score_threshold", 0.5)),
        nms_threshold=float(dd.get("nms_threshold", 0.4)),
        max_faces=int(dd.get("max_faces", 0)),
    )

    r = data.get("recognizer")
    recognizer = NO_RECOGNIZER if r is None else _recognizer(r)
    roles = [("detector", detector.file)]
    if r is not None:
        roles.append(("recognizer", recognizer.file))
    for role, f in roles:
        if f not in clean_files:
            raise ConfigError(f"pack manifest: the {role} file {f!r} is not listed in 'files'")

    lic = _req(data, "license", "the pack")
    if isinstance(lic, str):
        lic = {"id": lic}
    license_info = LicenseInfo(
        id=str(_req(lic, "id", "license")),
        commercial_use=bool(lic.get("commercial_use", False)),
        text=str(lic.get("text", "")),
        url=str(lic.get("url", "")),
    )
    if license_info.needs_acceptance and not (license_info.text or license_info.url):
        raise ConfigError("pack manifest: a license that needs acceptance must carry its text or URL")
    cal = data.get("calibration")
    if cal is not None and not isinstance(cal, dict):
        raise ConfigError("pack manifest: 'calibration' must be an object")
    if cal is not None and r is None:
        raise ConfigError("pack manifest: a detector-only pack has no scores to calibrate")
    return PackManifest(
        name=name,
        version=str(_req(data, "version", "the pack")),
        detector=detector,
        recognizer=recognizer,
        license=license_info,
        files=clean_files,
        source_url=str(data.get("source_url", "")),
        description=str(data.get("description", "")),
        calibration=cal,
        format=fmt,
        extra=dict(data.get("extra", {})),
    )


def load_manifest(folder: Path) -> PackManifest:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError(f"{folder}: no {MANIFEST_NAME}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the manifest ({exc})") from exc
    return parse_manifest(data)


def check_files(manifest: PackManifest, folder: Path) -> list[str]:
    """Problems with the pack's files in ``folder`` (missing, or SHA-256 differs); empty when intact."""
    problems = []
    for rel, digest in sorted(manifest.files.items()):
        p = folder / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
            continue
        got = sha256_file(p)
        if got != digest:
            problems.append(f"{rel}: SHA-256 {got[:16]}... differs from the manifest's {digest[:16]}...")
    return problems
