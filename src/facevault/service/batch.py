"""Batch enrollment from a manifest (``facevault enroll-batch``): resumable, de-duplicating, one bad row
never stops the batch.

Work is split in two. Decoding, detection and embedding (the expensive, stateless part) run in local
processes (``--workers``) or as Ray tasks (``--ray``). Everything that touches the vault runs in ONE
writer in this process: subject and consent records, the enrollment checks of ``Vault.enroll``
(duplicate image, quality gate, opt-outs, identity conflicts), and the commit.

Each commit holds a chunk of rows in one transaction: the new images and samples, one audit entry per
collection, and a ``batch_rows`` record (manifest SHA-256 + row number + outcome) for every row of the
chunk. A row is therefore done exactly when its outcome is committed: a run killed at any instant loses
at most the uncommitted chunk, which the next run of the same manifest redoes, and never repeats a row.
The vector index is updated after each commit; if the process dies in between, the index is behind the
store and the next use rebuilds it (see service.py's consistency rule).

Manifest: CSV with a header, or JSON Lines (``.jsonl``/``.ndjson``), one image per row. Columns:

- ``collection`` (required; the collection must exist)
- ``subject`` (a name) and/or ``external_id``: the subject is found by external id if given, else by
  exact name; if missing it is created, which needs consent: ``purpose`` and exactly one of
  ``consent_text`` or ``consent_file`` (optional ``consent_by``, ``consent_expires``)
- ``image``: a path; relative paths (and relative consent files) are relative to the manifest's folder
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, insert, select

from .. import crops, imaging
from ..crops import FaceCrop
from ..errors import ConsentError, FaceVaultError, InputError
from ..pipeline import Pipeline, ProcessedFace, run_in_worker, worker_pool
from ..quality import QualityGate
from ..results import DUPLICATE_IMAGE_MESSAGE
from ..store import schema as t
from ..store.database import utcnow

if TYPE_CHECKING:
    from .vault import Vault

COLUMNS = (
    "collection",
    "subject",
    "external_id",
    "purpose",
    "consent_text",
    "consent_file",
    "consent_by",
    "consent_expires",
    "image",
)
REPORT_FIELDS = (
    "row",
    "status",
    "reason",
    "message",
    "collection",
    "subject",
    "external_id",
    "subject_id",
    "image",
    "image_sha256",
    "sample_id",
)


# ---- the manifest ------------------------------------------------------------------------------------
@dataclass
class ManifestRow:
    number: int  # 1-based data row (CSV header not counted; JSONL: line number)
    values: dict[str, str]
    image: str = ""  # resolved path
    problem: str | None = None  # why the row cannot be used at all

    def get(self, key: str) -> str:
        return (self.values.get(key) or "").strip()


def read_manifest(path: str | Path) -> tuple[str, list[ManifestRow]]:
    """(SHA-256 of the manifest file, its rows). Unusable rows carry a ``problem`` instead of raising."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    sha = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"manifest {path} is not UTF-8 text") from exc
    rows: list[ManifestRow] = []
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                rows.append(ManifestRow(i, {str(k): "" if v is None else str(v) for k, v in obj.items()}))
            except ValueError as exc:
                rows.append(ManifestRow(i, {}, problem=f"line {i} is not a JSON object ({exc})"))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "image" not in reader.fieldnames:
            raise InputError(f"manifest {path}: the CSV header must name at least collection and image")
        for i, rec in enumerate(reader, 1):
            rows.append(ManifestRow(i, {k: v or "" for k, v in rec.items() if k is not None}))
    base = path.resolve().parent
    for row in rows:
        if row.problem:
            continue
        missing = [k for k in ("collection", "image") if not row.get(k)]
        if not row.get("subject") and not row.get("external_id"):
            missing.append("subject or external_id")
        if missing:
            row.problem = f"missing {', '.join(missing)}"
            continue
        row.image = str(base / Path(row.get("image")).expanduser())
    return sha, rows


# ---- the expensive part (worker processes or Ray tasks) ------------------------------------------------
@dataclass
class Analysis:
    row: int
    sha256: str | None = None
    width: int = 0
    height: int = 0
    faces: list[ProcessedFace] = field(default_factory=list)
    error: tuple[str, str] | None = None  # (code, message)
    crop: FaceCrop | None = None  # of faces[0], when the job asked for one (collections with keep_crops)


