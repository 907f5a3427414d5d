"""Replicate predictions → output URLs, deterministic names and asset ids, metadata (pure)."""

from __future__ import annotations

import re
import uuid

import pytest
from mediaimport_api.replicate import (
    MAX_OUTPUTS,
    MAX_PROMPT_BYTES,
    PredictionError,
    asset_id,
    import_name,
    output_urls,
    parse_prediction,
    prediction_from_body,
)
from support.nesting import nested

A, B, C = "https://r.test/a.mp4", "https://r.test/b.png", "http://r.test/c.wav"


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        (A, [A]),
        ([A, B], [A, B]),
        ({"video": A, "image": B}, [B, A]),  # keys in order: image, video
        ({"frames": [A, B], "audio": {"track": C}}, [C, A, B]),
        (["not a url", 3, None, A], [A]),
        (None, []),
        ("data:video/mp4;base64,AAAA", []),
    ],
)
def test_output_urls_from_strings_lists_and_objects(output: object, urls: list[str]) -> None:
    assert output_urls(output) == urls


def test_names_are_deterministic_valid_and_per_user_and_index() -> None:
    name = import_name("user-1", "ufawqhfynnddngldkgtslldrkq", 0)
    assert name == import_name("user-1", "ufawqhfynnddngldkgtslldrkq", 0)
    assert name.startswith("rep-ufawqhfynnddngldkgtslldrkq-0-")
    assert import_name("user-2", "ufawqhfynnddngldkgtslldrkq", 0) != name
    assert import_name("user-1", "ufawqhfynnddngldkgtslldrkq", 1) != name
    weird = import_name("u", "ID/with Spaces_" + "x" * 300, 99)
    for candidate in (name, weird, import_name("u", "!!!", 0)):
        assert len(candidate) <= 63
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", candidate), candidate


def test_asset_ids_are_deterministic_uuids() -> None:
    first = asset_id("user-1", "p", 0)
    assert first == asset_id("user-1", "p", 0)
    assert str(uuid.UUID(first)) == first
    assert first not in (asset_id("user-2", "p", 0), asset_id("user-1", "p", 1))


def test_a_succeeded_prediction_carries_outputs_and_the_seed_metadata() -> None:
    prediction = parse_prediction({
        "id": "p1", "status": "succeeded", "model": "acme/video", "version": "v9",
        "input": {"prompt": "a sunset", "seed": 3}, "output": [A, B], "logs": "...",
    })
    assert prediction.outputs == (A, B)
    assert prediction.metadata == {
        "aiGenerated": True, "prompt": "a sunset", "model": "acme/video",
        "source": "ai_generation", "predictionId": "p1",
    }


@pytest.mark.parametrize("status", ["starting", "processing", "failed", "canceled"])
def test_other_statuses_have_no_outputs(status: str) -> None:
    assert parse_prediction({"id": "p", "status": status, "output": [A]}).outputs == ()


@pytest.mark.parametrize(
    "document",
    [[], "x", {"status": "succeeded"}, {"id": "", "status": "succeeded"},
     {"id": "p", "status": "exploded"}, {"id": "p" * 201, "status": "succeeded"},
     {"id": "p", "status": "succeeded", "output": [A] * (MAX_OUTPUTS + 1)},
     {"id": "p\x00", "status": "succeeded"}, {"id": "p\nq", "status": "succeeded"}],
)
def test_bodies_that_are_not_predictions_are_refused(document: object) -> None:
    with pytest.raises(PredictionError):
        parse_prediction(document)


def test_outputs_nested_a_few_levels_are_found_deeper_ones_refused() -> None:
    assert output_urls(nested(8, A)) == [A]
    for depth in (9, 900, 50_000):  # 900 levels once overflowed Python's stack: a 500
        with pytest.raises(PredictionError, match="deeper than 8"):
            parse_prediction({"id": "p", "status": "succeeded", "output": nested(depth, A)})


def test_metadata_from_a_prediction_is_text_postgres_can_store_and_bounded() -> None:
    prediction = parse_prediction({
        "id": "p1", "status": "succeeded", "output": A, "model": {"not": "text"},
        "version": "v" * 500, "input": {"prompt": "a\x00b\ud800c" + "é" * 10_000},
    })
    prompt = prediction.metadata["prompt"]
    assert prompt.startswith("a\ufffdb\ufffdc")
    assert len(prompt.encode()) <= MAX_PROMPT_BYTES
    assert prediction.metadata["promptTruncated"] is True
    assert prediction.metadata["model"] == "v" * 200
    short = parse_prediction({"id": "p2", "status": "succeeded", "output": A,
                              "input": {"prompt": "a cat"}})
    assert short.metadata["prompt"] == "a cat" and "promptTruncated" not in short.metadata


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b'{"id": "p", "output": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests too deeply"),
     (b"\xff\xfe{}", "not JSON"), (b"{broken", "not JSON"), (b"[]", "not a prediction")],
)
def test_raw_bodies_that_are_not_predictions_say_why(raw: bytes, message: str) -> None:
    with pytest.raises(PredictionError, match=message):
        prediction_from_body(raw)
