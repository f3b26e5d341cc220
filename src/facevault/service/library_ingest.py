"""``library add``: every face of every photo of a folder (or of the files named) into a library.

Resumable and de-duplicated by SHA-256: the parent hashes each file and skips those whose hash the
library holds as ``done`` or ``error``; a photo's row, its faces and its ``done`` status are committed in
one transaction, so a run killed at any instant redoes at most the uncommitted chunk. One bad file never
stops the run: it is recorded as ``error`` with the error's code. Detection and embedding run in worker
processes (``pipeline.map_with_pipeline``, as ``enroll-batch``); the single writer here applies the
opt-out check (a face that matches an opt-out is never stored), protects and seals the templates, and
after each chunk places the new faces among the library's people (``library_cluster.assign_new_faces``).

``ingest`` is that one path for server paths (``add_photos``) and uploaded bytes (service/
library_uploads.py, which also keeps a copy of each photo: staged before its chunk's transaction, moved
into place after it); it returns the counts and one outcome per photo offered.

A face blocked by an opt-out in an uploaded photo is not stored, and its pixels are not kept either:
the opt-out check runs before the copy is staged, and the copy staged is the photo with the blocked
faces blurred (``library_photos.blurred_bytes``), so the uploaded bytes never reach a file. The photo's
row then has the hash of the blurred copy (what is on disk, so reads verify), and the uploaded file's
hash is kept as an ``erased`` row holding nothing else, as an erasure with blur does
(service/library_erasure.py): uploading the same file again is skipped. A photo added by server path
keeps its file as it is (facevault does not write to the folders it indexes): only its blocked faces
are left out.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import crops, faults, imaging
from ..audit_events import LibraryPhotosAdded
from ..clock import to_datetime
from ..errors import FaceVaultError, InputError
from ..pipeline import Pipeline, map_with_pipeline
from ..store.library_queries import ERASED
from .context import ServiceContext
from .library_cluster import assign_new_faces, crop_context, face_context, save_snapshot
from .library_photos import blurred_bytes
from .optout import library_optout_guard
from .photos import Staged, place_library_copy, stage_library_copy

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
CHUNK = 32  # photos per commit
EXIF_DATETIME_ORIGINAL = 0x9003
EXIF_DATETIME = 0x0132
EXIF_ORIENTATION = 0x0112


@dataclass
class FoundFace:
    box: tuple[float, float, float, float]
    landmarks: list[list[float]]
    quality: dict[str, float]
    score: float
    embedding: np.ndarray
    crop: tuple[bytes, str, int, int] | None = None  # data, media type, width, height


@dataclass
class PhotoResult:
    path: str
    sha256: str
    size: int
    width: int | None = None
    height: int | None = None
    taken_at: datetime | None = None
    orientation: int | None = None
    faces: list[FoundFace] = field(default_factory=list)
    error: str | None = None


def five_points(face: Any) -> list[list[float]]:
    """The detector's 5 landmarks (eyes, nose, mouth corners) where it gives 5; otherwise eyes and nose."""
    pts = np.asarray(face.landmarks, dtype=np.float64)
    if pts.shape == (5, 2):
        return [[float(x), float(y)] for x, y in pts]
    return [[float(v) for v in p] for p in (face.left_eye, face.right_eye, face.nose)]


def _exif(data: bytes) -> tuple[datetime | None, int | None]:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            exif = img.getexif()
            orientation = exif.get(EXIF_ORIENTATION)
            raw = exif.get_ifd(0x8769).get(EXIF_DATETIME_ORIGINAL) or exif.get(EXIF_DATETIME)
    except Exception:
        return None, None
    taken = None
    if isinstance(raw, str):
        try:
            taken = to_datetime(datetime.strptime(raw.strip(), "%Y:%m:%d %H:%M:%S"))
        except ValueError:
            taken = None
    return taken, int(orientation) if isinstance(orientation, int) else None


@dataclass(frozen=True)
class PhotoJob:
    """One photo for a worker: where it comes from and, for an upload, its bytes (sent to the worker)."""

    source: str  # recorded as the photo's source: a server path, or ``upload:<name>``
    sha256: str
    size: int
    max_bytes: int
    max_pixels: int
    keep_crops: bool
    data: bytes | None = None  # an upload's bytes; None: read ``source`` from disk


def _read(job: PhotoJob) -> bytes:
    if job.data is not None:
        return job.data
    return imaging.read_file_bytes(job.source, max_bytes=job.max_bytes)