@dataclass(frozen=True)
class Job:
    row: int
    image: str
    max_bytes: int
    max_pixels: int
    data: bytes | None = None  # shipped with the job when workers may not see the file (Ray)
    crop: bool = False  # also cut the face crop the collection keeps (crops.py)


def analyze_job(pipe: Pipeline, job: Job) -> Analysis:
    """Decode, detect and embed one image. Never raises: failures become the row's error."""
    try:
        if job.data is not None:
            decoded = imaging.decode_image(
                job.data, max_bytes=job.max_bytes, max_pixels=job.max_pixels, name=job.image
            )
        else:
            decoded = imaging.load_image(job.image, max_bytes=job.max_bytes, max_pixels=job.max_pixels)
        faces = pipe.analyze(decoded.pixels)
        crop = crops.make_crop(decoded.pixels, faces[0].face.box) if job.crop and faces else None
        return Analysis(job.row, decoded.sha256, decoded.width, decoded.height, faces, crop=crop)
    except FaceVaultError as exc:
        return Analysis(job.row, error=(exc.code, exc.message))
    except Exception as exc:  # one broken file must not stop the batch
        return Analysis(job.row, error=("internal_error", f"{type(exc).__name__}: {exc}"))


_ray_pipelines: dict[str, Pipeline] = {}


def _ray_analyze(model_id: str, settings: Any, jobs: list[Job]) -> list[Analysis]:
    """Body of the Ray task: a pipeline per model, cached in the (long-lived) Ray worker process."""
    pipe = _ray_pipelines.get(model_id)
    if pipe is None:
        pipe = _ray_pipelines[model_id] = Pipeline.for_model(model_id, settings)
    return [analyze_job(pipe, job) for job in jobs]


class LocalRunner:
    """Jobs over ``workers`` local processes (each with its own models, as ``pipeline.map_with_pipeline``),
    with a bounded number in flight so a manifest of millions of rows is never queued at once. Results come
    back in completion order."""

    def __init__(self, workers: int, settings: Any) -> None:
        self.workers = max(1, workers)
        self.settings = settings

    def run(self, model_id: str, jobs: Iterable[Job]) -> Iterator[Analysis]:
        if self.workers == 1:
            pipe = Pipeline.for_model(model_id, self.settings)
            for job in jobs:
                yield analyze_job(pipe, job)
            return
        todo = iter(jobs)
        window = self.workers * 4
        pool = self._pool(model_id)
        inflight: dict[Future[Analysis], tuple[Job, ProcessPoolExecutor]] = {}
        try:
            while True:
                for job in todo:
                    inflight[pool.submit(run_in_worker, (analyze_job, job))] = (job, pool)
                    if len(inflight) >= window:
                        break
                if not inflight:
                    return
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job, owner = inflight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        # A worker died (a decoder crash, out of memory): the rows its pool held fail,
                        # the batch goes on with a new pool, and `--retry-failed` redoes them later.
                        result = Analysis(job.row, error=("worker_failed", "the worker process died"))
                        if owner is pool:
                            pool.shutdown(wait=False, cancel_futures=True)
                            pool = self._pool(model_id)
                    yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pool(self, model_id: str) -> ProcessPoolExecutor:
        return worker_pool(model_id, self.settings, self.workers)


class RayRunner:
    """The same jobs as Ray tasks on a Ray cluster (``address``: ``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``). Image bytes travel with the task, so workers need no shared filesystem."""

    def __init__(self, address: str, settings: Any, *, rows_per_task: int = 4) -> None:
        try:
            import ray
        except ImportError as exc:
            raise InputError("--ray needs Ray: pip install 'facevault[ray]'") from exc
        self.ray = ray
        self.settings = settings
        self.rows_per_task = rows_per_task
        kwargs: dict[str, Any] = {"address": address, "log_to_driver": False}
        host = address.removeprefix("ray://").rsplit(":", 1)[0]
        if host in {"127.0.0.1", "localhost"}:
            kwargs["_node_ip_address"] = "127.0.0.1"  # a loopback cluster: keep the driver on loopback too
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(**kwargs)
        self._task = ray.remote(num_cpus=1, max_retries=2)(_ray_analyze)

    def run(self, model_id: str, jobs: Iterable[Job]) -> Iterator[Analysis]:
        ray = self.ray
        window = max(2, int(ray.cluster_resources().get("CPU", 1)) * 2)
        todo = iter(jobs)
        inflight: dict[Any, list[Job]] = {}
        while True:
            while len(inflight) < window:
                chunk = [self._with_bytes(j) for _, j in zip(range(self.rows_per_task), todo, strict=False)]
                if not chunk:
                    break
                inflight[self._task.remote(model_id, self.settings, chunk)] = chunk
            if not inflight:
                return
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                chunk = inflight.pop(ref)
                try:
                    yield from ray.get(ref)
                except Exception as exc:  # the task failed after its retries
                    for job in chunk:
                        yield Analysis(job.row, error=("worker_failed", f"Ray task failed: {exc}"))

    def _with_bytes(self, job: Job) -> Job:
        try:
            data = imaging.read_file_bytes(job.image, max_bytes=job.max_bytes)
        except FaceVaultError:
            return job  # the worker reports the same error for the row
        return Job(job.row, job.image, job.max_bytes, job.max_pixels, data, job.crop)

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()


