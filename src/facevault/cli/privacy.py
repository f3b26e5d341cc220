"""Consent, retention, opt-out, human review and the records of processing: ``facevault consent ...``,
``retention ...``, ``report ...``, ``optout`` and ``review``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from ..config import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS
from .output import HomeOpt, JsonOpt, emit, exclusive, with_vault

consent_app = typer.Typer(
    help="Show or withdraw a subject's consent (withdrawal erases at once).", no_args_is_help=True
)
retention_app = typer.Typer(help="The retention policy and the sweep that enforces it.", no_args_is_help=True)
report_app = typer.Typer(help="Reports for accountability (GDPR Art. 30).", no_args_is_help=True)


# ---- consent -----------------------------------------------------------------------------------------
@consent_app.command("show")
def consent_show(collection: str, subject: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """A subject's consent record."""

    emit(with_vault(home, as_json, lambda v: v.consent_show(collection, subject)), as_json)


@consent_app.command("withdraw")
def consent_withdraw(collection: str, subject: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Withdraw consent: the subject's biometric data is erased at once."""

    emit(
        with_vault(home, as_json, lambda v: v.withdraw_consent(collection, subject)),
        as_json,
        lambda res: (
            f"consent withdrawn; erased {res['samples_erased']} samples of #{res['subject_id']} "
            f"(receipt: audit entry #{res['audit_seq']})"
        ),
    )


# ---- retention ---------------------------------------------------------------------------------------
@retention_app.command("policy")
def retention_policy(home: HomeOpt = None) -> None:
    """Print the written retention and destruction policy (public under BIPA 15(a))."""

    typer.echo(with_vault(home, False, lambda v: v.retention_policy()))


@retention_app.command("set")
def retention_set(
    collection: str,
    days: Annotated[
        int,
        typer.Argument(
            help=f"Days after a person's last interaction ({MIN_RETENTION_DAYS}-{MAX_RETENTION_DAYS})."
        ),
    ],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a collection's retention period."""

    emit(with_vault(home, as_json, lambda v: v.set_retention(collection, days)), as_json)


@retention_app.command("sweep")
def retention_sweep(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Destroy every person's data that is due (consent expired or withdrawn, retention period over)."""

    emit(with_vault(home, as_json, lambda v: v.retention_sweep()), as_json, _swept)


def _swept(res: Any) -> Iterator[str]:
    yield f"retention sweep: {len(res['erased'])} subject(s) erased"
    for r in res["erased"]:
        yield f"  {r['collection']} #{r['subject_id']}: {r['reason']} ({r['samples_erased']} samples)"


# ---- opt-out and review ------------------------------------------------------------------------------
def optout(
    photo: str,
    collection: Annotated[str | None, typer.Option("--collection", help="Only this collection.")] = None,
    all_collections: Annotated[bool, typer.Option("--all", help="Every collection (the default).")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find and erase me: erase every subject matching the face in PHOTO at the strict threshold and block
    future enrollments of that face."""
    exclusive(as_json, {"--collection": collection or None, "--all": all_collections})
    emit(
        with_vault(home, as_json, lambda v: v.optout(photo, collection=collection)),
        as_json,
        lambda res: (
            f"opted out ({res['scope']}): erased {len(res['erased'])} subject(s); future enrollments of "
            f"this face are refused. Audit entry #{res['audit_seq']}."
        ),
    )


def review(
    case: str,
    candidate: Annotated[int | None, typer.Option("--candidate", help="Candidate id or subject id.")] = None,
    decision: Annotated[str | None, typer.Option("--decision", help="confirm or reject")] = None,
    reviewer: Annotated[
        str | None,
        typer.Option(
            "--reviewer",
            help="Your name, shown with your decision (recorded). The reviewer who counts is your "
            "operating-system account, local:<user>, whatever this says.",
        ),
    ] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Human review of a case's search candidates. Without --decision, show the case. A match counts as
    confirmed only after two different people confirm it: two operating-system accounts (or API keys);
    one account deciding twice under two --reviewer names is refused."""

    def act(v: Any) -> Any:
        if decision is None:
            return v.review_status(case)
        if candidate is None or reviewer is None:
            from ..errors import InputError

            raise InputError("--candidate and --reviewer are required with --decision")
        return v.review(case, candidate, decision, reviewer, note)

    emit(with_vault(home, as_json, act), as_json, _reviewed)


def _reviewed(res: Any) -> Iterator[str]:
    for c in res.get("candidates", [res]):
        yield (
            f"candidate {c['candidate_id']}: #{c['subject_id']} {c['name']} ({c['similarity']:.4f}) "
            f"{c['state']}; confirmed by {', '.join(c['confirmed_by']) or '-'}; "
            f"rejected by {', '.join(c['rejected_by']) or '-'}"
        )


# ---- reports -----------------------------------------------------------------------------------------
@report_app.command("processing")
def report_processing(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The GDPR Art. 30 record of processing activities."""

    emit(with_vault(home, as_json, lambda v: v.processing_record()), as_json, _processing)


def _processing(rec: Any) -> Iterator[str]:
    yield "Record of processing activities (GDPR Art. 30)"
    yield f"Controller: {rec['controller']}"
    yield "Categories of data: " + "; ".join(rec["categories_of_data"])
    for c in rec["collections"]:
        yield (
            f"Collection {c['name']}: purpose {c['purpose'] or 'not stated'}; "
            f"legal basis {c['legal_basis']}; "
            f"{c['subjects']} people, {c['samples']} templates; retention "
            f"{c['retention_days_after_last_interaction']} days after last interaction"
        )
    yield "Recipients (roles): " + ", ".join(rec["recipients"]["roles"])
    yield f"Transfers: {rec['transfers']}"
    yield "Security measures:"
    for m in rec["security_measures"]:
        yield f"  - {m}"
