"""The privacy endpoints over HTTP with real LFW photos: consent and its withdrawal, opt-out by selfie,
two-reviewer confirmation, audit export and filters, retention (public policy, sweeps, the server's
start-up sweep), the record of processing, template key rotation, and auditing of keys and sign-ins."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from facevault.api import create_app

from . import test_api_support as support
from .conftest import lfw
from .test_api_support import TEST_SETTINGS, asgi_client, auth, photo

anyio_backend, api_app, role_keys = support.anyio_backend, support.api_app, support.role_keys  # fixtures

pytestmark = pytest.mark.anyio


async def _gallery(
    c: httpx.AsyncClient, keys: dict[str, str], people: dict[str, list[int]]
) -> dict[str, int]:
    """Collection "g" with one subject per person enrolled over HTTP; returns their subject ids."""
    r = await c.post("/api/v1/collections", json={"name": "g"}, headers=auth(keys["admin"]))
    assert r.status_code == 201, r.text
    ids = {}
    for person, numbers in people.items():
        r = await c.post(
            "/api/v1/collections/g/subjects",
            json={"name": person.replace("_", " "), "purpose": "testing", "consent_text": "signed (test)"},
            headers=auth(keys["enroller"]),
        )
        assert r.status_code == 201, r.text
        ids[person] = r.json()["id"]
        r = await c.post(
            f"/api/v1/collections/g/subjects/{ids[person]}/samples",
            files=[("images", photo(person, n)) for n in numbers],
            headers=auth(keys["enroller"]),
        )
        assert r.json()["enrolled"] == len(numbers), r.text
    return ids


async def _search(c: httpx.AsyncClient, key: str, person: str, n: int, case_id: str | None = None) -> dict:
    data = {"purpose": "privacy test", **({"case_id": case_id} if case_id else {})}
    r = await c.post(
        "/api/v1/collections/g/search", data=data, files={"image": photo(person, n)}, headers=auth(key)
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_consent_show_and_withdrawal_erases_at_once(api_app, role_keys) -> None:
    enr, aud = auth(role_keys["enroller"]), auth(role_keys["auditor"])
    async with asgi_client(api_app) as c:
        ids = await _gallery(c, role_keys, {"Tony_Blair": [1, 2], "Hugo_Chavez": [1]})
        tony = f"/api/v1/collections/g/subjects/{ids['Tony_Blair']}"
        shown = await c.get(f"{tony}/consent", headers=enr)
        assert shown.status_code == 200, shown.text
        assert shown.json()["purpose"] == "testing" and shown.json()["withdrawn_at"] is None
        assert shown.json()["name"] == "Tony Blair"
        assert (await c.get(f"{tony}/consent", headers=auth(role_keys["searcher"]))).status_code == 403

        gone = await c.post(f"{tony}/consent/withdraw", headers=enr)
        assert gone.status_code == 200, gone.text
        body = gone.json()
        assert body["reason"] == "consent_withdrawn" and body["samples_removed"] == 2
        assert body["photos_removed"] == 2
        assert (await c.get(tony, headers=enr)).status_code == 404
        assert (await c.post(f"{tony}/consent/withdraw", headers=enr)).status_code == 404
        assert (await _search(c, role_keys["searcher"], "Tony_Blair", 5))["matched"] is False

        entries = (
            await c.get("/api/v1/audit", params={"request_id": body["request_id"]}, headers=aud)
        ).json()
        assert [e["action"] for e in entries] == ["subject.erase", "consent.withdraw"]
        assert all(e["role"] == "enroller" and e["actor"].startswith("key:") for e in entries)


async def test_optout_by_selfie_erases_and_blocks_reenrollment(api_app, role_keys) -> None:
    enr = auth(role_keys["enroller"])
    async with asgi_client(api_app) as c:
        await _gallery(c, role_keys, {"Tony_Blair": [9], "Hugo_Chavez": [1]})
        assert (
            await c.post(
                "/api/v1/optout", files={"image": photo("Tony_Blair", 3)}, headers=auth(role_keys["searcher"])
            )
        ).status_code == 403
        r = await c.post(
            "/api/v1/optout", data={"collection": "g"}, files={"image": photo("Tony_Blair", 3)}, headers=enr
        )
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == "g" and [e["name"] for e in r.json()["erased"]] == ["Tony Blair"]
        assert r.json()["request_id"].startswith("req_")
        listed = (await c.get("/api/v1/collections/g/subjects", headers=enr)).json()
        assert [s["name"] for s in listed] == ["Hugo Chavez"]

        again = await c.post(
            "/api/v1/collections/g/subjects",
            json={"name": "Tony again", "purpose": "testing", "consent_text": "ok"},
            headers=enr,
        )
        blocked = await c.post(
            f"/api/v1/collections/g/subjects/{again.json()['id']}/samples",
            files=[("images", photo("Tony_Blair", 9))],
            headers=enr,
        )
        assert blocked.json()["outcomes"][0]["reason"] == "blocked_by_optout"

        # base64 JSON, every collection; a photo without a face is a clear error
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (200, 200), (120, 160, 220)).save(buf, format="JPEG")
        r = await c.post(
            "/api/v1/optout", json={"image_base64": base64.b64encode(buf.getvalue()).decode()}, headers=enr
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "no_face"
        assert (await c.post("/api/v1/optout", data={"collection": "g"}, headers=enr)).status_code == 422


async def test_review_confirmation_needs_two_different_keys(api_app, role_keys) -> None:
    first = auth(role_keys["reviewer"])
    second = auth(api_app.state.vault.create_api_key("reviewer", "second reviewer")[0])
    async with asgi_client(api_app) as c:
        ids = await _gallery(c, role_keys, {"Tony_Blair": [1, 2], "Hugo_Chavez": [1]})
        await _search(c, role_keys["searcher"], "Tony_Blair", 5, case_id="CASE-9")
        queue = await c.get("/api/v1/review/CASE-9", headers=first)
        assert queue.status_code == 200, queue.text
        cands = queue.json()["candidates"]
        assert [x["name"] for x in cands] == ["Tony Blair"] and cands[0]["state"] == "pending"
        assert queue.json()["confirmations_needed"] == 2
        assert queue.json()["you"].startswith("reviewer test key (key:")
        cid = cands[0]["candidate_id"]
        url = "/api/v1/review/CASE-9/decisions"

        one = await c.post(url, json={"candidate": cid, "decision": "confirm"}, headers=first)
        assert one.status_code == 200, one.text
        assert one.json()["state"] == "pending" and len(one.json()["confirmed_by"]) == 1
        twice = await c.post(url, json={"candidate": cid, "decision": "confirm"}, headers=first)
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_reviewed"
        # the reviewer's identity is the key: a name in the body is refused, not used
        named = await c.post(
            url, json={"candidate": cid, "decision": "confirm", "reviewer": "someone else"}, headers=first
        )
        assert named.status_code == 422
        two = await c.post(
            url,
            json={"candidate": ids["Tony_Blair"], "decision": "confirm", "note": "same ears"},
            headers=second,
        )
        assert two.status_code == 200 and two.json()["state"] == "confirmed", two.text
        assert two.json()["confirmed_by"][1].startswith("second reviewer (key:")
        assert (await c.get("/api/v1/review/CASE-9", headers=first)).json()["candidates"][0][
            "state"
        ] == "confirmed"

        missing = await c.post(url, json={"candidate": 999, "decision": "reject"}, headers=second)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "candidate_not_found"
        bad = await c.post(url, json={"candidate": cid, "decision": "maybe"}, headers=second)
        assert bad.status_code == 422
        assert (await c.get("/api/v1/review/NOPE", headers=first)).json()["candidates"] == []
        log = (
            await c.get("/api/v1/audit", params={"action": "review"}, headers=auth(role_keys["auditor"]))
        ).json()
        assert [e["role"] for e in log] == ["reviewer", "reviewer"]


async def test_audit_filters_run_in_the_store_and_export_downloads(api_app, role_keys) -> None:
    aud = auth(role_keys["auditor"])
    async with asgi_client(api_app) as c:
        await _gallery(c, role_keys, {"Tony_Blair": [1]})
        res = await _search(c, role_keys["searcher"], "Tony_Blair", 2, case_id="C-1")
        searcher = (await c.get("/api/v1/me", headers=auth(role_keys["searcher"]))).json()["actor"]

        by_actor = (await c.get("/api/v1/audit", params={"actor": searcher}, headers=aud)).json()
        assert [e["action"] for e in by_actor] == ["search"]
        assert (
            await c.get("/api/v1/audit", params={"actor": searcher[:6]}, headers=aud)
        ).json() == []  # exact
        by_case = (
            await c.get("/api/v1/audit", params={"case_id": "C-1", "collection": "g"}, headers=aud)
        ).json()
        assert [e["seq"] for e in by_case] == [res["audit_seq"]]
        by_request = (
            await c.get("/api/v1/audit", params={"request_id": res["request_id"]}, headers=aud)
        ).json()
        assert [e["seq"] for e in by_request] == [res["audit_seq"]]
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert (await c.get("/api/v1/audit", params={"since": later}, headers=aud)).json() == []
        assert (
            len((await c.get("/api/v1/audit", params={"until": later, "limit": 3}, headers=aud)).json()) == 3
        )
        assert (await c.get("/api/v1/audit", params={"since": "yesterday"}, headers=aud)).status_code == 422

        jsonl = await c.get("/api/v1/audit/export", headers=aud)
        assert jsonl.status_code == 200, jsonl.text
        assert jsonl.headers["content-type"].startswith("application/x-ndjson")
        assert jsonl.headers["content-disposition"].startswith('attachment; filename="facevault-audit-')
        rows = [json.loads(line) for line in jsonl.text.splitlines()]
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows) and len(rows) >= 5
        assert any(r["action"] == "search" and r["case_id"] == "C-1" for r in rows)

        today = date.today().isoformat()
        as_csv = await c.get(
            "/api/v1/audit/export", params={"format": "csv", "since": today, "until": later}, headers=aud
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert table and {"seq", "action", "actor", "hash"} <= set(table[0])
        assert table[-1]["action"] == "audit.export"  # the first export is itself in the log
        empty = await c.get("/api/v1/audit/export", params={"since": later}, headers=aud)
        assert empty.text == ""
        exports = (await c.get("/api/v1/audit", params={"action": "audit.export"}, headers=aud)).json()
        assert len(exports) == 3 and exports[0]["role"] == "auditor"
        assert (await c.get("/api/v1/audit/export", params={"format": "xml"}, headers=aud)).status_code == 422
        assert (await c.get("/api/v1/audit/export", headers=auth(role_keys["searcher"]))).status_code == 403


async def test_retention_policy_is_public_and_sweeps_are_admin_work(api_app, role_keys) -> None:
    adm = auth(role_keys["admin"])
    async with asgi_client(api_app) as c:
        await _gallery(c, role_keys, {"Tony_Blair": [1]})
        policy = await c.get("/api/v1/retention/policy")  # no key: BIPA 15(a) wants it public
        assert policy.status_code == 200 and policy.headers["content-type"].startswith("text/plain")
        assert "retention and destruction policy" in policy.text and "g: " in policy.text

        r = await c.put("/api/v1/collections/g/retention", json={"days": 30}, headers=adm)
        assert r.status_code == 200 and r.json() == {"collection": "g", "retention_days": 30}
        assert (
            await c.put("/api/v1/collections/g/retention", json={"days": 5000}, headers=adm)
        ).status_code == 422
        assert "30 days" in (await c.get("/api/v1/retention/policy")).text

        swept = await c.post("/api/v1/retention/sweep", headers=adm)
        assert swept.status_code == 200 and swept.json()["erased"] == [], swept.text
        assert (
            await c.post("/api/v1/retention/sweep", headers=auth(role_keys["enroller"]))
        ).status_code == 403

        record = await c.get("/api/v1/reports/processing", headers=auth(role_keys["auditor"]))
        assert record.status_code == 200, record.text
        body = record.json()
        assert body["collections"][0]["name"] == "g" and body["collections"][0]["subjects"] == 1
        assert body["recipients"]["api_keys_per_role"] == dict.fromkeys(
            ("admin", "enroller", "searcher", "reviewer", "auditor"), 1
        )


async def test_template_key_rotation_keeps_search_results(api_app, role_keys) -> None:
    async with asgi_client(api_app) as c:
        await _gallery(c, role_keys, {"Tony_Blair": [1, 2], "Hugo_Chavez": [1]})
        before = await _search(c, role_keys["searcher"], "Tony_Blair", 5)
        r = await c.post("/api/v1/template-keys/rotate", headers=auth(role_keys["admin"]))
        assert r.status_code == 200, r.text
        assert r.json()["to_version"] == r.json()["from_version"] + 1 and r.json()["samples"] == 3
        after = await _search(c, role_keys["searcher"], "Tony_Blair", 5)
    strip = [(x["subject_id"], round(x["similarity"], 5)) for x in before["faces"][0]["candidates"]]
    assert strip == [(x["subject_id"], round(x["similarity"], 5)) for x in after["faces"][0]["candidates"]]


async def test_key_changes_and_sign_ins_are_audited(api_app, role_keys) -> None:
    adm, aud = auth(role_keys["admin"]), auth(role_keys["auditor"])
    async with asgi_client(api_app) as c:
        admin_actor = (await c.get("/api/v1/me", headers=adm)).json()["actor"]
        made = (await c.post("/api/v1/keys", json={"name": "ops", "role": "searcher"}, headers=adm)).json()
        await c.delete(f"/api/v1/keys/{made['prefix']}", headers=adm)
        await c.delete(f"/api/v1/keys/{made['prefix']}", headers=adm)  # revoking twice is logged once

        log = (await c.get("/api/v1/audit", params={"actor": admin_actor}, headers=aud)).json()
        assert [e["action"] for e in log] == ["apikey.revoke", "apikey.create"]
        for e in log:
            assert e["details"]["prefix"] == made["prefix"] and e["details"]["role"] == "searcher"
            assert e["details"]["name"] == "ops" and e["role"] == "admin"
        text = json.dumps(log)
        assert made["key"] not in text and made["key"].split("_", 2)[2] not in text

        # the fixture's keys were made outside any request: audited as the vault's own actor
        created = (await c.get("/api/v1/audit", params={"action": "apikey.create"}, headers=aud)).json()
        assert len(created) == 6

        # sign-in: POST /login records one entry; /me (every page load) records none
        for _ in range(3):
            assert (await c.get("/api/v1/me", headers=auth(role_keys["reviewer"]))).status_code == 200
        signin = await c.post("/api/v1/login", headers=auth(role_keys["reviewer"]))
        assert signin.status_code == 200 and signin.json()["role"] == "reviewer"
        logins = (await c.get("/api/v1/audit", params={"action": "login"}, headers=aud)).json()
        assert len(logins) == 1 and logins[0]["seq"] == signin.json()["audit_seq"]
        assert logins[0]["role"] == "reviewer" and logins[0]["details"]["name"] == "reviewer test key"
        assert (
            await c.post("/api/v1/login", headers={"X-API-Key": "fvk_00000000_" + "x" * 40})
        ).status_code == 401


def test_cli_key_commands_are_audited(vault) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from facevault.cli.server import keys_app

    home = str(vault.settings.home)
    runner = CliRunner()
    made = runner.invoke(
        keys_app, ["create", "--role", "enroller", "--name", "desk", "--home", home, "--json"]
    )
    prefix = json.loads(made.stdout)["prefix"]
    runner.invoke(keys_app, ["revoke", prefix, "--home", home])
    log = vault.audit_entries(2)
    assert [e["action"] for e in log] == ["apikey.revoke", "apikey.create"]
    assert all(e["details"] == {"prefix": prefix, "role": "enroller", "name": "desk"} for e in log)


async def test_server_start_sweeps_what_is_due_then_sweeps_daily(vault) -> None:  # type: ignore[no-untyped-def]
    vault.create_collection("g")
    tomorrow = date.today() + timedelta(days=1)
    vault.add_subject("g", "Tony Blair", purpose="t", consent_text="ok", expires=tomorrow)
    vault.add_subject("g", "Hugo Chavez", purpose="t", consent_text="ok")
    assert vault.enroll("g", "Tony Blair", [lfw("Tony_Blair", 1)])[0].ok
    in_three_days = datetime.now(UTC) + timedelta(days=3)
    app = create_app(vault, settings=TEST_SETTINGS, sweep_clock=lambda: in_three_days)
    sweeper = app.state.retention
    assert sweeper.interval_s == 86400 and sweeper.runs == 0
    async with app.router.lifespan_context(app):
        # the start-up sweep is done before the first request is served
        assert sweeper.runs == 1 and sweeper.last == {
            "ok": True,
            "swept_at": in_three_days.isoformat(),
            "erased": 1,
        }
        assert [s["name"] for s in vault.list_subjects("g")] == ["Hugo Chavez"]
        erased = vault.audit_entries(1, action="subject.erase")[0]
        assert erased["details"]["reason"] == "consent_expired" and erased["actor"] == "server:retention"
        assert sweeper.task is not None and not sweeper.task.done()  # the daily sweep is scheduled
    assert sweeper.task.cancelled()  # and stopped with the server


def test_demo_admin_key_is_fresh_each_time(vault) -> None:  # type: ignore[no-untyped-def]
    from facevault.cli.server import demo_admin_key

    first = demo_admin_key(vault)
    second = demo_admin_key(vault)
    assert vault.authenticate_key(first) is None  # the earlier one is revoked: a key is shown only once
    principal = vault.authenticate_key(second)
    assert principal is not None and (principal.role, principal.name) == ("admin", "demo")
    assert [k["active"] for k in vault.list_api_keys()] == [False, True]
