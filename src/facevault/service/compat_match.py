"""Recognition, detection and verification in the shape CompreFace's clients expect (api/compreface/):
every face of a photo with its detector score, landmarks and (when asked) its embedding, next to what
facevault's own use cases give. The rules are search.py's and verify.py's: a purpose on every search
and comparison, an audit entry for every one (the refused ones too), the gallery-size threshold for
1:N, the 1:1 default false-match rate for comparisons, vectors of one model only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import calibration
from ..audit_events import Detected, Embedded, FacesVerified, Searched
from ..errors import FaceVaultError, InputError, ModelMismatchError, NoFaceError, NotFoundError
from ..pipeline import ProcessedFace
from ..results import Candidate
from .context import ImageInput, ServiceContext
from .search import audit_failure, checked_request, require_purpose, search_embedding, search_faces

MAX_EMBEDDINGS = 100  # vectors per request


@dataclass
class CompatFace:
    """One face as CompreFace reports it (coordinates in the upright photo's pixels)."""

    box: list[float]
    score: float  # the detector's own score
    landmarks: list[list[float]]
    embedding: list[float] | None = None  # the model's vector, when asked for
    searched: bool = True
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class Comparison:
    """One face (or given vector) compared with another: raw similarity and its false-match rate."""

    similarity: float
    estimated_fmr: float
    face: CompatFace | None = None  # the compared face, for photos
    embedding: list[float] | None = None  # the compared vector, for embeddings


@dataclass
class CompatResult:
    model_id: str
    audit_seq: int
    faces: list[CompatFace] = field(default_factory=list)
    source: CompatFace | None = None  # verification: the source photo's face
    comparisons: list[Comparison] = field(default_factory=list)
    matches: list[list[Candidate]] = field(default_factory=list)  # embedding recognition, per vector


def _face(f: ProcessedFace, embed: bool) -> CompatFace:
    return CompatFace(
        box=f.face.box_list(),
        score=float(f.face.score),
        landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in f.face.landmarks],
        embedding=[round(float(v), 6) for v in f.embedding] if embed else None,
    )


def _fmr(model_id: str, sim: float) -> float:
    return float(f"{calibration.for_model(model_id).fmr_at(sim):.3g}")


def _limited(faces: list[ProcessedFace], limit: int) -> list[ProcessedFace]:
    """The ``limit`` largest faces (0: all); the pipeline returns them largest first."""
    if limit < 0:
        raise InputError("limit must be 0 (no limit) or more", code="invalid_input")
    return faces[:limit] if limit else faces


def model_of(ctx: ServiceContext, collection: str | None) -> str:
    """The model a detection or verification key works with: its collection's, or the default."""
    if collection is None:
        return ctx.settings.default_model
    with ctx.read() as conn:
        return str(ctx.store.get_collection(conn, collection)["model_id"])


def recognize(
    ctx: ServiceContext,
    collection: str,
    probe: ImageInput,
    *,
    purpose: str,
    case_id: str | None,
    top_k: int = 1,
    limit: int = 0,
    embed: bool = False,
) -> CompatResult:
    """search.search, keeping each face's detector score and landmarks (and embedding when asked):
    the same threshold, candidates and ``search`` audit entry."""
    purpose = require_purpose(purpose)
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        samples = ctx.store.count_samples(conn, coll["id"])
    asked = {"purpose": purpose, "case_id": case_id, "collection": collection}
    thr, thr_fmr = checked_request(ctx, coll, samples, top_k, None, None, asked)
    try:
        decoded = ctx.decode(probe)
        faces = _limited(ctx.collection_pipeline(coll).analyze(decoded.pixels), limit)
    except FaceVaultError as exc:
        audit_failure(ctx, exc, **asked)
        raise
    entry: dict[str, Any] = {**asked, "probe_sha256": decoded.sha256, "threshold": round(thr, 5)}
    if not faces:
        with ctx.write() as conn:
            ctx.log(conn, Searched(outcome="no_face", **entry))
        raise NoFaceError("no face was found in the probe image")
    found = search_faces(ctx, coll, faces, top_k, thr)
    with ctx.write() as conn:
        seq = ctx.log(
            conn,
            Searched(
                **entry,
                outcome="ok",
                threshold_fmr=thr_fmr,
                top_k=top_k,
                faces=len(found),
                candidates=[[[c.subject_id, round(c.similarity, 4)] for c in f.candidates] for f in found],
            ),
        )
    out = []
    for f, res in zip(faces, found, strict=True):
        face = _face(f, embed)
        face.searched, face.candidates = res.searched, res.candidates
        out.append(face)
    return CompatResult(model_id=coll["model_id"], audit_seq=seq, faces=out)