def analyze_photo(pipe: Pipeline, job: PhotoJob) -> PhotoResult:
    """Worker side: decode, EXIF, every face with its template (raw: protected by the writer). Never
    raises: a bad file comes back with its error code."""
    out = PhotoResult(path=job.source, sha256=job.sha256, size=job.size)
    try:
        data = _read(job)
        decoded = imaging.decode_image(
            data, max_bytes=job.max_bytes, max_pixels=job.max_pixels, name=job.source
        )
        out.sha256 = decoded.sha256
        out.width, out.height = decoded.width, decoded.height
        out.taken_at, out.orientation = _exif(data)
        for f in pipe.analyze(decoded.pixels):
            found = FoundFace(
                box=tuple(float(v) for v in f.face.box),  # type: ignore[arg-type]
                landmarks=five_points(f.face),
                quality=f.quality.to_dict(),
                score=float(f.face.score),
                embedding=f.embedding,
            )
            if job.keep_crops:
                c = crops.make_crop(decoded.pixels, f.face.box)
                found.crop = (c.data, c.media_type, c.size[0], c.size[1])
            out.faces.append(found)
    except FaceVaultError as exc:
        out.error = exc.code
    except Exception as exc:
        out.error = type(exc).__name__
    return out


def within(path: str | os.PathLike[str], roots: Sequence[Path]) -> bool:
    """Whether ``path``, links followed, lies in one of ``roots`` (resolved folders)."""
    real = Path(path).resolve()
    return any(real == r or real.is_relative_to(r) for r in roots)


def photo_files(
    sources: Sequence[str | os.PathLike[str]], recursive: bool, roots: Sequence[Path] | None = None
) -> list[str]:
    """The image files named, and those in the folders named (sorted; sub-folders with ``recursive``).
    ``roots``: only files whose real path lies in one of these folders (a link out of them is left out)."""
    files: list[str] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            pattern = p.rglob("*") if recursive else p.glob("*")
            files += sorted(
                str(f)
                for f in pattern
                if f.is_file()
                and f.suffix.lower() in IMAGE_EXTENSIONS
                and (roots is None or within(f, roots))
            )
        elif p.exists():
            files.append(str(p))
        else:
            raise InputError(f"{src}: no such file or folder", code="file_not_found")
    return files


def _sha256(path: str) -> tuple[str, int] | None:
    try:
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
                size += len(block)
        return h.hexdigest(), size
    except OSError:
        return None


@dataclass
class Incoming:
    """One photo offered to a library: a server path (``data`` None) or an upload's name and bytes."""

    source: str  # recorded as the photo's source: a server path, or ``upload:<name>``
    data: bytes | None = None


@dataclass
class FileOutcome:
    """What became of one offered photo: ``added``, ``skipped`` (the library has it, or it came twice)
    or ``failed`` (with the error's code)."""

    status: str
    sha256: str | None = None
    faces: int = 0
    error: str | None = None
    photo_id: int | None = None
    blurred: int = 0  # faces blocked by an opt-out and blurred in the photo's kept copy


# A re-run skips the photos the library has: indexed, unreadable, or erased (library_erasure.py).
SKIP_STATES = ("done", "error", ERASED)


