"""Schemathesis against the API's own OpenAPI spec: requests generated from the schema (valid and
invalid) never get a 500, and every answer's status, content type, headers and body are the ones
the schema documents."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import save_checkpoint
from ferlab.serve import create_app

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import positive_data_acceptance  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    ckpt: Path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(ckpt))


def _operations():
    # The schema is read inside the test, not at collection (schemathesis's own pytest plugin needs
    # pytest internals that pytest 9 no longer has).
    return ["GET /healthz", "GET /readyz", "GET /v1/models", "POST /v1/predict", "POST /v1/predict/batch",
            "POST /v1/predict/annotated", "POST /predict", "POST /predict/annotated", "GET /health"]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_route_answers_as_its_schema_says(api_schema, mode):
    found = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in api_schema.get_all_operations())}
    assert sorted(found) == sorted(_operations())
    for name, op in found.items():
        if mode == "negative" and name.startswith("GET"):
            continue  # nothing to get wrong: no parameters, no body

        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(schemathesis.GenerationMode(mode)))
        def check(case):
            # Schema-valid bytes are rarely an image, so a valid request may rightly get 400: that check is off.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
