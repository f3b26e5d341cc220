"""The JSON API over HTTP (ASGI in-process, and one real uvicorn server) with real LFW photos."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from facevault.api import create_app
from facevault.store.schema import api_keys

from . import test_api_support as support
from .conftest import lfw
from .test_api_support import TEST_SETTINGS, asgi_client, auth, live_server, photo, setup_gallery

# fixtures shared with the role and web tests
anyio_backend, api_app, role_keys = support.anyio_backend, support.api_app, support.role_keys

pytestmark = pytest.mark.anyio


# ---- public endpoints ---------------------------------------------------------------------------------
async def test_health_openapi_docs_and_ui_are_public(api_app) -> None:
    async with asgi_client(api_app) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["models"]["model_id"] == "dlib-resnet-v1"
        spec = (await c.get("/openapi.json")).json()
        assert all(p.startswith(("/api/v1/", "/healthz", "/readyz")) for p in spec["paths"])
        assert spec["paths"]["/api/v1/collections/{collection}/search"]["post"]["x-roles"] == [
            "admin",
            "searcher",
        ]
        assert (await c.get("/docs")).status_code == 200
        page = await c.get("/search")
        assert page.status_code == 200 and "app.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert (await c.get("/static/app.js")).status_code == 200
        assert (await c.get("/", follow_redirects=False)).status_code == 307


# ---- authentication -----------------------------------------------------------------------------------
async def test_keys_authenticate_by_bearer_or_header_and_revocation_is_immediate(api_app) -> None:
    vault = api_app.state.vault
    key, record = vault.create_api_key("searcher", "camera 3")
    async with asgi_client(api_app) as c:
        missing = await c.get("/api/v1/me")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert "Bearer" in missing.headers["www-authenticate"]
        assert (
            await c.get("/api/v1/me", headers={"X-API-Key": "fvk_00000000_" + "x" * 40})
        ).status_code == 401
        me = await c.get("/api/v1/me", headers=auth(key))
        assert me.json() == {
            "name": "camera 3",
            "role": "searcher",
            "prefix": record["prefix"],
            "actor": f"key:{record['prefix']}",
        }
        assert (await c.get("/api/v1/me", headers={"X-API-Key": key})).status_code == 200
        vault.revoke_api_key(record["prefix"])
        assert (await c.get("/api/v1/me", headers=auth(key))).status_code == 401
    with vault.store.begin() as conn:
        rows = conn.execute(select(api_keys)).mappings().all()
    assert key not in str([dict(r) for r in rows])  # only the hash is stored
    assert rows[0]["last_used_at"] is not None


async def test_admin_manages_keys_over_the_api(api_app, role_keys) -> None:
    async with asgi_client(api_app) as c:
        made = await c.post(
            "/api/v1/keys", json={"name": "ops", "role": "auditor"}, headers=auth(role_keys["admin"])
        )
        assert made.status_code == 201 and made.json()["key"].startswith("fvk_")
        listed = (await c.get("/api/v1/keys", headers=auth(role_keys["admin"]))).json()
        assert "key" not in listed[0] and "key_sha256" not in listed[0]
        assert any(k["name"] == "ops" for k in listed)
        bad = await c.post(
            "/api/v1/keys", json={"name": "x", "role": "root"}, headers=auth(role_keys["admin"])
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
        gone = await c.delete(f"/api/v1/keys/{made.json()['prefix']}", headers=auth(role_keys["admin"]))
        assert gone.json()["active"] is False
        assert (await c.get("/api/v1/me", headers=auth(made.json()["key"]))).status_code == 401


# ---- the whole use case ---------------------------------------------------------------------------------
async def test_enroll_search_verify_erase_over_http(api_app, role_keys, tmp_path: Path) -> None:
    adm, enr, srch, aud = (auth(role_keys[r]) for r in ("admin", "enroller", "searcher", "auditor"))
    async with asgi_client(api_app) as c:
        assert (await c.post("/api/v1/collections", json={"name": "g"}, headers=adm)).status_code == 201
        dup = await c.post("/api/v1/collections", json={"name": "g"}, headers=adm)
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "collection_exists"

        tony = await c.post(
            "/api/v1/collections/g/subjects",
            json={
                "name": "Tony Blair",
                "purpose": "staff access",
                "consent_text": "signed form 12",
                "external_id": "E-12",
                "expires": "2099-01-01",
            },
            headers=enr,
        )
        assert tony.status_code == 201, tony.text
        assert tony.json()["consent"]["expires_at"].startswith("2099-01-01")
        hugo = await c.post(
            "/api/v1/collections/g/subjects",
            data={"name": "Hugo Chavez", "purpose": "staff access", "consent_by": "HR"},
            files={"consent_file": ("form-7.pdf", b"%PDF-1.4 signed", "application/pdf")},
            headers=enr,
        )
        assert hugo.status_code == 201, hugo.text
        assert hugo.json()["consent"]["evidence_kind"] == "file"
        assert hugo.json()["consent"]["evidence_name"] == "form-7.pdf"

        enrolled = await c.post(
            "/api/v1/collections/g/subjects/E-12/samples",
            files=[
                ("images", photo("Tony_Blair", 1)),
                ("images", photo("Tony_Blair", 2)),
                ("images", ("notes.jpg", b"this is not an image", "image/jpeg")),
                ("images", photo("Tony_Blair", 1)),
            ],
            headers=enr,
        )
        assert enrolled.status_code == 200, enrolled.text
        body = enrolled.json()
        assert (body["enrolled"], body["rejected"]) == (2, 2)
        outcomes = body["outcomes"]
        assert [o["image"] for o in outcomes] == [
            "Tony_Blair_0001.jpg",
            "Tony_Blair_0002.jpg",
            "notes.jpg",
            "Tony_Blair_0001.jpg",
        ]
        assert [o["reason"] for o in outcomes] == [None, None, "unreadable_image", "duplicate_image"]
        hugo_id = hugo.json()["id"]
        r = await c.post(
            f"/api/v1/collections/g/subjects/{hugo_id}/samples",
            files=[("images", photo("Hugo_Chavez", 1))],
            headers=enr,
        )
        assert r.json()["enrolled"] == 1

        # 1:N, multipart: the right person first, with the CLI's fields and a request id
        found = await c.post(
            "/api/v1/collections/g/search",
            data={"purpose": "door camera", "case_id": "C-1"},
            files={"image": photo("Tony_Blair", 5)},
            headers=srch,
        )
        assert found.status_code == 200, found.text
        res = found.json()
        assert res["matched"] is True and res["case_id"] == "C-1" and res["request_id"].startswith("req_")
        assert found.headers["x-request-id"] == res["request_id"]
        best = res["faces"][0]["candidates"][0]
        assert best["name"] == "Tony Blair" and best["similarity"] >= res["threshold"]
        assert 0 < best["estimated_fmr"] <= res["threshold_fmr"]
        assert {
            "collection",
            "model_id",
            "probe_sha256",
            "threshold",
            "top_k",
            "purpose",
            "audit_seq",
        } <= set(res)

        # thumbnails of matched samples come from the kept photo copies
        sample = best["samples"][0]
        thumb = await c.get(
            f"/api/v1/collections/g/subjects/{best['subject_id']}/samples/{sample['sample_id']}/thumbnail",
            headers=srch,
        )
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.content[:2] == b"\xff\xd8"

        # 1:N, base64 JSON: a stranger gives an explicit empty answer
        stranger = base64.b64encode(lfw("Colin_Powell", 1).read_bytes()).decode()
        empty = await c.post(
            "/api/v1/collections/g/search",
            json={"image_base64": stranger, "purpose": "door camera", "top": 3},
            headers=srch,
        )
        assert empty.status_code == 200, empty.text
        assert empty.json()["matched"] is False and empty.json()["faces"][0]["candidates"] == []

        # 1:1
        same = await c.post(
            "/api/v1/verify",
            data={"purpose": "id check"},
            files={"image_a": photo("Tony_Blair", 3), "image_b": photo("Tony_Blair", 4)},
            headers=srch,
        )
        assert same.status_code == 200 and same.json()["same_person"] is True
        other = await c.post(
            "/api/v1/verify",
            json={
                "purpose": "id check",
                "image_a_base64": base64.b64encode(lfw("Tony_Blair", 3).read_bytes()).decode(),
                "image_b_base64": base64.b64encode(lfw("Hugo_Chavez", 2).read_bytes()).decode(),
            },
            headers=srch,
        )
        assert other.status_code == 200 and other.json()["same_person"] is False

        # the request id of the search is in the audit log, with the key that asked
        log = await c.get("/api/v1/audit", params={"request_id": res["request_id"]}, headers=aud)
        entries = log.json()
        assert len(entries) == 1 and entries[0]["action"] == "search" and entries[0]["case_id"] == "C-1"
        assert entries[0]["seq"] == res["audit_seq"] and entries[0]["actor"].startswith("key:")
        searches = (await c.get("/api/v1/audit", params={"action": "search"}, headers=aud)).json()
        assert len(searches) == 2
        assert (await c.get("/api/v1/audit/verify", headers=aud)).json()["ok"] is True

        # subjects: list, filter, detail
        listed = (await c.get("/api/v1/collections/g/subjects", params={"q": "tony"}, headers=enr)).json()
        assert [s["name"] for s in listed] == ["Tony Blair"] and listed[0]["samples"] == 2
        detail = (await c.get("/api/v1/collections/g/subjects/E-12", headers=enr)).json()
        assert len(detail["samples"]) == 2 and detail["consent"]["purpose"] == "staff access"

        # erase: the subject, its samples and its kept photos are gone; a search comes back empty
        kept = api_app.state.vault.settings.photos_dir
        photos = list(kept.rglob("*"))
        erased = await c.delete("/api/v1/collections/g/subjects/E-12", headers=enr)
        assert erased.status_code == 200 and erased.json()["samples_removed"] == 2
        assert erased.json()["photos_removed"] == 2
        assert len([p for p in kept.rglob("*") if p.is_file()]) == 1
        assert len(photos) > 1
        again = await c.post(
            "/api/v1/collections/g/search",
            data={"purpose": "door camera"},
            files={"image": photo("Tony_Blair", 5)},
            headers=srch,
        )
        assert again.json()["matched"] is False
        gone = await c.get(
            f"/api/v1/collections/g/subjects/{best['subject_id']}/samples/{sample['sample_id']}/thumbnail",
            headers=srch,
        )
        assert gone.status_code == 404


# ---- errors and limits ---------------------------------------------------------------------------------
async def test_errors_are_json_with_fitting_status(api_app, role_keys) -> None:
    srch, enr = auth(role_keys["searcher"]), auth(role_keys["enroller"])
    api_app.state.vault.create_collection("g")
    async with asgi_client(api_app) as c:

        async def search(**kw):  # type: ignore[no-untyped-def]
            kw.setdefault("headers", srch)
            return await c.post("/api/v1/collections/g/search", **kw)

        r = await c.post(
            "/api/v1/collections/nope/search",
            data={"purpose": "p"},
            files={"image": photo("Tony_Blair", 1)},
            headers=srch,
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
        r = await search(files={"image": photo("Tony_Blair", 1)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert "purpose" in r.json()["error"]["message"]
        r = await search(json={"image_base64": "AAAA", "purpose": "   "})
        assert r.status_code == 400 and r.json()["error"]["code"] == "purpose_required"
        r = await search(data={"purpose": "p"}, files={"image": ("x.jpg", b"GIF89a nonsense", "image/jpeg")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "unreadable_image"
        r = await search(json={"image_base64": "not base64!", "purpose": "p"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_base64"
        r = await search(json={"image_base64": "AAAA", "purpose": "p", "threshold": 3})
        assert r.status_code == 422
        r = await search(content=b"raw", headers={**srch, "content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        r = await search(content=b"{not json", headers={**srch, "content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_json"
        r = await search(data={"purpose": "p"}, files={"image": ("sky.jpg", _blank_jpeg(), "image/jpeg")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "no_face"
        r = await c.get("/api/v1/nothing-here", headers=srch)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await c.post("/api/v1/collections/g/subjects", json={"name": "A", "purpose": "p"}, headers=enr)
        assert r.status_code == 400 and r.json()["error"]["code"] == "consent_required"
        r = await c.post(
            "/api/v1/collections/g/subjects",
            json={"name": "A", "purpose": "p", "consent_text": "ok", "expires": "2001-01-01"},
            headers=enr,
        )
        assert r.status_code == 400 and set(r.json()["error"]) == {"code", "message", "request_id"}


def _blank_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (200, 200), (120, 160, 220)).save(buf, format="JPEG")
    return buf.getvalue()


async def test_upload_body_and_rate_limits(vault, tmp_path: Path) -> None:
    settings = TEST_SETTINGS.with_overrides(
        max_upload_bytes=5_000, max_request_bytes=200_000, rate_per_minute=60, rate_burst=3
    )
    app = create_app(vault, settings=settings)
    vault.create_collection("g")
    key = auth(vault.create_api_key("searcher", "s")[0])
    big = photo("Tony_Blair", 1)  # ~9 kB, over the 5 kB image limit
    assert len(big[1]) > 5_000
    async with asgi_client(app) as c:
        r = await c.post(
            "/api/v1/collections/g/search", data={"purpose": "p"}, files={"image": big}, headers=key
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
        r = await c.post(
            "/api/v1/collections/g/search",
            data={"purpose": "p"},
            files={"image": ("x.jpg", b"\0" * 300_000, "image/jpeg")},
            headers=key,
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        replies = [await c.get("/api/v1/me", headers=key) for _ in range(3)]  # a burst of 3 per key
        assert [r.status_code for r in replies] == [200, 200, 429]
        r = replies[-1]
        assert r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1


async def test_request_timeout_gives_504(vault, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    app = create_app(vault, settings=TEST_SETTINGS.with_overrides(request_timeout_s=0.3))
    key = auth(vault.create_api_key("admin", "a")[0])
    monkeypatch.setattr(type(vault), "list_collections", lambda self: time.sleep(2) or [])
    async with asgi_client(app) as c:
        r = await c.get("/api/v1/collections", headers=key)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"


async def test_unexpected_errors_never_show_a_traceback(vault, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_app(vault, settings=TEST_SETTINGS)
    key = auth(vault.create_api_key("admin", "a")[0])

    def boom(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals /etc/shadow")

    monkeypatch.setattr(type(vault), "list_collections", boom)
    caplog.set_level(logging.DEBUG)
    async with asgi_client(app) as c:
        r = await c.get("/api/v1/collections", headers=key)
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error" and "secret" not in r.text
    assert "Traceback" not in caplog.text and "secret internals" not in caplog.text
    assert r.json()["error"]["request_id"] in caplog.text


async def test_searches_run_in_parallel_with_enrollment(api_app, role_keys) -> None:
    srch, enr = auth(role_keys["searcher"]), auth(role_keys["enroller"])
    vault = api_app.state.vault
    vault.create_collection("g")
    vault.add_subject("g", "Tony Blair", purpose="t", consent_text="ok")
    vault.enroll("g", "Tony Blair", [lfw("Tony_Blair", 1)])
    vault.add_subject("g", "Colin Powell", purpose="t", consent_text="ok")
    async with asgi_client(api_app) as c:

        async def search(n: int) -> httpx.Response:
            return await c.post(
                "/api/v1/collections/g/search",
                data={"purpose": "p"},
                files={"image": photo("Tony_Blair", n)},
                headers=srch,
            )

        enroll = c.post(
            "/api/v1/collections/g/subjects/Colin Powell/samples",
            files=[("images", photo("Colin_Powell", n)) for n in (1, 2, 3)],
            headers=enr,
        )
        results = await asyncio.gather(enroll, *(search(n) for n in (2, 3, 4, 5, 6)), c.get("/healthz"))
    assert results[0].json()["enrolled"] == 3
    for r in results[1:-1]:
        assert r.status_code == 200
        assert r.json()["faces"][0]["candidates"][0]["name"] == "Tony Blair"
    assert results[-1].status_code == 200


def test_a_real_server_on_loopback(api_app, role_keys) -> None:
    with live_server(api_app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        setup_gallery(c, role_keys, {"Tony_Blair": [1, 2], "Hugo_Chavez": [1]})
        r = c.post(
            "/api/v1/collections/g/search",
            data={"purpose": "live test"},
            files={"image": photo("Tony_Blair", 6)},
            headers={"X-API-Key": role_keys["searcher"]},
        )
        assert r.status_code == 200
        assert r.json()["faces"][0]["candidates"][0]["name"] == "Tony Blair"
        assert c.get("/subjects").headers["content-type"].startswith("text/html")


def test_facevault_serve_starts_one_process(tmp_path: Path) -> None:
    """`serve` on an empty home: /healthz, /openapi.json and the UI answer (run as its own process)."""
    import os
    import subprocess
    import sys
    import time

    from .test_api_support import free_port

    port = free_port()
    code = "import typer; from facevault.cli.server import serve; typer.run(serve)"
    env = {**os.environ, "FACEVAULT_HOME": str(tmp_path / "fresh")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{url}/openapi.json").json()["info"]["title"] == "facevault"
        assert "app.js" in httpx.get(f"{url}/signin").text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert b"Traceback" not in out


def test_keys_cli_create_list_revoke(vault) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from facevault.cli.server import keys_app

    home = str(vault.settings.home)
    runner = CliRunner()
    made = runner.invoke(keys_app, ["create", "--role", "auditor", "--name", "dpo", "--home", home, "--json"])
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["key"].startswith(f"fvk_{record['prefix']}_") and record["role"] == "auditor"
    listed = runner.invoke(keys_app, ["list", "--home", home])
    assert record["prefix"] in listed.stdout and record["key"] not in listed.stdout
    bad = runner.invoke(keys_app, ["create", "--role", "root", "--name", "x", "--home", home])
    assert bad.exit_code == 3 and "invalid_role" in bad.output
    gone = runner.invoke(keys_app, ["revoke", record["prefix"], "--home", home, "--json"])
    assert gone.exit_code == 0 and json.loads(gone.stdout)["active"] is False


# ---- messages in the API's own words -----------------------------------------------------------------
async def test_several_faces_are_refused_naming_the_api_field(api_app, role_keys) -> None:
    from .conftest import data_path

    two = data_path("face_recognition_examples", "examples", "two_people.jpg")
    enr = auth(role_keys["enroller"])
    vault = api_app.state.vault
    vault.create_collection("g")
    subject = vault.add_subject("g", "Alice", purpose="t", consent_text="ok")["id"]
    url = f"/api/v1/collections/g/subjects/{subject}/samples"
    async with asgi_client(api_app) as c:
        r = await c.post(url, files=[("images", ("group.jpg", two.read_bytes(), "image/jpeg"))], headers=enr)
        assert r.status_code == 200, r.text
        outcome = r.json()["outcomes"][0]
        assert outcome["reason"] == "multiple_faces" and outcome["image"] == "group.jpg"
        assert "largest=true" in outcome["message"] and "True" not in outcome["message"]
        assert outcome["message"].startswith("2 faces found")
        r = await c.post(
            url,
            data={"largest": "true"},
            files=[("images", ("group.jpg", two.read_bytes(), "image/jpeg"))],
            headers=enr,
        )
        assert r.json()["enrolled"] == 1, r.text


async def test_a_review_without_a_reviewer_name_is_refused_with_its_own_code(api_app, role_keys) -> None:
    from sqlalchemy import update

    vault = api_app.state.vault
    key, record = vault.create_api_key("reviewer", "nameless")
    with vault.store.begin() as conn:  # only a key written to the store by hand can lack a name
        conn.execute(update(api_keys).where(api_keys.c.prefix == record["prefix"]).values(name="  "))
    async with asgi_client(api_app) as c:
        r = await c.post(
            "/api/v1/review/CASE-1/decisions", json={"candidate": 1, "decision": "confirm"}, headers=auth(key)
        )
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["code"] == "reviewer_required"
    assert "reviewer" in r.json()["error"]["message"]


def test_bad_api_settings_are_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from facevault.config import load_api_settings
    from facevault.errors import ConfigError

    monkeypatch.setenv("FACEVAULT_API_RATE_BURST", "lots")
    with pytest.raises(ConfigError) as err:
        load_api_settings()
    assert "lots" in err.value.message
    monkeypatch.setenv("FACEVAULT_API_RATE_BURST", "7")
    monkeypatch.setenv("FACEVAULT_API_KEEP_PHOTOS", "no")
    loaded = load_api_settings(max_files_per_request=3)
    assert (loaded.rate_burst, loaded.keep_photos, loaded.max_files_per_request) == (7, False, 3)


async def test_a_route_with_caller_and_vault_authenticates_once(vault) -> None:  # type: ignore[no-untyped-def]
    app = create_app(vault, settings=TEST_SETTINGS.with_overrides(rate_per_minute=60, rate_burst=2))
    key = auth(vault.create_api_key("reviewer", "r")[0])
    async with asgi_client(app) as c:
        replies = [await c.post("/api/v1/login", headers=key) for _ in range(3)]  # one token each
    assert [r.status_code for r in replies] == [200, 200, 429]