def add_photos(
    ctx: ServiceContext,
    library: str,
    sources: Sequence[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    workers: int | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
    roots: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """Add photos to ``library``; returns counts (added, skipped, failed, faces, blocked, people).
    ``roots``: the folders the caller may add from (HTTP); a source outside them is refused before it is
    looked at, and files linked from inside to outside are left out."""
    with ctx.read() as conn:
        ctx.store.get_library(conn, library)  # an unknown library before any file is looked at
    if roots is not None:
        outside = [str(s) for s in sources if not within(s, roots)]
        if outside:
            raise InputError(
                f"{outside[0]}: not in a folder this server lets photos be added from",
                code="path_not_allowed",
            )
    files = photo_files(sources, recursive, roots)
    report, _ = ingest(ctx, library, [Incoming(f) for f in files], workers=workers, progress=progress)
    return report


def _hashed(item: Incoming) -> tuple[str, int] | None:
    if item.data is not None:
        return hashlib.sha256(item.data).hexdigest(), len(item.data)
    return _sha256(item.source)


def ingest(
    ctx: ServiceContext,
    library: str,
    items: Sequence[Incoming],
    *,
    keep_copies: bool = False,
    workers: int | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> tuple[dict[str, Any], list[FileOutcome]]:
    """The one ingest path of paths and uploads (module docstring): returns the counts, with the audit
    entry's number, and one outcome per item, in order. ``keep_copies``: keep a copy of each photo
    committed (uploads), staged before its chunk's transaction and moved into place after it."""
    with ctx.read() as conn:
        lib = ctx.store.get_library(conn, library)
        states = ctx.store.library_photo_states(conn, lib["id"])
        key = ctx.current_key(conn)
        optout_rows = ctx.store.optouts_for(conn, None, "*")
    guard = library_optout_guard(ctx, lib, key, optout_rows)
    counts = {
        "photos": len(items),
        "added": 0,
        "skipped": 0,
        "failed": 0,
        "faces": 0,
        "blocked": 0,
        "people_created": 0,
    }
    outcomes = [FileOutcome("failed") for _ in items]
    jobs: list[PhotoJob] = []
    first: dict[str, int] = {}  # sha256 -> the index of the item analysed for it
    s = ctx.settings
    for i, item in enumerate(items):
        hashed = _hashed(item)
        if hashed is None:
            counts["failed"] += 1
            outcomes[i].error = "file_not_found"
            continue
        sha, size = hashed
        outcomes[i].sha256 = sha
        if states.get(sha) in SKIP_STATES or sha in first:
            counts["skipped"] += 1
            outcomes[i].status = "skipped"
            continue
        first[sha] = i
        jobs.append(
            PhotoJob(
                item.source,
                sha,
                size,
                s.max_image_bytes,
                s.max_image_pixels,
                bool(lib["keep_crops"]),
                item.data,
            )
        )
    if progress:
        progress(counts)
    results = map_with_pipeline(
        analyze_photo, jobs, model_id=lib["model_id"], settings=ctx.settings, workers=workers, chunksize=2
    )
    uploads = {sha: items[i].data for sha, i in first.items() if items[i].data is not None}
    writer = _Writer(ctx, lib, key, guard, counts, states, uploads, keep_copies)
    chunk: list[PhotoResult] = []
    for res in results:
        chunk.append(res)
        if len(chunk) >= CHUNK:
            _record(writer.commit(chunk), first, outcomes)
            chunk = []
            if progress:
                progress(counts)
    if chunk:
        _record(writer.commit(chunk), first, outcomes)
    with ctx.write() as conn:
        seq = ctx.log(
            conn,
            LibraryPhotosAdded(
                purpose=lib["purpose"],
                library=lib["name"],
                photos_added=counts["added"],
                photos_skipped=counts["skipped"],
                photos_failed=counts["failed"],
                faces_added=counts["faces"],
                faces_blocked=counts["blocked"],
                people_created=counts["people_created"],
            ),
        )
        skipped = [o.sha256 for o in outcomes if o.status == "skipped" and o.sha256]
        ids = ctx.store.library_photo_ids(conn, lib["id"], skipped) if skipped else {}
    for o in outcomes:
        if o.status == "skipped" and o.sha256 in ids:
            o.photo_id = ids[o.sha256]
    if counts["faces"]:  # the next process finds the library's vectors on disk (large libraries)
        save_snapshot(ctx, lib)
    if progress:
        progress(counts)
    return {"library": lib["name"], **counts, "audit_seq": seq}, outcomes


def _record(done: dict[str, FileOutcome], first: dict[str, int], outcomes: list[FileOutcome]) -> None:
    for sha, outcome in done.items():
        outcomes[first[sha]] = outcome


@dataclass
class _Writer:
    """The single writer of one ingest run: commits chunks of analysed photos."""

    ctx: ServiceContext
    lib: dict[str, Any]
    key: Any
    guard: Any
    counts: dict[str, int]
    states: dict[str, str]
    uploads: dict[str, bytes]  # sha256 -> bytes of the uploaded photos
    keep_copies: bool

    def _decoded(self, res: PhotoResult) -> imaging.DecodedImage:
        data = self.uploads.get(res.sha256)
        if data is None:
            return imaging.load_image(res.path)
        return imaging.decode_image(
            data, max_bytes=len(data) + 1, max_pixels=self.ctx.settings.max_image_pixels
        )

    def _blocked(self, res: PhotoResult) -> tuple[set[int], imaging.DecodedImage | None]:
        """The indexes of the photo's faces that an opt-out blocks, and the photo's decoded pixels when
        they had to be read (the guard's foreign models need them)."""
        loaded: list[imaging.DecodedImage] = []

        def pixels() -> np.ndarray:
            if not loaded:
                loaded.append(self._decoded(res))
            return loaded[0].pixels

        blocked = {
            i
            for i, face in enumerate(res.faces)
            if self.guard.blocks(self.key.protect(face.embedding), face.box, pixels, self.ctx.pipeline)
        }
        return blocked, loaded[0] if loaded else None

    def _copy(self, res: PhotoResult, data: bytes, blocked: set[int], decoded: Any) -> bytes:
        """The bytes kept for an uploaded photo: as uploaded, or with the faces an opt-out blocks blurred
        (module docstring)."""
        if not blocked:
            return data
        decoded = decoded or self._decoded(res)
        return blurred_bytes(decoded, [res.faces[i].box for i in sorted(blocked)])

    def commit(self, chunk: list[PhotoResult]) -> dict[str, FileOutcome]:
        """One chunk, with the copies of its photos (staged first, placed after the commit: service/
        photos.py); returns the outcome of each photo by hash. The opt-out check comes first, so that a
        copy is staged with the blocked faces blurred already."""
        checked = {res.sha256: self._blocked(res) for res in chunk if res.error is None}
        staged: dict[str, Staged] = {}  # by the uploaded file's hash
        try:
            if self.keep_copies:
                for res in chunk:
                    data = self.uploads.get(res.sha256)
                    if res.error is None and data is not None:
                        data = self._copy(res, data, *checked[res.sha256])
                        staged[res.sha256] = stage_library_copy(self.ctx.settings, self.lib["id"], data)
                faults.point("library:copies_staged")
            done = self._commit(chunk, staged, {sha: b for sha, (b, _) in checked.items()})
            faults.point("library:photos_committed")
            for sha, st in staged.items():
                if done[sha].status == "added":
                    place_library_copy(self.ctx, st)
        finally:
            for st in staged.values():  # the copies of photos not added (or all, on an error)
                st.path.unlink(missing_ok=True)
        return done

    def _commit(
        self, chunk: list[PhotoResult], staged: dict[str, Staged], blocked: dict[str, set[int]]
    ) -> dict[str, FileOutcome]:
        """One transaction: the chunk's photos, their faces (minus those an opt-out blocks), crops, and
        the new faces placed among the library's people. ``staged``: the copies staged, by the uploaded
        file's hash; ``blocked``: the indexes of the faces an opt-out blocks, by the same hash."""
        ctx, lib, key, counts = self.ctx, self.lib, self.key, self.counts
        ad = face_context(lib)
        out: dict[str, FileOutcome] = {}
        with ctx.write() as conn:
            for res in chunk:
                copy = staged.get(res.sha256)
                sha = copy.sha256 if copy is not None else res.sha256  # the kept file's hash
                if ctx.store.library_photo_by_sha(conn, lib["id"], res.sha256) is not None or (
                    sha != res.sha256 and ctx.store.library_photo_by_sha(conn, lib["id"], sha) is not None
                ):
                    counts["skipped"] += 1  # committed meanwhile by another run
                    out[res.sha256] = FileOutcome("skipped", res.sha256)
                    continue
                status = "error" if res.error else "done"
                photo_id = ctx.store.add_library_photo(
                    conn,
                    library_id=lib["id"],
                    sha256=sha,
                    source=res.path,
                    stored=res.error is None and copy is not None,
                    size_bytes=res.size if copy is None or sha == res.sha256 else copy.path.stat().st_size,
                    width=res.width,
                    height=res.height,
                    taken_at=res.taken_at,
                    orientation=res.orientation if sha == res.sha256 else None,  # the copy is upright
                    status=status,
                    error=res.error,
                )
                self.states[res.sha256] = status
                if sha != res.sha256:  # blurred: the uploaded file's hash stays, as an erased row
                    ctx.store.add_library_photo(
                        conn,
                        library_id=lib["id"],
                        sha256=res.sha256,
                        source="erased",
                        stored=False,
                        size_bytes=0,
                        status=ERASED,
                    )
                    self.states[res.sha256] = ERASED
                if res.error:
                    counts["failed"] += 1
                    out[res.sha256] = FileOutcome("failed", res.sha256, error=res.error, photo_id=photo_id)
                    continue
                stored = 0
                for i, face in enumerate(res.faces):
                    if i in blocked[res.sha256]:
                        counts["blocked"] += 1
                        continue
                    protected = key.protect(face.embedding)
                    face_id = ctx.store.add_library_face(
                        conn,
                        library_id=lib["id"],
                        photo_id=photo_id,
                        person_id=None,
                        box=face.box,
                        landmarks=face.landmarks,
                        quality=face.quality,
                        det_score=face.score,
                        blob=key.seal(protected, ad),
                        key_version=key.version,
                    )
                    if face.crop is not None:
                        data, media_type, w, h = face.crop
                        ctx.store.add_library_crop(
                            conn,
                            face_id=face_id,
                            library_id=lib["id"],
                            media_type=media_type,
                            width=w,
                            height=h,
                            image=key.encrypt(data, crop_context(lib["id"], face_id)),
                            key_version=key.version,
                        )
                    stored += 1
                ctx.store.update_library_photo(conn, photo_id, faces=stored)
                counts["added"] += 1
                counts["faces"] += stored
                blurred = len(blocked[res.sha256]) if sha != res.sha256 else 0
                out[res.sha256] = FileOutcome(
                    "added", res.sha256, faces=stored, photo_id=photo_id, blurred=blurred
                )
            placed = assign_new_faces(ctx, lib, conn)
            counts["people_created"] += placed["people_created"]
        return out
