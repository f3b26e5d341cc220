"""The enrollment rules, written once: decode -> analyze -> gate -> opt-out -> conflict -> commit -> index.

``Vault.enroll``, ``enroll-batch`` (local workers and Ray) and the API all go through ``Enrollment``:
``judge`` decides one analysed image (every rejection has a named reason), ``store`` writes the accepted
ones inside the caller's transaction, and the caller applies the index change after its commit, under
the index manager's ``committing`` block so that other processes see both as one step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy import exc as sa_exc

from .. import crops, faults
from ..audit_events import Enrolled, Searched
from ..clock import as_utc, utcnow
from ..crops import FaceCrop
from ..errors import ConsentError, FaceVaultError, ModelMismatchError
from ..index.manager import IndexChange
from ..pipeline import ProcessedFace
from ..quality import QualityGate
from ..results import DUPLICATE_IMAGE_MESSAGE, EnrollOutcome
from ..store import schema as t
from .context import Collection, ImageInput, ServiceContext, source_name
from .optout import optout_guard
from .search import default_search_fmr, may_identify

MULTIPLE_FACES = "multiple_faces"
CONFLICT_SHORTLIST = 10
# The warning tier: a face that a search of this collection would name as another subject (the 1:N
# default threshold for the gallery's size), though below the strict conflict threshold.
RESEMBLES = "resembles_another_subject"
RESEMBLANCE_MODES = ("off", "refuse", "allow")


def require_valid_consent(consent: dict[str, Any]) -> None:
    """Nothing is enrolled for a subject whose consent was withdrawn or has expired."""
    if consent["withdrawn_at"] is not None:
        raise ConsentError(
            "consent for this subject was withdrawn; nothing can be enrolled", code="consent_withdrawn"
        )
    exp = as_utc(consent["expires_at"])
    if exp is not None and exp <= utcnow():
        raise ConsentError(f"consent for this subject expired on {exp.date()}", code="consent_expired")


def quality_gate(ctx: ServiceContext) -> QualityGate:
    s = ctx.settings
    return QualityGate(s.enroll_min_eye_distance, s.enroll_min_sharpness, s.enroll_max_yaw, s.enroll_max_roll)


def quality_message(reason: str, face: ProcessedFace, gate: QualityGate) -> str:
    q = face.quality
    if reason == "face_too_small":
        return (
            f"eyes are {q.eye_distance:.0f} px apart; enrollment needs at least {gate.min_eye_distance:.0f}"
        )
    if reason == "extreme_pose":
        return (
            f"head pose yaw {q.yaw:.0f}°, roll {q.roll:.0f}° is beyond {gate.max_yaw:.0f}°/"
            f"{gate.max_roll:.0f}°; use a frontal photo"
        )
    return f"sharpness {q.sharpness:.1f} is below {gate.min_sharpness:.1f}; use a sharper photo"


def multiple_faces_message(count: int) -> str:
    """Names no parameter: each edge says how its own callers pick the largest face."""
    return f"{count} faces found; enroll a photo of one person, or ask for the largest face to be used"


@dataclass
class Accepted:
    """An image that passed every check, waiting for its commit."""

    outcome: EnrollOutcome | Any  # EnrollOutcome, or a batch row outcome (same fields used)
    collection: Collection
    subject_id: int
    subject_name: str
    sha256: str
    width: int
    height: int
    face: ProcessedFace
    protected: np.ndarray
    key: Any  # the TemplateKey ``protected`` was made with: the template is sealed under it
    crop: FaceCrop | None


class Enrollment:
    """The checks of one collection, prepared once: template key, quality gate, the strict
    identity-conflict threshold and the opt-outs that apply."""

    def __init__(
        self,
        ctx: ServiceContext,
        collection: Collection,
        *,
        optout_rows: list[dict[str, Any]] | None = None,
        key: Any = None,
        samples_now: int | None = None,
        resemblance: str = "off",
    ) -> None:
        """``resemblance``: the warning tier (``RESEMBLES``): ``refuse`` rejects such a face until the
        caller says to enroll it anyway, ``allow`` enrolls it with a note in the outcome's message."""
        self.ctx = ctx
        self.collection = collection
        self.key = key or ctx.current_key()
        self.gate = quality_gate(ctx)
        self.conflict_threshold = ctx.strict_threshold(collection["model_id"])
        self.resemblance = resemblance
        self.warn_threshold, self.warn_fmr = self.conflict_threshold, ctx.settings.conflict_fmr
        if resemblance != "off":
            fmr = self.warn_fmr = default_search_fmr(ctx, collection, max(1, samples_now or 0))
            self.warn_threshold = min(
                self.conflict_threshold, ctx.threshold(collection["model_id"], fmr, None, fmr)[0]
            )
        # May load older packs (opt-outs recorded with them): never inside a transaction.
        self.guard = optout_guard(ctx, collection, self.key, optout_rows)
        self.pipeline = ctx.collection_pipeline(collection)
        if self.pipeline.model_id != collection["model_id"]:
            raise ModelMismatchError("pipeline and collection models differ")
        self.samples_now = samples_now

    # ---- one image -----------------------------------------------------------------------------------
    def judge(
        self,
        out: Any,
        *,
        subject_id: int,
        subject_name: str,
        sha256: str,
        width: int,
        height: int,
        faces: Sequence[ProcessedFace],
        largest: bool,
        pixels: Callable[[], np.ndarray],
        pending: Sequence[Accepted] = (),
        crop: FaceCrop | Callable[[ProcessedFace], FaceCrop | None] | None = None,
        duplicate_checked: bool = False,
    ) -> Accepted | None:
        """Accept or reject one analysed image of ``subject_id``: the reason and message of a rejection
        go on ``out``. ``pending``: images accepted but not committed yet (their duplicates and
        conflicts count too). ``pixels``: the decoded image, needed only when an opt-out made by another
        model pack must be checked. ``duplicate_checked``: the caller asked ``is_duplicate`` already
        (before analysing the image); the commit re-checks in any case."""
        coll = self.collection
        if not duplicate_checked and self.is_duplicate(sha256, pending):
            return _reject(out, "duplicate_image", DUPLICATE_IMAGE_MESSAGE)
        if not faces:
            return _reject(out, "no_face", "no face was found in the image")
        if len(faces) > 1 and not largest:
            return _reject(out, MULTIPLE_FACES, multiple_faces_message(len(faces)))
        face = faces[0]
        if isinstance(out, EnrollOutcome):
            out.box, out.quality = face.face.box_list(), face.quality.to_dict()
        reason = self.gate.rejection(face.quality)
        if reason is not None:
            return _reject(out, reason, quality_message(reason, face, self.gate))
        protected = self.key.protect(face.embedding)
        try:
            blocked = self.guard.blocks(protected, face.face.box, pixels, self.ctx.pipeline)
        except FaceVaultError as exc:
            return _reject(out, exc.code, exc.message)
        if blocked:
            return _reject(
                out,
                "blocked_by_optout",
                "this person has opted out of face search; the photo cannot be enrolled",
            )
        closest = self.closest(subject_id, protected, pending)
        if closest is not None and closest[2] >= self.conflict_threshold:
            return _reject(out, "identity_conflict", self.conflict_message(subject_id, sha256, closest))
        if closest is not None and self.resemblance == "refuse":
            return _reject(out, RESEMBLES, self.resemblance_message(subject_id, sha256, closest))
        if closest is not None and self.resemblance == "allow":
            out.message = "enrolled anyway: " + self.resemblance_message(subject_id, sha256, closest)
        chip = crop(face) if callable(crop) else crop
        return Accepted(
            out, coll, subject_id, subject_name, sha256, width, height, face, protected, self.key, chip
        )

    def is_duplicate(self, sha256: str, pending: Sequence[Accepted] = ()) -> bool:
        """Whether this exact image is stored in the collection, or accepted and waiting for its commit."""
        coll = self.collection
        if any(p.sha256 == sha256 and p.collection["id"] == coll["id"] for p in pending):
            return True
        with self.ctx.read() as conn:
            return self.ctx.store.image_by_sha(conn, coll["id"], sha256) is not None

    def resemblance_message(self, subject_id: int, sha256: str, near: tuple[int, str, float]) -> str:
        """What the caller is told about a resemblance (the warning tier): named like a conflict."""
        if not may_identify(self.ctx):
            return (
                "the face resembles another subject in this collection (a search would name them); "
                "enroll it anyway only if the photo is of this person (who it resembles is shown only "
                "to a role that may search)"
            )
        seq = self._audit_identification(subject_id, sha256, near, self.warn_threshold, self.warn_fmr)
        return (
            f"the face resembles subject #{near[0]} ({near[1]}) at similarity {near[2]:.3f}: a search "
            f"would name them (threshold {self.warn_threshold:.3f}); enroll it anyway only if the photo "
            f"is of this person (audit entry #{seq})"
        )

    def conflict_message(self, subject_id: int, sha256: str, conflict: tuple[int, str, float]) -> str:
        """What the caller is told about an identity conflict. Naming the other subject identifies the
        person in the photo, so only a caller who may search is told who it is, and that answer is
        audited as a search under the enrollment's purpose; anyone else (an enroller key) learns only
        that the face belongs to someone else in the collection."""
        other, name, similarity = conflict
        if not may_identify(self.ctx):
            return (
                "the face already matches another subject in this collection; the photo cannot be "
                "enrolled for this one (who it matches is shown only to a role that may search)"
            )
        seq = self._audit_identification(
            subject_id, sha256, conflict, self.conflict_threshold, self.ctx.settings.conflict_fmr
        )
        return (
            f"the face already matches subject #{other} ({name}) at similarity {similarity:.3f} "
            f"(audit entry #{seq})"
        )

    def _audit_identification(
        self, subject_id: int, sha256: str, hit: tuple[int, str, float], threshold: float, fmr: float
    ) -> int:
        """Naming who an enrolled face belongs to is a search: audited under the enrollment's purpose."""
        other, _, similarity = hit
        coll = self.collection
        with self.ctx.write() as conn:
            return self.ctx.log(
                conn,
                Searched(
                    purpose=enrollment_purpose(conn, subject_id),
                    collection=coll["name"],
                    probe_sha256=sha256,
                    outcome="ok",
                    input="enrollment",
                    threshold=round(threshold, 5),
                    threshold_fmr=fmr,
                    top_k=1,
                    faces=1,
                    candidates=[[[other, round(similarity, 4)]]],
                ),
            )

    def conflict(
        self, subject_id: int, vector: np.ndarray, pending: Sequence[Accepted] = ()
    ) -> tuple[int, str, float] | None:
        """Another subject whose face this is (at the strict threshold), among the enrolled samples and
        the images accepted but not committed yet: (subject id, name, similarity)."""
        hit = self.closest(subject_id, vector, pending)
        return hit if hit is not None and hit[2] >= self.conflict_threshold else None

    def closest(
        self, subject_id: int, vector: np.ndarray, pending: Sequence[Accepted] = ()
    ) -> tuple[int, str, float] | None:
        """The most similar other subject at or above the warning threshold (the strict one when the
        warning tier is off): (subject id, name, similarity)."""
        coll, thr = self.collection, self.warn_threshold
        scores, ids = self.ctx.indexes.search(coll, vector[None, :], CONFLICT_SHORTLIST, self.samples_now)
        cand = [int(i) for i, sc in zip(ids[0], scores[0], strict=True) if i >= 0 and sc >= thr - 1e-4]
        best: tuple[int, str, float] | None = None
        if cand:
            with self.ctx.read() as conn:
                self.ctx.still_pinned(conn, coll)  # templates of another model cannot be opened as this one's
                hits = self.ctx.open_hits(coll, self.ctx.store.sample_hits(conn, cand))
            for hit in hits.values():
                score = float(hit.vector @ vector)
                if hit.subject_id != subject_id and score >= thr and (best is None or score > best[2]):
                    best = (hit.subject_id, hit.subject_name, score)
        for acc in pending:
            if acc.collection["id"] != coll["id"] or acc.subject_id == subject_id:
                continue
            score = float(acc.protected @ vector)
            if score >= thr and (best is None or score > best[2]):
                best = (acc.subject_id, acc.subject_name, score)
        return best


