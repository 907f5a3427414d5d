"""Free-form metadata: what Kubernetes and Postgres can hold (pure)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from mediaimport_operator.metadata import MAX_DEPTH, TOO_DEEP, problem, storable
from support.nesting import nested


def test_storable_metadata_keeps_what_postgres_takes_as_it_is() -> None:
    metadata = {"prompt": "ünïcode ✓", "n": 2**63 - 1, "f": 1.5, "yes": True, "none": None,
                "list": [1, {"a": ["b", "c"]}, []], "deep": nested(MAX_DEPTH - 1)}
    assert storable(metadata) == metadata
    assert problem(metadata) is None


def test_text_postgres_refuses_becomes_the_replacement_character() -> None:
    metadata = {"note\x00": ["a\x00b", {"s": "x\ud800y"}], "nan": float("nan")}
    assert storable(metadata) == {"note\ufffd": ["a\ufffdb", {"s": "x\ufffdy"}], "nan": None}
    assert metadata["note\x00"][0] == "a\x00b"  # a copy: the spec is left alone


@pytest.mark.parametrize("depth", [MAX_DEPTH, 5_000])
def test_nesting_is_cut_at_the_limit_without_recursion(depth: int) -> None:
    limit = sys.getrecursionlimit()
    value: Any = storable({"deep": nested(depth)})["deep"]
    levels = 1
    while isinstance(value, list):
        levels, value = levels + 1, value[0]
    assert (levels, value) == (MAX_DEPTH, TOO_DEEP)
    assert sys.getrecursionlimit() == limit
    json.dumps(storable({"deep": nested(depth)}))  # Postgres gets JSON Python can write


@pytest.mark.parametrize(
    ("metadata", "message"),
    [({"a": "\x00"}, "NUL"), ({"\x00": 1}, "NUL"), ({"a": "\udfff"}, "Unicode"),
     ({"a": float("inf")}, "finite"), ({"a": 2**64}, "64 bits"),
     ({"a": nested(MAX_DEPTH)}, f"deeper than {MAX_DEPTH}"), ({"a": nested(50_000)}, "deeper"),
     ({"a": object()}, "cannot hold")],
)
def test_problems_are_named(metadata: dict[str, Any], message: str) -> None:
    found = problem(metadata)
    assert found is not None and message in found
