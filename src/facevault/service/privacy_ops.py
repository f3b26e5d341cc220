"""Privacy use cases of the vault: erasure with receipts, consent withdrawal, retention, opt-out by
selfie, human review, key rotation, and the records of processing.

A mixin of ``facevault.service.Vault`` (kept apart so each module has one job); like the rest of the
service it is the only code that touches store, index and audit log together.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import audit, crops
from ..errors import FaceVaultError, InputError, ModelError, NoFaceError, NotFoundError, PurposeRequiredError
from ..index import discard_index
from ..models import get_pack
from ..store.database import as_utc, utcnow
from ..protection import TemplateKey
from .optout_guard import OptoutGuard, OptoutSet

if TYPE_CHECKING:
    from .vault import ImageInput, Vault

ROLES = ("admin", "enroller", "searcher", "reviewer", "auditor")
CONFIRMATIONS_NEEDED = 2


def crash_point(name: str) -> None:
    """Fault injection for the crash-consistency tests: ``FACEVAULT_CRASH_AT=name`` kills this process
    with SIGKILL here, exactly as ``kill -9`` would. Does nothing otherwise."""
    if os.environ.get("FACEVAULT_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class PrivacyOperations:
    # ---- erasure -----------------------------------------------------------------------------------
    def erase_subject(
        self: Vault, collection: str, subject: str, *, reason: str = "erasure_request"
    ) -> dict[str, Any]:
        """Remove every template, sample, image record, review record, index entry and the consent record
        of a subject; write an erasure receipt (counts and hashes, no biometric data) to the audit log."""
        with self._index_lock():  # store commit and index update as one step (see Vault.enroll)
            with self.store.begin() as conn:
                coll = self.store.get_collection(conn, collection)
                subj = self.store.find_subject(conn, coll["id"], subject)
                gone = self.store.delete_subject(conn, subj)
                receipt = {
                    "subject_id": subj["id"],
                    "reason": reason,
                    "samples_erased": len(gone["sample_ids"]),
                    "crops_erased": gone["crops"],
                    "images_erased": len(gone["image_sha256"]),
                    "image_sha256": gone["image_sha256"],
                    "consent_id": gone["consent_id"],
                    "consent_evidence_sha256": gone["consent_evidence_sha256"],
                }
                seq = self._log(conn, "subject.erase", collection=collection, details=receipt)
                crash_point("erase:before_commit")
            crash_point("erase:db_committed")
            self._apply_to_index(coll, remove=gone["sample_ids"])
        self.store.checkpoint()
        photos = self.photos_dir / f"c{coll['id']}"  # copies the server kept of enrolled photos
        removed = 0
        for sha in gone["image_sha256"]:
            if (photos / sha).is_file():
                (photos / sha).unlink()
                removed += 1
        return {
            "collection": collection,
            "name": subj["name"],
            "audit_seq": seq,
            "photos_removed": removed,
            **receipt,
        }

    # ---- consent -----------------------------------------------------------------------------------
    def consent_show(self: Vault, collection: str, subject: str) -> dict[str, Any]:
        view = self.get_subject(collection, subject)
        return {"subject_id": view["id"], "name": view["name"], "collection": collection, **view["consent"]}

    def withdraw_consent(self: Vault, collection: str, subject: str) -> dict[str, Any]:
        """Withdrawal erases the subject's biometric data at once; the receipt records the withdrawal."""
        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, collection)
            subj = self.store.find_subject(conn, coll["id"], subject)
            self.store.withdraw_consent(conn, subj["consent_id"])
            self._log(
                conn,
                "consent.withdraw",
                collection=collection,
                details={"subject_id": subj["id"], "consent_id": subj["consent_id"]},
            )
        return self.erase_subject(collection, f"#{subj['id']}", reason="consent_withdrawn")

    # ---- retention ---------------------------------------------------------------------------------
    def set_retention(self: Vault, collection: str, days: int) -> dict[str, Any]:
        if not 1 <= days <= 1095:
            raise InputError("retention must be between 1 day and 3 years (1095 days)")
        from sqlalchemy import update

        from ..store.schema import collections

        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, collection)
            conn.execute(
                update(collections).where(collections.c.id == coll["id"]).values(retention_days=days)
            )
            self._log(conn, "retention.set", collection=collection, details={"retention_days": days})
        return {"collection": collection, "retention_days": days}

    # ---- face crops ----------------------------------------------------------------------------------
    def set_keep_crops(self: Vault, collection: str, keep: bool) -> dict[str, Any]:
        """Turn keeping encrypted face crops (the source for ``migrate_collection``) on or off for a
        collection. Turning it off deletes every crop the collection holds, at once and audited; turning
        it on applies to samples enrolled from then on."""
        keep = bool(keep)
        with self.store.begin() as conn:
            coll = self.store.get_collection(conn, collection)
            self.store.update_collection(conn, coll["id"], keep_crops=keep)
            deleted = 0 if keep else self.store.delete_collection_crops(conn, coll["id"])
            self._log(
                conn,
                "collection.keep_crops",
                collection=collection,
                details={"keep_crops": keep, "crops_deleted": deleted},
            )
        if deleted:
            self.store.checkpoint()  # the deleted crops' pages leave the WAL too (see erase_subject)
        return {"collection": collection, "keep_crops": keep, "crops_deleted": deleted}

    def retention_due(self: Vault, now: datetime | None = None) -> list[dict[str, Any]]:
        """Subjects whose data must be destroyed now, with the reason."""
        now = now or utcnow()
        due = []
        with self.store.begin() as conn:
            rows = self.store.all_subjects(conn)
        for r in rows:
            expires, withdrawn = as_utc(r["expires_at"]), as_utc(r["withdrawn_at"])
            last = as_utc(r["last_interaction_at"] or r["created_at"])
            if withdrawn is not None:
                why = "consent_withdrawn"
            elif expires is not None and expires <= now:
                why = "consent_expired"
            elif last is not None and last + timedelta(days=int(r["retention_days"])) <= now:
                why = "retention_period_over"
            else:
                continue
            due.append({"collection": r["collection"], "subject_id": r["id"], "reason": why})
        return due

    def retention_sweep(self: Vault, now: datetime | None = None) -> dict[str, Any]:
        """Destroy everything that is due; returns the erasure receipts."""
        receipts = [
            self.erase_subject(d["collection"], f"#{d['subject_id']}", reason=d["reason"])
            for d in self.retention_due(now)
        ]
        with self.store.begin() as conn:
            self._log(conn, "retention.sweep", details={"erased_subjects": len(receipts)})
        return {"swept_at": (now or utcnow()).isoformat(), "erased": receipts}

    def retention_policy(self: Vault) -> str:
        """The written, public retention and destruction policy (BIPA 740 ILCS 14/15(a))."""
        lines = [
            "Biometric data retention and destruction policy",
            "",
            "This facevault deployment keeps face templates only of people who gave written consent for a "
            "stated purpose. Each person's face templates, stored face crops (in collections that keep "
            "them), sample records and consent record are permanently destroyed at the earliest of:",
            "  1. the day their consent is withdrawn (destroyed at once, on withdrawal);",
            "  2. the day their consent expires, where it has an end date;",
            "  3. the end of the retention period of their collection, counted from their last interaction "
            "(enrollment or consent renewal), and never later than 3 years after it;",
            "  4. their erasure request or opt-out by selfie (destroyed at once).",
            "A retention sweep runs when the server starts and daily, and can be run with "
            "`facevault retention sweep`. Every destruction is recorded in the audit log with a receipt that "
            "holds counts and hashes, never biometric data.",
            "",
            "Collections:",
        ]
        for c in self.list_collections():
            crops_note = " encrypted face crops are kept to re-embed with a new model;" * bool(
                c["keep_crops"]
            )
            lines.append(
                f"  - {c['name']}: purpose: {c.get('purpose') or 'not stated'}; retention after last "
                f"interaction: {c.get('retention_days', 1095)} days;{crops_note} {c['subjects']} people "
                "enrolled."
            )
        return "\n".join(lines)

    # ---- opt-out by selfie ---------------------------------------------------------------------------
    def _optout_guard(
        self: Vault, coll: dict[str, Any], key: TemplateKey, rows: list[dict[str, Any]] | None = None
    ) -> OptoutGuard:
        """The opt-out templates that apply to this collection, protected under ``key``, grouped by the
        model that made them (see privacy/optout_guard.py). Refused (``model_unavailable``) when some were
        made by a pack that can no longer be loaded: enrollments could not be checked against them.
        ``rows``: the collection's opt-out rows, when the caller has read them in its own transaction."""
        if rows is None:
            with self.store.begin() as conn:
                rows = self.store.optouts_for(conn, None, coll["name"])
        by_model: dict[str, list[np.ndarray]] = {}
        for r in rows:
            k = self.keys.key(r["key_version"])
            raw = k.unprotect(k.open(r["vector"], _optout_context(r), r["dim"]))
            by_model.setdefault(r["model_id"], []).append(key.protect(raw))
        fmr = self.settings.conflict_fmr
        sets = {}
        for model_id, vecs in by_model.items():
            if model_id != coll["model_id"]:
                try:
                    get_pack(model_id)
                except FaceVaultError as exc:
                    raise ModelError(
                        f"opt-outs recorded with model {model_id!r} apply to collection {coll['name']!r}, "
                        f"but that model cannot be loaded ({exc.message}); install it again so that "
                        "enrollments can be checked against them"
                    ) from exc
            threshold, _ = self._threshold(model_id, fmr, None, fmr)
            sets[model_id] = OptoutSet(model_id, np.stack(vecs), threshold)
        own = sets.pop(coll["model_id"], None)
        return OptoutGuard(key, own, [sets[m] for m in sorted(sets)])

    def optout(self: Vault, photo: ImageInput, *, collection: str | None = None) -> dict[str, Any]:
        """Erase every subject whose samples match the (largest) face in ``photo`` at the strict threshold,
        in one collection or all, and keep a protected opt-out template that blocks later enrollments."""
        decoded = self._decode(photo)
        colls = [self.get_collection(collection)] if collection else self.list_collections()
        models = sorted({c["model_id"] for c in colls}) or [self.settings.default_model]
        scope = collection or "*"
        erased: list[dict[str, Any]] = []
        optout_ids = []
        key = self._current_key()
        for model_id in models:
            faces = self.pipeline(model_id).analyze(decoded.pixels)
            if not faces:
                with self.store.begin() as conn:
                    self._log(
                        conn,
                        "optout",
                        collection=collection,
                        probe_sha256=decoded.sha256,
                        details={"outcome": "no_face"},
                    )
                raise NoFaceError("no face was found in the opt-out photo")
            raw = faces[0].embedding
            for coll in (c for c in colls if c["model_id"] == model_id):
                with self.store.begin() as conn:
                    n = self.store.count_samples(conn, coll["id"])
                fmr = min(self.settings.conflict_fmr, self.settings.optout_max_false_erasures / max(n, 1))
                strict, _ = self._threshold(model_id, fmr, None, fmr)
                for cand in self._candidates(coll, raw, top_k=1000, thr=strict):
                    erased.append(self.erase_subject(coll["name"], f"#{cand.subject_id}", reason="opt_out"))
            protected = key.protect(raw)
            context_row = {"model_id": model_id, "scope": scope, "dim": int(raw.shape[0])}
            with self.store.begin() as conn:
                optout_ids.append(
                    self.store.add_optout(
                        conn,
                        model_id=model_id,
                        dim=int(raw.shape[0]),
                        scope=scope,
                        vector=key.seal(protected, _optout_context(context_row)),
                        key_version=key.version,
                    )
                )
        with self.store.begin() as conn:
            seq = self._log(
                conn,
                "optout",
                collection=collection,
                probe_sha256=decoded.sha256,
                details={
                    "outcome": "ok",
                    "scope": scope,
                    "optout_ids": optout_ids,
                    "subjects_erased": [e["subject_id"] for e in erased],
                },
            )
        return {"scope": scope, "optout_ids": optout_ids, "erased": erased, "audit_seq": seq}

    # ---- human review --------------------------------------------------------------------------------
    def _record_review_candidates(
        self: Vault, conn: Any, case_id: str, seq: int, collection: str, faces: list[Any]
    ) -> None:
        for face in faces:
            for c in face.candidates:
                self.store.add_review_candidate(
                    conn,
                    case_id=case_id,
                    search_seq=seq,
                    collection=collection,
                    subject_id=c.subject_id,
                    subject_name=c.name,
                    similarity=c.similarity,
                )

    def review_status(self: Vault, case_id: str) -> dict[str, Any]:
        """Candidates of a case and their review state: a match counts as confirmed only once two different
        reviewers confirmed it; any rejection marks it rejected."""
        with self.store.begin() as conn:
            cands = self.store.review_candidates(conn, case_id)
            decisions = self.store.review_decisions(conn, [c["id"] for c in cands])
        out = []
        for c in cands:
            mine = [d for d in decisions if d["candidate_id"] == c["id"]]
            confirms = sorted({d["reviewer"] for d in mine if d["decision"] == "confirm"})
            rejects = sorted({d["reviewer"] for d in mine if d["decision"] == "reject"})
            state = (
                "rejected"
                if rejects
                else ("confirmed" if len(confirms) >= CONFIRMATIONS_NEEDED else "pending")
            )
            out.append(
                {
                    "candidate_id": c["id"],
                    "search_seq": c["search_seq"],
                    "collection": c["collection"],
                    "subject_id": c["subject_id"],
                    "name": c["subject_name"],
                    "similarity": c["similarity"],
                    "confirmed_by": confirms,
                    "rejected_by": rejects,
                    "state": state,
                }
            )
        return {"case_id": case_id, "candidates": out, "confirmations_needed": CONFIRMATIONS_NEEDED}

    def review(
        self: Vault, case_id: str, candidate: int, decision: str, reviewer: str, note: str | None = None
    ) -> dict[str, Any]:
        """Record one reviewer's decision on a candidate of a case (``candidate``: the candidate id, or the
        subject id of a candidate in this case)."""
        if decision not in ("confirm", "reject"):
            raise InputError("decision must be confirm or reject")
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise PurposeRequiredError("a review needs the reviewer's name")
        with self.store.begin() as conn:
            cands = self.store.review_candidates(conn, case_id)
            match = [c for c in cands if c["id"] == candidate] or [
                c for c in cands if c["subject_id"] == candidate
            ]
            if not match:
                raise NotFoundError(
                    f"case {case_id!r} has no candidate {candidate}", code="candidate_not_found"
                )
            target = match[-1]
            self.store.add_review_decision(
                conn, candidate_id=target["id"], reviewer=reviewer, decision=decision, note=note
            )
            self._log(
                conn,
                "review",
                case_id=case_id,
                collection=target["collection"],
                details={
                    "candidate_id": target["id"],
                    "subject_id": target["subject_id"],
                    "decision": decision,
                    "reviewer": reviewer,
                },
            )
        status = self.review_status(case_id)
        return next(c for c in status["candidates"] if c["candidate_id"] == target["id"])

    # ---- keys --------------------------------------------------------------------------------------
    def rotate_keys(self: Vault) -> dict[str, Any]:
        """Re-protect every template (and opt-out template) and re-encrypt every stored face crop under a
        new key, then forget the old one.

        Crash-safe: the new key is added to the key file first, every template and crop is re-protected
        in ONE database transaction that also switches the current key version, and the old key is removed
        last. Indexes are dropped before the switch (under the index lock) and rebuilt from the store,
        so no index can hold vectors under a key the store no longer uses. A crash anywhere leaves the
        old or the new state; the next open removes the unused key."""
        ring = self.keys
        with self.store.begin() as conn:
            old = self._current_key(conn)
        new = TemplateKey.generate(max(ring.template_keys) + 1)
        ring.template_keys[new.version] = new
        ring.save()
        crash_point("rotate:key_added")
        counts = {"samples": 0, "crops": 0, "optouts": 0}
        colls = {c["id"]: c for c in self.list_collections()}
        with self._index_lock():
            for c in colls.values():
                discard_index(self._index_spec, self._index_path(c["id"]))
                self._indexes.pop(c["id"], None)
            crash_point("rotate:indexes_dropped")
            with self.store.begin() as conn:
                for rows in self.store.iter_sample_blobs(conn):
                    for sid, cid, blob, version in rows:
                        coll = colls[cid]
                        ctx = self._context(coll)
                        raw = self.keys.key(version).unprotect(
                            self.keys.key(version).open(blob, ctx, coll["dim"])
                        )
                        self.store.update_sample_blob(conn, sid, new.seal(new.protect(raw), ctx), new.version)
                        counts["samples"] += 1
                for crop_rows in self.store.iter_crops(conn):  # crops: decrypted and sealed again
                    for r in crop_rows:
                        sid, cid = r["sample_id"], r["collection_id"]
                        data = crops.open_sealed(self.keys.key(r["key_version"]), r["image"], cid, sid)
                        self.store.update_crop_blob(conn, sid, crops.seal(new, data, cid, sid), new.version)
                        counts["crops"] += 1
                for r in self.store.all_optouts(conn):
                    ctx = _optout_context(r)
                    k = self.keys.key(r["key_version"])
                    raw = k.unprotect(k.open(r["vector"], ctx, r["dim"]))
                    self.store.update_optout_blob(conn, r["id"], new.seal(new.protect(raw), ctx), new.version)
                    counts["optouts"] += 1
                self.store.set_meta(conn, "template_key_version", str(new.version))
                self._log(
                    conn,
                    "keys.rotate",
                    details={"from_version": old.version, "to_version": new.version, **counts},
                )
                crash_point("rotate:before_commit")
            crash_point("rotate:db_committed")
        self.forget_unused_keys()
        for c in colls.values():
            self._index(c)  # rebuild now rather than on the first search
        return {"from_version": old.version, "to_version": new.version, **counts}

    def forget_unused_keys(self: Vault) -> list[int]:
        """Drop template keys the store no longer uses (left behind by an interrupted rotation)."""
        ring = self.keys
        if ring.from_env or len(ring.template_keys) <= 1:
            return []
        with self.store.begin() as conn:
            current = int(self.store.get_meta(conn, "template_key_version") or 1)
        stale = [v for v in ring.template_keys if v != current]
        if stale and current in ring.template_keys:
            for v in stale:
                del ring.template_keys[v]
            ring.save()
        return stale

    # ---- records -------------------------------------------------------------------------------------
    def audit_export(
        self: Vault, *, since: datetime | None = None, until: datetime | None = None, fmt: str = "jsonl"
    ) -> str:
        if fmt not in ("jsonl", "csv"):
            raise InputError("format must be jsonl or csv")
        with self.store.begin() as conn:
            rows = audit.entries(conn, 0, since=since, until=until, newest_first=False)
            self._log(
                conn,
                "audit.export",
                details={
                    "entries": len(rows),
                    "format": fmt,
                    "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None,
                },
            )
        return "".join(audit.export(rows, fmt))

    def processing_record(self: Vault) -> dict[str, Any]:
        """The GDPR Art. 30 record of processing activities for this deployment."""
        with self.store.begin() as conn:
            counts = self.store.counts(conn)
        colls = self.list_collections()
        try:
            from ..api import keys as api_keys  # the REST API's key table, when present

            recipients = api_keys.role_counts(self)  # type: ignore[attr-defined]
        except Exception:  # the API may not be installed or used
            recipients = {}
        return {
            "controller": os.environ.get(
                "FACEVAULT_CONTROLLER", "set FACEVAULT_CONTROLLER to the controller's name"
            ),
            "categories_of_data": [
                "face templates (biometric data, GDPR Art. 9)",
                *(
                    ["face crops of enrolled photos, encrypted (collections that keep them)"]
                    if any(c["keep_crops"] for c in colls)
                    else []
                ),
                "names and external ids",
                "consent records",
                "audit log of searches",
            ],
            "collections": [
                {
                    "name": c["name"],
                    "purpose": c.get("purpose"),
                    "legal_basis": c.get("legal_basis") or "explicit consent (GDPR Art. 9(2)(a))",
                    "model_id": c["model_id"],
                    "subjects": c["subjects"],
                    "samples": c["samples"],
                    "retention_days_after_last_interaction": c.get("retention_days"),
                    "keep_crops": bool(c["keep_crops"]),
                }
                for c in colls
            ],
            "counts": counts,
            "recipients": {"roles": list(ROLES), "api_keys_per_role": recipients},
            "transfers": "none: the data stays on this deployment",
            "retention": "see `facevault retention policy`",
            "security_measures": [
                "templates stored only in protected form: secret orthogonal transform + AES-256-GCM at rest",
                "keys kept outside the database (0600 key file or environment), renewable by rotation",
                "hash-chained, keyed audit log of every search, verification, enrollment and erasure",
                "purpose required for every search; consent record required for every enrolled person",
                "secure_delete and WAL truncation on erasure; indexes rebuilt without erased entries",
                "role-based API keys stored hashed; loopback-only default binding",
            ],
        }


def _optout_context(row: dict[str, Any]) -> bytes:
    return f"optout:{row['model_id']}:{row['scope']}:{row['dim']}".encode()
