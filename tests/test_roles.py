"""The role matrix: every API route x every role, generated from the app's own routes, so a new
endpoint is covered (and must be added to POLICY) the moment it exists."""

from __future__ import annotations

import re

import pytest

from facevault.api.app import api_routes, route_roles
from facevault.config import ROLES

from . import test_api_support as support
from .test_api_support import asgi_client, auth

anyio_backend, api_app, role_keys = support.anyio_backend, support.api_app, support.role_keys  # fixtures

pytestmark = pytest.mark.anyio

ALL = set(ROLES)
# The intended policy, written out by hand: (method, path) -> roles allowed. Admin may do everything.
BROWSE = {"admin", "enroller", "reviewer", "searcher"}
POLICY: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/v1/me"): ALL,
    ("POST", "/api/v1/login"): ALL,
    ("GET", "/api/v1/collections"): ALL,
    ("POST", "/api/v1/collections"): {"admin"},
    ("GET", "/api/v1/collections/{collection}"): ALL,
    ("DELETE", "/api/v1/collections/{collection}"): {"admin"},
    ("PUT", "/api/v1/collections/{collection}/keep-crops"): {"admin"},
    ("GET", "/api/v1/collections/{collection}/subjects"): {"admin", "enroller", "reviewer"},
    ("POST", "/api/v1/collections/{collection}/subjects"): {"admin", "enroller"},
    ("GET", "/api/v1/collections/{collection}/subjects/{subject}"): {"admin", "enroller", "reviewer"},
    ("DELETE", "/api/v1/collections/{collection}/subjects/{subject}"): {"admin", "enroller"},
    ("POST", "/api/v1/collections/{collection}/subjects/{subject}/samples"): {"admin", "enroller"},
    # the same subject named by its external id only (never guessed as an internal id)
    ("GET", "/api/v1/collections/{collection}/subjects/by-external-id/{external_id}"): {
        "admin",
        "enroller",
        "reviewer",
    },
    ("DELETE", "/api/v1/collections/{collection}/subjects/by-external-id/{external_id}"): {
        "admin",
        "enroller",
    },
    ("GET", "/api/v1/collections/{collection}/subjects/by-external-id/{external_id}/consent"): {
        "admin",
        "enroller",
    },
    ("POST", "/api/v1/collections/{collection}/subjects/by-external-id/{external_id}/consent/withdraw"): {
        "admin",
        "enroller",
    },
    ("GET", "/api/v1/collections/{collection}/subjects/{subject}/samples/{sample_id}/thumbnail"): {
        "admin",
        "enroller",
        "searcher",
        "reviewer",
    },
    ("POST", "/api/v1/collections/{collection}/search"): {"admin", "searcher"},
    ("POST", "/api/v1/verify"): {"admin", "searcher"},
    # where the faces are, no identity: enrollers check photos, searchers check probes
    ("POST", "/api/v1/detect"): {"admin", "enroller", "searcher"},
    ("GET", "/api/v1/audit"): {"admin", "auditor"},
    ("GET", "/api/v1/review"): {"admin", "reviewer"},
    ("GET", "/api/v1/review/{case_id}/probe"): {"admin", "reviewer"},
    ("POST", "/api/v1/collections/{collection}/search/annotated"): {"admin", "searcher"},
    ("DELETE", "/api/v1/collections/{collection}/subjects/{subject}/samples/{sample_id}"): {
        "admin",
        "enroller",
    },
    ("POST", "/api/v1/collections/{collection}/subjects/{subject}/samples/{sample_id}/move"): {
        "admin",
        "enroller",
    },
    ("GET", "/api/v1/audit/verify"): {"admin", "auditor"},
    ("GET", "/api/v1/audit/export"): {"admin", "auditor"},
    ("POST", "/api/v1/audit/verify"): {"admin", "auditor"},  # against a signed checkpoint
    ("POST", "/api/v1/audit/checkpoint"): {"admin", "auditor"},
    ("POST", "/api/v1/audit/acknowledge"): {"admin"},  # an admin's audited statement about a break
    # privacy: consent and opt-out belong with the people who handle subjects (and may erase them)
    ("GET", "/api/v1/collections/{collection}/subjects/{subject}/consent"): {"admin", "enroller"},
    ("POST", "/api/v1/collections/{collection}/subjects/{subject}/consent/withdraw"): {"admin", "enroller"},
    ("POST", "/api/v1/optout"): {"admin", "enroller"},
    ("POST", "/api/v1/retention/sweep"): {"admin"},
    ("PUT", "/api/v1/collections/{collection}/retention"): {"admin"},
    ("GET", "/api/v1/reports/processing"): {"admin", "auditor"},
    ("POST", "/api/v1/template-keys/rotate"): {"admin"},
    # human review: the reviewer is the calling key
    ("GET", "/api/v1/review/{case_id}"): {"admin", "reviewer"},
    ("POST", "/api/v1/review/{case_id}/decisions"): {"admin", "reviewer"},
    ("GET", "/api/v1/keys"): {"admin"},
    ("POST", "/api/v1/keys"): {"admin"},
    ("DELETE", "/api/v1/keys/{prefix}"): {"admin"},
    # photo libraries: admin creates and erases, enrollers add and curate, searchers search
    ("GET", "/api/v1/libraries"): BROWSE,
    ("POST", "/api/v1/libraries"): {"admin"},
    ("POST", "/api/v1/libraries/{library}/photos"): {"admin", "enroller"},
    ("GET", "/api/v1/libraries/{library}/people"): BROWSE,
    ("GET", "/api/v1/libraries/{library}/people/{person}"): BROWSE,
    ("GET", "/api/v1/libraries/{library}/faces/{face_id}/crop"): BROWSE,
    ("POST", "/api/v1/libraries/{library}/people/{person}/name"): {"admin", "enroller"},
    ("POST", "/api/v1/libraries/{library}/people/{person}/merge"): {"admin", "enroller"},
    ("POST", "/api/v1/libraries/{library}/people/{person}/split"): {"admin", "enroller"},
    ("POST", "/api/v1/libraries/{library}/faces/{face_id}/move"): {"admin", "enroller"},
    ("POST", "/api/v1/libraries/{library}/people/{person}/remove/{face_id}"): {"admin", "enroller"},
    ("POST", "/api/v1/libraries/{library}/people/{person}/hide"): {"admin", "enroller"},
    ("POST", "/api/v1/libraries/{library}/recluster"): {"admin", "enroller"},
    ("DELETE", "/api/v1/libraries/{library}/people/{person}"): {"admin"},
    ("POST", "/api/v1/libraries/{library}/search"): {"admin", "searcher"},
    ("POST", "/api/v1/libraries/{library}/uploads"): {"admin", "enroller"},
    ("GET", "/api/v1/libraries/{library}/photos/{photo_id}"): BROWSE,
    ("POST", "/api/v1/libraries/{library}/people/{person}/feature"): {"admin", "enroller"},
    ("GET", "/api/v1/collections/-/choices"): {"admin"},
}
# The retention policy must be public (BIPA 740 ILCS 14/15(a)): no key.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/api/v1/retention/policy")}
PATH_VALUES = {
    "library": "no-such-library",
    "person": "1",
    "face_id": "1",
    "photo_id": "1",
    "collection": "no-such-collection",
    "subject": "1",
    "sample_id": "1",
    "prefix": "00000000",
    "case_id": "no-such-case",
    "external_id": "no-such-id",
}