def detect_faces(
    ctx: ServiceContext,
    image: ImageInput,
    *,
    model: str,
    purpose: str,
    limit: int = 0,
    embed: bool = False,
) -> CompatResult:
    """Every face of a photo (no identity, nothing stored); audited as ``detect``, or as ``embed`` when
    the embeddings are handed out."""
    try:
        decoded = ctx.decode(image)
        faces = _limited(ctx.pipeline(model).analyze(decoded.pixels), limit)
    except FaceVaultError as exc:
        event = Embedded if embed else Detected
        with ctx.write() as conn:
            ctx.log(conn, event(purpose=purpose, outcome="error", model_id=model, error=exc.code))
        raise
    event = Embedded if embed else Detected
    with ctx.write() as conn:
        seq = ctx.log(
            conn,
            event(
                purpose=purpose, probe_sha256=decoded.sha256, outcome="ok", model_id=model, faces=len(faces)
            ),
        )
    return CompatResult(model_id=model, audit_seq=seq, faces=[_face(f, embed) for f in faces])


def _analyzed(
    ctx: ServiceContext, model: str, item: ImageInput, fail: dict[str, Any], label: str
) -> tuple[str, list[ProcessedFace]]:
    try:
        decoded = ctx.decode(item)
        faces = ctx.pipeline(model).analyze(decoded.pixels)
    except FaceVaultError as exc:
        _refused(ctx, fail, "error", exc.code)
        raise
    if not faces:
        _refused(ctx, fail, "no_face", NoFaceError.code)
        raise NoFaceError(f"no face was found in the {label}")
    return decoded.sha256, faces


def _refused(ctx: ServiceContext, fields: dict[str, Any], outcome: str, code: str) -> None:
    with ctx.write() as conn:
        ctx.log(conn, FacesVerified(**fields, outcome=outcome, error=code))


def _verified(ctx: ServiceContext, model: str, fields: dict[str, Any], sims: list[float]) -> int:
    thr = ctx.threshold(model, None, None, ctx.settings.verify_fmr)[0]
    with ctx.write() as conn:
        return ctx.log(
            conn,
            FacesVerified(
                **fields, outcome="ok", similarities=[round(s, 5) for s in sims], threshold=round(thr, 5)
            ),
        )


def verify_images(
    ctx: ServiceContext,
    source: ImageInput,
    target: ImageInput,
    *,
    model: str,
    purpose: str,
    case_id: str | None,
    limit: int = 0,
    embed: bool = False,
) -> CompatResult:
    """The largest face of ``source`` against every face of ``target`` (the ``limit`` largest)."""
    purpose = require_purpose(purpose)
    fields: dict[str, Any] = {"purpose": purpose, "case_id": case_id, "input": "image"}
    src_sha, src_faces = _analyzed(ctx, model, source, fields, "source image")
    fields["probe_sha256"] = src_sha
    tgt_sha, tgt_faces = _analyzed(ctx, model, target, fields, "target image")
    tgt_faces = _limited(tgt_faces, limit)
    sims = [float(src_faces[0].embedding @ f.embedding) for f in tgt_faces]
    seq = _verified(ctx, model, {**fields, "other_sha256": tgt_sha}, sims)
    return CompatResult(
        model_id=model,
        audit_seq=seq,
        source=_face(src_faces[0], embed),
        comparisons=[
            Comparison(similarity=round(s, 5), estimated_fmr=_fmr(model, s), face=_face(f, embed))
            for s, f in zip(sims, tgt_faces, strict=True)
        ],
    )


