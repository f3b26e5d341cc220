"""Property-based run over the OpenAPI document (schemathesis strategies driven by hypothesis): with a
valid admin key, no generated request makes the server answer 5xx, and every error is JSON.

Bounded: a few dozen examples per operation (well under two minutes in all). The operations are walked
in one test rather than with schemathesis' pytest plugin, which does not support pytest 9 yet."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from facevault.api import create_app

from .test_api_support import TEST_SETTINGS

EXAMPLES = 50


@pytest.mark.slow
def test_no_5xx_for_any_generated_request(vault) -> None:  # type: ignore[no-untyped-def]
    vault.create_collection("g")
    # no folder of the server may be added to a library by path: a generated path must not walk the disk
    app = create_app(vault, settings=TEST_SETTINGS.with_overrides(library_roots=""))
    headers = {"X-API-Key": vault.create_api_key("admin", "fuzz")[0]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    failures: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=headers)
            body = response.content[:300].decode("utf-8", "replace")  # images are answers too
            where = f"{case.method} {case.formatted_path} -> {response.status_code}: {body}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert {"code", "message"} <= set(response.json()["error"]), where

        try:
            check()
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)
