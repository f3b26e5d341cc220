"""Batch enrollment from a manifest (``facevault enroll-batch``): resumable, de-duplicating, one bad row
never stops the batch. This module holds the single writer (``BatchEnroller``, its ``RowOutcome`` and
``BatchSummary``), ``report_rows`` and the entry point ``enroll_batch``; the manifest and report formats
are service/batch_manifest.py, the workers service/batch_workers.py (both re-exported here).

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
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select

from ..audit_events import BatchEnrolled
from ..clock import utcnow
from ..errors import ConsentError, FaceVaultError, InputError
from ..pipeline import worker_count
from ..store import schema as t
from .batch_manifest import COLUMNS, REPORT_FIELDS, ManifestRow, read_manifest, write_report
from .batch_workers import Analysis, Job, LocalRunner, RayRunner, analyze_job
from .collections import get_collection
from .context import ServiceContext
from .enroll import Accepted, Enrollment, commit, require_valid_consent
from .subjects import add_subject

__all__ = [
    "COLUMNS",
    "REPORT_FIELDS",
    "Analysis",
    "BatchEnroller",
    "BatchSummary",
    "Job",
    "LocalRunner",
    "ManifestRow",
    "RayRunner",
    "RowOutcome",
    "analyze_job",
    "enroll_batch",
    "read_manifest",
    "report_rows",
    "write_report",
]


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
    """One writer in this process: it applies the enrollment rules of ``service.enroll`` to each analysed
    row and commits chunks of rows, each chunk in one transaction with its ``batch_rows`` records."""

    def __init__(
        self,
        ctx: ServiceContext,
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
        self.ctx = ctx
        self.manifest = Path(manifest)
        self.workers = workers
        self.ray_address = ray_address
        self.largest = largest
        self.retry_failed = retry_failed
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self.on_progress = on_progress or (lambda done, total: None)
        self._colls: dict[str, dict[str, Any] | FaceVaultError] = {}
        self._subjects: dict[tuple[int, str, str], dict[str, Any]] = {}
        self._rules: dict[int, Enrollment] = {}
        self._chunk: list[RowOutcome] = []
        self._accepted: list[Accepted] = []
        self._last_commit = time.monotonic()
        self._counts: dict[str, int] = defaultdict(int)
        self._rows: dict[int, ManifestRow] = {}

    # -- entry point ---------------------------------------------------------------------------------------
    def run(self) -> BatchSummary:
        start = time.monotonic()
        store = self.ctx.store
        store.create_schema()  # a vault from before enroll-batch existed gets the batch_rows table
        self.sha, rows = read_manifest(self.manifest)
        self._rows = {r.number: r for r in rows}
        with self.ctx.write() as conn:
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

        by_model: dict[tuple[str, str], list[ManifestRow]] = defaultdict(list)  # (model, detector)
        for row in todo:
            if row.problem:
                self._record(RowOutcome(row.number, "error", "bad_row", row.problem))
                continue
            coll = self._collection(row.get("collection"))
            if isinstance(coll, FaceVaultError):
                self._record(self._error(row, coll))
                continue
            by_model[(coll["model_id"], coll.get("detector") or "")].append(row)
        keeps = {name for name, c in self._colls.items() if isinstance(c, dict) and c["keep_crops"]}
        self._maybe_commit(force=True)
        self.on_progress(finished + sum(self._counts.values()), total)

        s = self.ctx.settings
        runner: LocalRunner | RayRunner
        if self.ray_address:
            runner = RayRunner(self.ray_address, s)
        else:
            runner = LocalRunner(self.workers if self.workers > 0 else worker_count(s), s)
        try:
            for (model_id, detector), model_rows in by_model.items():
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
                run_settings = replace(s, detector=detector) if detector else s
                for analysis in runner.run(model_id, jobs, run_settings):
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
                self._colls[name] = get_collection(self.ctx, name)
            except FaceVaultError as exc:
                self._colls[name] = exc
        return self._colls[name]

    def _enrollment(self, coll: dict[str, Any]) -> Enrollment:
        """The collection's enrollment rules (key, thresholds, opt-outs), prepared once per run."""
        rules = self._rules.get(coll["id"])
        if rules is None:
            rules = self._rules[coll["id"]] = Enrollment(self.ctx, coll)
        return rules

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
        with self.ctx.read() as conn:
            found = conn.execute(q.order_by(c.id)).mappings().all()
        if len(found) > 1:
            raise InputError(
                f"{len(found)} subjects are named {name!r}; give an external_id", code="ambiguous"
            )
        if not found:
            consent_file = row.get("consent_file")
            if consent_file:
                consent_file = str(self.manifest.resolve().parent / Path(consent_file).expanduser())
            created = add_subject(
                self.ctx,
                coll["name"],
                name or ext,
                purpose=row.get("purpose"),
                consent_text=row.get("consent_text") or None,
                consent_file=consent_file or None,
                consent_by=row.get("consent_by") or None,
                expires=row.get("consent_expires") or None,
                external_id=ext or None,
            )
            with self.ctx.read() as conn:
                found = [conn.execute(select(t.subjects).where(c.id == created["id"])).mappings().one()]
        subj = dict(found[0])
        with self.ctx.read() as conn:
            subj["consent"] = self.ctx.store.get_consent(conn, subj["consent_id"])
        self._subjects[cache_key] = subj
        return subj

    # -- deciding one row ----------------------------------------------------------------------------------
    def _error(self, row: ManifestRow, exc: FaceVaultError, status: str = "error") -> RowOutcome:
        return RowOutcome(row.number, status, exc.code, exc.message, row.get("collection"), image=row.image)

    def _handle(self, row: ManifestRow, a: Analysis) -> None:
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
            require_valid_consent(subj["consent"])
        except ConsentError as exc:
            out.reason, out.message = exc.code, exc.message
            return self._record(out)
        try:
            rules = self._enrollment(coll)
        except FaceVaultError as exc:
            out.reason, out.message = exc.code, exc.message
            return self._record(out)
        acc = rules.judge(
            out,
            subject_id=subj["id"],
            subject_name=subj["name"],
            sha256=a.sha256 or "",
            width=a.width,
            height=a.height,
            faces=a.faces,
            largest=self.largest,
            # Opt-outs made by another pack need the photo again (rare: see optout_guard.py).
            pixels=partial(self._pixels, row.image),
            pending=self._accepted,
            crop=a.crop,
        )
        if acc is not None:
            self._accepted.append(acc)
        self._record(out)

    def _pixels(self, image: str) -> np.ndarray:
        return self.ctx.decode(image).pixels

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
        """One transaction: the accepted rows' samples (``service.enroll.commit``), one audit entry per
        collection, and the ``batch_rows`` record of every row of the chunk; then the index."""
        chunk = self._chunk

        def rows_and_audit(conn: Any, stored: list[Accepted]) -> None:
            for acc in stored:
                acc.outcome.status = "enrolled"
            by_coll: dict[str, list[RowOutcome]] = defaultdict(list)
            for out in chunk:
                by_coll[out.collection or ""].append(out)
            for name, outs in by_coll.items():
                self.ctx.log(
                    conn,
                    BatchEnrolled(
                        collection=name or None,
                        batch_manifest_sha256=self.sha,
                        rows=[outs[0].row, outs[-1].row],
                        subject_ids=sorted({o.subject_id for o in outs if o.sample_id}),  # type: ignore[type-var]
                        samples_added=[o.sample_id for o in outs if o.sample_id],  # type: ignore[misc]
                        rejected=sum(1 for o in outs if o.status != "enrolled"),
                    ),
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
                        "message": stored_message(o),
                        "collection": o.collection,
                        "subject_id": o.subject_id,
                        "image": o.image,
                        "image_sha256": o.image_sha256,
                        "sample_id": o.sample_id,
                        "at": now,
                    }
                    for o in chunk
                ],
            )

        try:
            commit(self.ctx, self._accepted, rows_and_audit)
        except BaseException:
            for acc in self._accepted:  # nothing of this chunk was stored
                acc.outcome.status, acc.outcome.sample_id = "rejected", None
            raise
        for out in chunk:
            self._counts[out.status] += 1
        self._chunk, self._accepted = [], []
        self._last_commit = time.monotonic()


