"""schemathesis over the API's own OpenAPI document: generated requests (valid and not)
to every operation, with a real token; no answer may be a 5xx, and every answer must
match the document (status, content type, body schema).

Run against the quiet API (no operator), so the generated source URLs are never
fetched; waits are cut short so a generated ``wait=60`` does not hold the run. The
operations are driven with hypothesis directly (``APIOperation.as_strategy``): the
schema is only known once the API runs, inside a fixture.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from api_world import ApiServer
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_matches_the_document_and_none_is_a_5xx(
    quiet_api: ApiServer, mode: GenerationMode
) -> None:
    user = quiet_api.new_user("fuzz")
    schema = schemathesis.openapi.from_url(f"{quiet_api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9

    if mode is GenerationMode.NEGATIVE:  # nothing to get wrong without inputs
        operations = [op for op in operations if any(
            len(part) for part in (op.path_parameters, op.query, op.headers, op.body))]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            if case.query and "wait" in case.query:
                case.query["wait"] = 0
            case.call_and_validate(base_url=quiet_api.url, headers=quiet_api.auth(user),
                                   timeout=30, checks=CHECKS)

        exercise()