# ---- the single writer -------------------------------------------------------------------------------------
@dataclass
class RowOutcome:
    row: int
    status: str  # enrolled | rejected | error
    reason: str | None = None
    message: str | None = None
    collection: str | None = None
    subject_id: int | None = None
    image: str | None = None
    image_sha256: str | None = None
    sample_id: int | None = None


@dataclass
class _Accepted:
    outcome: RowOutcome
    coll: dict[str, Any]
    analysis: Analysis
    face: ProcessedFace
    protected: np.ndarray


@dataclass
class BatchSummary:
    manifest: str
    manifest_sha256: str
    rows: int
    already_done: int
    processed: int
    enrolled: int
    rejected: int
    errors: int
    seconds: float
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchEnroller:
    def __init__(
        self,
        vault: Vault,
        manifest: str | Path,
        *,
        workers: int = 1,
        ray_address: str | None = None,
        largest: bool = False,
        retry_failed: bool = False,
        commit_every: int = 32,
        commit_seconds: float = 2.0,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.vault = vault
        self.manifest = Path(manifest)
        self.workers = workers
        self.ray_address = ray_address
        self.largest = largest
        self.retry_failed = retry_failed
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self.on_progress = on_progress or (lambda done, total: None)
        s = vault.settings
        self.gate = QualityGate(
            s.enroll_min_eye_distance, s.enroll_min_sharpness, s.enroll_max_yaw, s.enroll_max_roll
        )
        self._colls: dict[str, dict[str, Any] | FaceVaultError] = {}
        self._subjects: dict[tuple[int, str, str], dict[str, Any]] = {}
        self._coll_state: dict[int, dict[str, Any]] = {}
        self._chunk: list[RowOutcome] = []
        self._accepted: list[_Accepted] = []
        self._pending_sha: set[tuple[int, str]] = set()
        self._last_commit = time.monotonic()
        self._counts: dict[str, int] = defaultdict(int)
        self._rows: dict[int, ManifestRow] = {}

    # -- entry point ---------------------------------------------------------------------------------------
    def run(self) -> BatchSummary:
        from ..pipeline import worker_count

        start = time.monotonic()
        store = self.vault.store
        store.create_schema()  # a vault from before enroll-batch existed gets the batch_rows table
        self.sha, rows = read_manifest(self.manifest)
        self._rows = {r.number: r for r in rows}
        with store.begin() as conn:
            if self.retry_failed:
                conn.execute(
                    delete(t.batch_rows).where(
                        t.batch_rows.c.manifest_sha256 == self.sha, t.batch_rows.c.status != "enrolled"
                    )
                )
            done = {
                r[0]
                for r in conn.execute(
                    select(t.batch_rows.c.row_number).where(t.batch_rows.c.manifest_sha256 == self.sha)
                )
            }
        todo = [r for r in rows if r.number not in done]
        total, finished = len(rows), len(done)
        self.on_progress(finished, total)

        by_model: dict[str, list[ManifestRow]] = defaultdict(list)
        for row in todo:
            if row.problem:
                self._record(RowOutcome(row.number, "error", "bad_row", row.problem))
                continue
            coll = self._collection(row.get("collection"))
            if isinstance(coll, FaceVaultError):
                self._record(self._error(row, coll))
                continue
            by_model[coll["model_id"]].append(row)
        keeps = {name for name, c in self._colls.items() if isinstance(c, dict) and c["keep_crops"]}
        self._maybe_commit(force=True)
        self.on_progress(finished + sum(self._counts.values()), total)

        s = self.vault.settings
        runner: LocalRunner | RayRunner
        if self.ray_address:
            runner = RayRunner(self.ray_address, s)
        else:
            runner = LocalRunner(self.workers if self.workers > 0 else worker_count(s), s)
        try:
            for model_id, model_rows in by_model.items():
                jobs = (
                    Job(
                        r.number,
                        r.image,
                        s.max_image_bytes,
                        s.max_image_pixels,
                        crop=r.get("collection") in keeps,
                    )
                    for r in model_rows
                )
                for analysis in runner.run(model_id, jobs):
                    self._handle(self._rows[analysis.row], analysis)
                    self._maybe_commit()
                    self.on_progress(finished + sum(self._counts.values()), total)
            self._maybe_commit(force=True)
        finally:
            if isinstance(runner, RayRunner):
                runner.close()
        self.on_progress(finished + sum(self._counts.values()), total)
        return BatchSummary(
            manifest=str(self.manifest),
            manifest_sha256=self.sha,
            rows=total,
            already_done=len(done),
            processed=sum(self._counts.values()),
            enrolled=self._counts["enrolled"],
            rejected=self._counts["rejected"],
            errors=self._counts["error"],
            seconds=round(time.monotonic() - start, 2),
        )

    # -- lookups -------------------------------------------------------------------------------------------
    def _collection(self, name: str) -> dict[str, Any] | FaceVaultError:
        if name not in self._colls:
            try:
                self._colls[name] = self.vault.get_collection(name)
            except FaceVaultError as exc:
                self._colls[name] = exc
        return self._colls[name]

    def _state(self, coll: dict[str, Any]) -> dict[str, Any]:
        """Per-collection enrollment context: key, thresholds, opt-outs, index (as ``Vault.enroll``)."""
        st = self._coll_state.get(coll["id"])
        if st is None:
            v, s = self.vault, self.vault.settings
            key = v._current_key()
            thr, _ = v._threshold(coll["model_id"], s.conflict_fmr, None, s.conflict_fmr)
            st = {"key": key, "conflict": thr, "optouts": v._optout_guard(coll, key)}
            self._coll_state[coll["id"]] = st
        return st

    def _subject(self, coll: dict[str, Any], row: ManifestRow) -> dict[str, Any]:
        """The row's subject, created with its consent record if it does not exist yet."""
        ext, name = row.get("external_id"), row.get("subject")
        cache_key = (coll["id"], ext, "" if ext else name)
        subj = self._subjects.get(cache_key)
        if subj is not None:
            return subj
        c = t.subjects.c
        q = select(t.subjects).where(c.collection_id == coll["id"])
        q = q.where(c.external_id == ext) if ext else q.where(c.name == name)
        with self.vault.store.begin() as conn:
            found = conn.execute(q.order_by(c.id)).mappings().all()
        if len(found) > 1:
            raise InputError(
                f"{len(found)} subjects are named {name!r}; give an external_id", code="ambiguous"
            )
        if not found:
            consent_file = row.get("consent_file")
            if consent_file:
                consent_file = str(self.manifest.resolve().parent / Path(consent_file).expanduser())
            created = self.vault.add_subject(
                coll["name"],
                name or ext,
                purpose=row.get("purpose"),
                consent_text=row.get("consent_text") or None,
                consent_file=consent_file or None,
                consent_by=row.get("consent_by") or None,
                expires=row.get("consent_expires") or None,
                external_id=ext or None,
            )
            with self.vault.store.begin() as conn:
                found = [conn.execute(select(t.subjects).where(c.id == created["id"])).mappings().one()]
        subj = dict(found[0])
        with self.vault.store.begin() as conn:
            subj["consent"] = self.vault.store.get_consent(conn, subj["consent_id"])
        self._subjects[cache_key] = subj
        return subj

    # -- deciding one row ----------------------------------------------------------------------------------
    def _error(self, row: ManifestRow, exc: FaceVaultError, status: str = "error") -> RowOutcome:
        return RowOutcome(row.number, status, exc.code, exc.message, row.get("collection"), image=row.image)

    def _handle(self, row: ManifestRow, a: Analysis) -> None:
        from .vault import _require_valid_consent

        coll = self._colls[row.get("collection")]
        assert isinstance(coll, dict)
        out = RowOutcome(
            row.number, "rejected", collection=coll["name"], image=row.image, image_sha256=a.sha256
        )
        if a.error is not None:
            out.status, (out.reason, out.message) = "error", a.error
            return self._record(out)
        try:
            subj = self._subject(coll, row)
        except FaceVaultError as exc:
            return self._record(self._error(row, exc))
        out.subject_id = subj["id"]
        try:
            _require_valid_consent(subj["consent"])
        except ConsentError as exc:
            out.reason, out.message = exc.code, exc.message
            return self._record(out)
        with self.vault.store.begin() as conn:
            dup = self.vault.store.image_by_sha(conn, coll["id"], a.sha256 or "")
        if dup is not None or (coll["id"], a.sha256) in self._pending_sha:
            out.reason, out.message = "duplicate_image", DUPLICATE_IMAGE_MESSAGE
            return self._record(out)
        if not a.faces:
            out.reason, out.message = "no_face", "no face was found in the image"
            return self._record(out)
        if len(a.faces) > 1 and not self.largest:
            out.reason = "multiple_faces"
            out.message = f"{len(a.faces)} faces found; enroll a photo of one person or pass --largest"
            return self._record(out)
        face = a.faces[0]
        reason = self.gate.rejection(face.quality)
        if reason is not None:
            from .vault import _quality_message

            out.reason, out.message = reason, _quality_message(reason, face, self.gate)
            return self._record(out)
        st = self._state(coll)
        protected = st["key"].protect(face.embedding)
        try:
            # Opt-outs made by another pack need the photo again (rare: see privacy/optout_guard.py).
            blocked = st["optouts"].blocks(
                protected, face.face.box, partial(self._pixels, row.image), self.vault.pipeline
            )
        except FaceVaultError as exc:
            out.reason, out.message = exc.code, exc.message
            return self._record(out)
        if blocked:
            out.reason = "blocked_by_optout"
            out.message = "this person has opted out of face search; the photo cannot be enrolled"
            return self._record(out)
        conflict = self._conflict(coll, subj["id"], protected, st["conflict"])
        if conflict is not None:
            out.reason = "identity_conflict"
            out.message = (
                f"the face already matches subject #{conflict[0]} ({conflict[1]}) "
                f"at similarity {conflict[2]:.3f}"
            )
            return self._record(out)
        self._pending_sha.add((coll["id"], a.sha256))
        self._accepted.append(_Accepted(out, coll, a, face, protected))
        self._chunk.append(out)

    def _pixels(self, image: str) -> np.ndarray:
        s = self.vault.settings
        return imaging.load_image(image, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels).pixels

    def _conflict(
        self, coll: dict[str, Any], subject_id: int, vec: np.ndarray, thr: float
    ) -> tuple[int, str, float] | None:
        """Another subject whose face this is, among enrolled samples and this chunk's accepted rows."""
        v = self.vault
        index = v._index(coll)
        with v._shared.lock:
            scores, ids = index.search(vec[None, :], 10)
        found = v._conflicting_subject(coll, subject_id, scores[0], ids[0], vec, thr)
        for acc in self._accepted:
            if acc.coll["id"] != coll["id"] or acc.outcome.subject_id == subject_id:
                continue
            score = float(acc.protected @ vec)
            if score >= thr and (found is None or score > found[2]):
                found = (acc.outcome.subject_id or 0, self._rows[acc.outcome.row].get("subject"), score)
        return found

    def _record(self, out: RowOutcome) -> None:
        self._chunk.append(out)

    # -- committing ------------------------------------------------------------------------------------------
    def _maybe_commit(self, force: bool = False) -> None:
        due = (
            len(self._chunk) >= self.commit_every
            or time.monotonic() - self._last_commit >= self.commit_seconds
        )
        if self._chunk and (force or due):
            self._commit()

    def _commit(self) -> None:
        if not self._chunk:
            return
        # Store commit and index update as one step for other processes (see Vault.enroll).
        with self.vault._index_lock():
            self._commit_locked()

    def _commit_locked(self) -> None:
        v, store = self.vault, self.vault.store
        added: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
        with store.begin() as conn:
            # A collection migrated or deleted since the batch began: nothing of this chunk is stored, and
            # a new run of the same manifest resumes with the collection as it is now.
            keeps = {
                cid: v._still_pinned(conn, coll)["keep_crops"]
                for cid, coll in {acc.coll["id"]: acc.coll for acc in self._accepted}.items()
            }
            for acc in self._accepted:
                out, coll, a, key = acc.outcome, acc.coll, acc.analysis, self._state(acc.coll)["key"]
                image_id = v._add_image_once(
                    conn, coll["id"], a.sha256 or "", out.image or "", a.width, a.height
                )
                if image_id is None:  # committed meanwhile by another enrollment
                    out.reason, out.message = "duplicate_image", DUPLICATE_IMAGE_MESSAGE
                    continue
                out.sample_id = store.add_sample(
                    conn,
                    collection_id=coll["id"],
                    subject_id=out.subject_id or 0,
                    image_id=image_id,
                    model_id=coll["model_id"],
                    box=acc.face.face.box,
                    quality=acc.face.quality.to_dict(),
                    blob=key.seal(acc.protected, v._context(coll)),
                    key_version=key.version,
                )
                if keeps[coll["id"]] and a.crop is not None:
                    v._add_crop(conn, coll, out.sample_id, a.crop, key)
                out.status = "enrolled"
                added[coll["id"]].append((out.sample_id, acc.protected))
            for sid in {acc.outcome.subject_id for acc in self._accepted}:
                store.touch_subject(conn, sid or 0)
            by_coll: dict[str, list[RowOutcome]] = defaultdict(list)
            for out in self._chunk:
                by_coll[out.collection or ""].append(out)
            for name, outs in by_coll.items():
                v._log(
                    conn,
                    "enroll",
                    collection=name or None,
                    details={
                        "batch_manifest_sha256": self.sha,
                        "rows": [outs[0].row, outs[-1].row],
                        "subject_ids": sorted({o.subject_id for o in outs if o.sample_id}),  # type: ignore[type-var]
                        "samples_added": [o.sample_id for o in outs if o.sample_id],
                        "rejected": sum(1 for o in outs if o.status != "enrolled"),
                    },
                )
            now = utcnow()
            conn.execute(
                insert(t.batch_rows),
                [
                    {
                        "manifest_sha256": self.sha,
                        "row_number": o.row,
                        "status": o.status,
                        "reason": o.reason,
                        "message": o.message,
                        "collection": o.collection,
                        "subject_id": o.subject_id,
                        "image": o.image,
                        "image_sha256": o.image_sha256,
                        "sample_id": o.sample_id,
                        "at": now,
                    }
                    for o in self._chunk
                ],
            )
        for out in self._chunk:
            self._counts[out.status] += 1
        colls = {acc.coll["id"]: acc.coll for acc in self._accepted}
        self._chunk, self._accepted, self._pending_sha = [], [], set()
        self._last_commit = time.monotonic()
        for cid, items in added.items():
            ids = np.asarray([i for i, _ in items], dtype=np.int64)
            v._apply_to_index(colls[cid], add=(ids, np.stack([p for _, p in items])))


# ---- the report ----------------------------------------------------------------------------------------
def report_rows(vault: Vault, manifest: str | Path) -> list[dict[str, Any]]:
    """Every row of the manifest with its committed outcome (rows not done yet have status ``pending``)."""
    sha, rows = read_manifest(manifest)
    with vault.store.begin() as conn:
        done = {
            r["row_number"]: dict(r)
            for r in conn.execute(
                select(t.batch_rows).where(t.batch_rows.c.manifest_sha256 == sha)
            ).mappings()
        }
    out = []
    for row in rows:
        rec = done.get(row.number, {})
        out.append(
            {
                "row": row.number,
                "status": rec.get("status", "pending"),
                "reason": rec.get("reason"),
                "message": rec.get("message"),
                "collection": row.get("collection") or None,
                "subject": row.get("subject") or None,
                "external_id": row.get("external_id") or None,
                "subject_id": rec.get("subject_id"),
                "image": rec.get("image") or row.image or row.get("image") or None,
                "image_sha256": rec.get("image_sha256"),
                "sample_id": rec.get("sample_id"),
            }
        )
    return out


def write_report(rows: list[dict[str, Any]], path: str | Path) -> None:
    """CSV, or JSON Lines when the name ends in .jsonl/.ndjson/.json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        if path.suffix.lower() in {".jsonl", ".ndjson", ".json"}:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(fh, fieldnames=REPORT_FIELDS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: "" if r.get(k) is None else r[k] for k in REPORT_FIELDS})


def enroll_batch(
    vault: Vault,
    manifest: str | Path,
    *,
    report: str | Path | None = None,
    **options: Any,
) -> BatchSummary:
    """Run (or resume) a batch enrollment; write the per-row report if asked."""
    summary = BatchEnroller(vault, manifest, **options).run()
    if report is not None:
        write_report(report_rows(vault, manifest), report)
        summary.report = str(report)
    return summary
