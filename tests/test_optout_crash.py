"""An opt-out that a SIGKILL interrupts is finished at the next open (docs/PRIVACY.md, RELIABILITY.md).

The opt-out template is stored before anything is erased, so the face is blocked from that moment on;
the erasures follow, and the opt-out is marked finished together with its audit entry. A CLI child kills
itself right after the template is stored, between two subjects' erasures, and after the erasures but
before the audit entry: every time, reopening the vault erases whatever matching subject is left (and
only inside the opt-out's scope), writes the audit entry, and the face stays blocked. Real LFW photos."""

from __future__ import annotations

from pathlib import Path

import pytest

import facevault

from .conftest import lfw, run_cli
from .test_privacy import enroll_blair_in_two_collections

pytestmark = pytest.mark.data


def _make_vault(home: Path) -> None:
    with facevault.open(str(home), create=True) as v:
        enroll_blair_in_two_collections(v)


def _names(v: facevault.Vault, collection: str) -> list[str]:
    return sorted(s["name"] for s in v.list_subjects(collection))


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        "optout:stored",  # the template is committed, nothing erased yet
        "erase:db_committed",  # the first subject's erasure is committed, the second not begun
        "optout:erased",  # every erasure done, the opt-out not marked finished, no audit entry
    ],
)
def test_killed_optout_is_finished_at_the_next_open(tmp_path: Path, point: str) -> None:
    home = tmp_path / "vault"
    _make_vault(home)
    proc = run_cli(str(home), "optout", str(lfw("Tony_Blair", 3)), crash_at=point)
    assert proc.returncode == -9, f"no SIGKILL at {point}: {proc.stderr[-2000:]}"

    with facevault.open(str(home)) as v:  # the open finishes the opt-out
        assert _names(v, "events") == []
        assert _names(v, "staff") == ["HC"]
        with v.context.read() as conn:
            rows = v.store.all_optouts(conn)
        assert len(rows) == 1 and rows[0]["finished_at"] is not None and rows[0]["scope"] == "*"
        entries = v.audit_entries(5, action="optout")
        assert [e["details"]["outcome"] for e in entries] == ["finished_at_open"]
        details = entries[0]["details"]
        assert details["optout_ids"] == [rows[0]["id"]] and details["scope"] == "*"
        # The subjects this open erased are named in the entry; one erased before the kill is not.
        expected = {"optout:stored": 2, "erase:db_committed": 1, "optout:erased": 0}[point]
        assert len(details["subjects_erased"]) == expected
        assert v.doctor().ok  # the audit chain is whole and no index holds an erased template

        v.add_subject("events", "TB again", purpose="photos", consent_text="yes")
        assert v.enroll("events", "TB again", [lfw("Tony_Blair", 9)])[0].reason == "blocked_by_optout"

    with facevault.open(str(home)) as again:  # finished once: a second open does nothing more
        assert [e["details"]["outcome"] for e in again.audit_entries(5, action="optout")] == [
            "finished_at_open"
        ]


@pytest.mark.slow
def test_killed_optout_from_one_collection_is_finished_only_there(tmp_path: Path) -> None:
    home = tmp_path / "vault"
    _make_vault(home)
    proc = run_cli(
        str(home), "optout", str(lfw("Tony_Blair", 3)), "--collection", "staff", crash_at="optout:stored"
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    with facevault.open(str(home)) as v:
        assert _names(v, "staff") == ["HC"]
        assert _names(v, "events") == ["TB"]  # outside the opt-out's scope: kept
        entry = v.audit_entries(5, action="optout")[0]
        assert entry["collection"] == "staff"
        assert (entry["details"]["outcome"], entry["details"]["scope"]) == ("finished_at_open", "staff")


def test_optout_without_a_face_stores_no_template(tmp_path: Path) -> None:
    from facevault.errors import NoFaceError

    home = tmp_path / "vault"
    with facevault.open(str(home), create=True) as v:
        v.create_collection("events")
        blank = tmp_path / "blank.png"
        from PIL import Image

        Image.new("RGB", (200, 200), (120, 120, 120)).save(blank)
        with pytest.raises(NoFaceError):
            v.optout(str(blank))
        with v.context.read() as conn:
            assert v.store.all_optouts(conn) == [] and v.store.pending_optouts(conn) == []
        assert v.audit_entries(5, action="optout")[0]["details"]["outcome"] == "no_face"