def as_vectors(values: Any, dim: int, what: str = "embeddings") -> np.ndarray:
    """Client-given vectors (a list of lists of numbers) as unit float32 rows of ``dim`` values."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be lists of numbers", code="invalid_embedding") from exc
    if arr.ndim != 2 or not 1 <= arr.shape[0] <= MAX_EMBEDDINGS or not np.isfinite(arr).all():
        raise InputError(f"{what}: 1 to {MAX_EMBEDDINGS} lists of finite numbers", code="invalid_embedding")
    if arr.shape[1] != dim:
        raise ModelMismatchError(f"{what} have {arr.shape[1]} values; this model's vectors have {dim}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        raise InputError(f"{what}: a zero vector cannot be compared", code="invalid_embedding")
    return (arr / norms).astype(np.float32)


def _vector_sha(vec: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(vec, dtype="<f4").tobytes()).hexdigest()


def verify_sample(
    ctx: ServiceContext,
    collection: str,
    sample_id: int,
    *,
    image: ImageInput | None = None,
    embeddings: Any = None,
    purpose: str,
    case_id: str | None,
    limit: int = 0,
    embed: bool = False,
) -> CompatResult:
    """Faces of a photo (or given vectors) against one enrolled sample of the collection; both sides
    compared in protected form under the sample's template key (similarity is preserved)."""
    purpose = require_purpose(purpose)
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
        hit = ctx.store.sample_hits(conn, [int(sample_id)]).get(int(sample_id))
        if hit is None or ctx.store.sample_collection(conn, int(sample_id)) != coll["id"]:
            raise NotFoundError(f"no sample #{sample_id} in {collection!r}", code="sample_not_found")
    stored = ctx.open_template(coll, hit.blob, hit.key_version)
    key = ctx.keys.key(hit.key_version)
    model = str(coll["model_id"])
    fields: dict[str, Any] = {
        "purpose": purpose,
        "case_id": case_id,
        "collection": collection,
        "sample_id": int(sample_id),
        "input": "image" if image is not None else "embedding",
    }
    if image is not None:
        sha, faces = _analyzed(ctx, model, image, fields, "image")
        faces = _limited(faces, limit)
        sims = [float(key.protect(f.embedding) @ stored) for f in faces]
        seq = _verified(ctx, model, {**fields, "probe_sha256": sha}, sims)
        comps = [
            Comparison(similarity=round(s, 5), estimated_fmr=_fmr(model, s), face=_face(f, embed))
            for s, f in zip(sims, faces, strict=True)
        ]
        return CompatResult(model_id=model, audit_seq=seq, comparisons=comps)
    try:
        vecs = as_vectors(embeddings, int(coll["dim"]))
    except FaceVaultError as exc:
        _refused(ctx, fields, "error", exc.code)
        raise
    sims = [float(key.protect(v) @ stored) for v in vecs]
    seq = _verified(ctx, model, {**fields, "probe_sha256": _vector_sha(vecs)}, sims)
    comps = [
        Comparison(similarity=round(s, 5), estimated_fmr=_fmr(model, s), embedding=list(map(float, raw)))
        for s, raw in zip(sims, np.asarray(embeddings, dtype=np.float64), strict=True)
    ]
    return CompatResult(model_id=model, audit_seq=seq, comparisons=comps)


def verify_embeddings(
    ctx: ServiceContext, source: Any, targets: Any, *, model: str, purpose: str, case_id: str | None
) -> CompatResult:
    """One given vector against each of several (all of ``model``): similarities and false-match rates."""
    purpose = require_purpose(purpose)
    fields: dict[str, Any] = {"purpose": purpose, "case_id": case_id, "input": "embedding"}
    dim = int(ctx.pipeline(model).pack.dim)
    try:
        src = as_vectors([source], dim, "source")[0]
        tgts = as_vectors(targets, dim, "targets")
    except FaceVaultError as exc:
        _refused(ctx, fields, "error", exc.code)
        raise
    sims = [float(src @ t) for t in tgts]
    seq = _verified(ctx, model, {**fields, "probe_sha256": _vector_sha(src)}, sims)
    comps = [
        Comparison(similarity=round(s, 5), estimated_fmr=_fmr(model, s), embedding=list(map(float, raw)))
        for s, raw in zip(sims, np.asarray(targets, dtype=np.float64), strict=True)
    ]
    return CompatResult(model_id=model, audit_seq=seq, comparisons=comps)


def recognize_embeddings(
    ctx: ServiceContext, collection: str, embeddings: Any, *, purpose: str, case_id: str | None, top_k: int
) -> CompatResult:
    """search.search_embedding for each given vector (one ``search`` audit entry each)."""
    purpose = require_purpose(purpose)
    with ctx.read() as conn:
        coll = ctx.store.get_collection(conn, collection)
    try:
        vecs = as_vectors(embeddings, int(coll["dim"]))
    except FaceVaultError as exc:
        audit_failure(ctx, exc, purpose=purpose, case_id=case_id, collection=collection, input="embedding")
        raise
    matches = [
        search_embedding(
            ctx, collection, v, model_id=coll["model_id"], purpose=purpose, case_id=case_id, top_k=top_k
        )
        for v in vecs
    ]
    return CompatResult(model_id=coll["model_id"], audit_seq=0, matches=matches)