def enrollment_purpose(conn: Connection, subject_id: int) -> str:
    """The purpose an enrollment's identity-conflict check is audited under: the enrollment of this
    subject, for the purpose of their consent."""
    consent = conn.execute(
        select(t.consents.c.purpose)
        .join(t.subjects, t.subjects.c.consent_id == t.consents.c.id)
        .where(t.subjects.c.id == subject_id)
    ).scalar()
    return f"enrollment of subject #{subject_id}" + (f": {consent}" if consent else "")


def _reject(out: Any, reason: str, message: str) -> None:
    out.reason, out.message = reason, message
    return None


# ---- committing ------------------------------------------------------------------------------------------
def store_accepted(
    ctx: ServiceContext, conn: Connection, accepted: Sequence[Accepted], changes: dict[int, IndexChange]
) -> list[Accepted]:
    """Write the accepted images inside the caller's transaction: image row, sample with the protected
    template, its encrypted crop where the collection keeps crops. Refused (``collection_changed``) when a
    collection moved to another model meanwhile. Returns the ones stored (an image committed meanwhile by
    another enrollment becomes ``duplicate_image``); records each vector on ``changes[collection id]``."""
    keeps: dict[int, bool] = {}
    for acc in accepted:
        cid = acc.collection["id"]
        if cid not in keeps:
            keeps[cid] = bool(ctx.still_pinned(conn, acc.collection)["keep_crops"])
    stored: list[Accepted] = []
    for acc in accepted:
        coll, out, key = acc.collection, acc.outcome, acc.key
        image_id = _add_image_once(conn, ctx, coll["id"], acc.sha256, out.image or "", acc.width, acc.height)
        if image_id is None:
            out.reason, out.message = "duplicate_image", DUPLICATE_IMAGE_MESSAGE
            continue
        sample_id = ctx.store.add_sample(
            conn,
            collection_id=coll["id"],
            subject_id=acc.subject_id,
            image_id=image_id,
            model_id=coll["model_id"],
            box=acc.face.face.box,
            quality=acc.face.quality.to_dict(),
            blob=key.seal(acc.protected, ctx.template_context(coll)),
            key_version=key.version,
        )
        if keeps[coll["id"]] and acc.crop is not None:
            ctx.store.add_crop(
                conn,
                sample_id=sample_id,
                collection_id=coll["id"],
                media_type=acc.crop.media_type,
                size=acc.crop.size,
                box=acc.crop.box,
                blob=crops.seal(key, acc.crop.data, coll["id"], sample_id),
                key_version=key.version,
            )
        out.sample_id = sample_id
        changes.setdefault(coll["id"], IndexChange()).add(sample_id, acc.protected)
        stored.append(acc)
    for sid in sorted({acc.subject_id for acc in stored}):
        ctx.store.touch_subject(conn, sid)
    return stored