# ---- the report ----------------------------------------------------------------------------------------
def report_rows(vault: Any, manifest: str | Path) -> list[dict[str, Any]]:
    """Every row of the manifest with its committed outcome (rows not done yet have status ``pending``).
    ``vault``: a Vault (or its context)."""
    ctx = _context(vault)
    sha, rows = read_manifest(manifest)
    with ctx.read() as conn:
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


def enroll_batch(
    vault: Any,
    manifest: str | Path,
    *,
    report: str | Path | None = None,
    **options: Any,
) -> BatchSummary:
    """Run (or resume) a batch enrollment; write the per-row report if asked. ``vault``: a Vault (or its
    context)."""
    summary = BatchEnroller(_context(vault), manifest, **options).run()
    if report is not None:
        write_report(report_rows(vault, manifest), report)
        summary.report = str(report)
    return summary


def stored_message(out: RowOutcome) -> str | None:
    """The message kept in ``batch_rows``: an identity conflict names another person, whose name must not
    outlive their erasure in this table, so only the reason is kept there (the run's own output and the
    audit entry of the conflict carry the rest)."""
    if out.reason == "identity_conflict":
        return "the face already matches another enrolled subject"
    return out.message


def _context(vault: Any) -> ServiceContext:
    return vault if isinstance(vault, ServiceContext) else vault.context