def _endpoints(app) -> list[tuple[str, str, tuple[str, ...] | None]]:  # type: ignore[no-untyped-def]
    out = []
    for route in api_routes(app.routes):
        if not route.include_in_schema:
            continue  # the web UI's HTML pages
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            out.append((method, route.path, route_roles(route)))
    return out


def test_every_api_route_declares_roles_and_matches_the_policy(api_app) -> None:
    seen = set()
    for method, path, roles in _endpoints(api_app):
        seen.add((method, path))
        if (method, path) in PUBLIC:
            assert roles is None
            continue
        assert path.startswith("/api/v1/"), path
        assert roles is not None, f"{method} {path} declares no role"
        assert (method, path) in POLICY, f"{method} {path} is new: add its roles to POLICY"
        assert set(roles) == POLICY[(method, path)], f"{method} {path}"
    assert seen == set(POLICY) | PUBLIC


async def test_role_matrix_is_enforced(api_app, role_keys) -> None:
    endpoints = [(m, p, r) for m, p, r in _endpoints(api_app) if r is not None]
    assert len(endpoints) >= 29
    async with asgi_client(api_app) as c:
        for method, path, roles in endpoints:
            url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
            anonymous = await c.request(method, url)
            assert anonymous.status_code == 401, f"{method} {path} without a key"
            for role in ROLES:
                r = await c.request(method, url, headers=auth(role_keys[role]))
                where = f"{role} {method} {path}: {r.status_code} {r.text[:200]}"
                if role in roles:
                    assert r.status_code not in (401, 403), where
                    assert r.status_code < 500, where
                else:
                    assert r.status_code == 403, where
                    assert r.json()["error"]["code"] == "forbidden", where


def test_the_key_schema_offers_exactly_the_roles() -> None:
    from typing import get_args

    from facevault.api.schemas import KeyCreate

    assert get_args(KeyCreate.model_fields["role"].annotation) == ROLES