def _add_image_once(
    conn: Connection,
    ctx: ServiceContext,
    collection_id: int,
    sha256: str,
    source: str,
    width: int,
    height: int,
) -> int | None:
    """The new image's row id, or None (a duplicate) when another enrollment, in this or another process,
    committed the same image after this one first checked. Write transactions are serialised per vault
    database (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so this re-check cannot race;
    the savepoint is a second guard that turns the (collection, sha256) unique key's error into the same
    answer."""
    if ctx.store.image_by_sha(conn, collection_id, sha256) is not None:
        return None
    try:
        with conn.begin_nested():
            return ctx.store.add_image(conn, collection_id, sha256, source, width, height)
    except sa_exc.IntegrityError:
        return None


# ---- Vault.enroll ------------------------------------------------------------------------------------------
def enroll(
    ctx: ServiceContext,
    collection: str,
    subject: str,
    images: Sequence[ImageInput],
    *,
    largest: bool = False,
    anyway: bool = False,
) -> list[EnrollOutcome]:
    """Enroll each image as one sample of ``subject``. Every image gets an outcome; a bad image never stops
    the others, and a rejected image leaves nothing behind. A face that resembles another subject (a
    search would name them) is rejected as ``resembles_another_subject`` unless ``anyway``."""
    with ctx.read() as conn:  # one read for everything enrollment checks against
        coll = ctx.store.get_collection(conn, collection)
        subj = ctx.store.find_subject(conn, coll["id"], subject)
        require_valid_consent(ctx.store.get_consent(conn, subj["consent_id"]))
        key = ctx.current_key(conn)
        optout_rows = ctx.store.optouts_for(conn, None, coll["name"])
        samples_now = ctx.store.count_samples(conn, coll["id"])
    rules = Enrollment(
        ctx,
        coll,
        optout_rows=optout_rows,
        key=key,
        samples_now=samples_now,
        resemblance="allow" if anyway else "refuse",
    )

    outcomes: list[EnrollOutcome] = []
    accepted: list[Accepted] = []
    for item in images:
        out = EnrollOutcome(image=source_name(item), status="rejected")
        outcomes.append(out)
        try:
            decoded = ctx.decode(item)
        except FaceVaultError as exc:
            out.reason, out.message = exc.code, exc.message
            continue
        out.image_sha256 = decoded.sha256
        if rules.is_duplicate(decoded.sha256, accepted):  # before the costly analysis
            out.reason, out.message = "duplicate_image", DUPLICATE_IMAGE_MESSAGE
            continue
        faces = rules.pipeline.analyze(decoded.pixels, portrait=True, upright=True)
        acc = rules.judge(
            out,
            subject_id=subj["id"],
            subject_name=subj["name"],
            sha256=decoded.sha256,
            width=decoded.width,
            height=decoded.height,
            faces=faces,
            largest=largest,
            pixels=lambda d=decoded: d.pixels,  # type: ignore[misc]
            pending=accepted,
            crop=(lambda f, d=decoded: crops.make_crop(d.pixels, f.face.box)) if coll["keep_crops"] else None,  # type: ignore[misc]
            duplicate_checked=True,
        )
        if acc is not None:
            accepted.append(acc)
    faults.point("enroll:checked")

    def audit_entry(conn: Connection, stored: list[Accepted]) -> None:
        if stored:
            samples = [a.outcome.sample_id for a in stored]
            rejected = len(outcomes) - len(stored)
            ctx.log(
                conn,
                Enrolled(
                    collection=collection, subject_id=subj["id"], samples_added=samples, rejected=rejected
                ),
            )

    if accepted:
        for acc in commit(ctx, accepted, audit_entry):
            acc.outcome.status = "enrolled"
    return outcomes


def commit(
    ctx: ServiceContext,
    accepted: Sequence[Accepted],
    also: Callable[[Connection, list[Accepted]], Any] | None = None,
) -> list[Accepted]:
    """Store ``accepted`` in one transaction (``also`` adds the audit entry and anything else to it), then
    apply the index changes, as one step for other processes."""
    with ctx.indexes.exclusive():
        changes: dict[int, IndexChange] = {}
        with ctx.write() as conn:
            stored = store_accepted(ctx, conn, accepted, changes)
            if also is not None:
                also(conn, stored)
            for cid, change in changes.items():
                change.store_count = ctx.store.count_samples(conn, cid)
        faults.point("enroll:db_committed")
        colls = {a.collection["id"]: a.collection for a in accepted}
        for cid, change in changes.items():
            ctx.indexes.apply(colls[cid], change)
    return stored
