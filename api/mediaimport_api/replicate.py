"""Replicate predictions → imports (pure): output URLs, names, asset ids, metadata.

An import made from a delivery is named from the user, the prediction id and the
output's index, and its asset id is derived the same way, so a redelivery (or
two deliveries at once) maps to the same MediaImport and row and creates nothing new.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from mediaimport_operator.metadata import storable_text

SUCCEEDED = "succeeded"
KNOWN_STATUSES = frozenset({"starting", "processing", SUCCEEDED, "failed", "canceled"})
MAX_OUTPUTS = 100
MAX_OUTPUT_DEPTH = 8
MAX_PROMPT_BYTES = 8 * 1024
MAX_MODEL_CHARS = 200
# The metadata keys a delivery adds to its URL's (prediction_metadata): an import made from
# a delivery holds the union, which the CRD bounds (MAX_METADATA_KEYS).
PREDICTION_METADATA_KEYS = frozenset(
    {"aiGenerated", "prompt", "promptTruncated", "model", "source", "predictionId"})
# A fixed namespace for the asset ids of webhook imports (uuid5).
_ASSET_NAMESPACE = uuid.UUID("5c0e7a3e-8f39-4d6b-9d0e-6d656469616d")
_UNSAFE = re.compile(r"[^a-z0-9]+")


class PredictionError(ValueError):
    pass


@dataclass(frozen=True)
class Prediction:
    id: str
    status: str
    outputs: tuple[str, ...]
    metadata: dict[str, Any]


def output_urls(output: Any) -> list[str]:
    """Every http(s) URL in ``output``: a string, a list, or an object holding URLs.

    Lists keep their order and objects are read in key order, so the same output
    always gives the same indexes. Walked without recursion; an output nesting more
    than MAX_OUTPUT_DEPTH levels is refused (no model's output looks like that).
    """
    urls: list[str] = []
    pending: list[tuple[Any, int]] = [(output, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if value.lower().startswith(("http://", "https://")):
                urls.append(value)
            continue
        if isinstance(value, dict):
            children = [value[key] for key in sorted(value)]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth >= MAX_OUTPUT_DEPTH:
            raise PredictionError(f"the output nests deeper than {MAX_OUTPUT_DEPTH} levels")
        pending.extend((child, depth + 1) for child in reversed(children))
    return urls


def _truncated(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, cut between characters."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def prediction_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """The metadata stored with each output, as the seed stored it.

    Text only, bounded: the prompt (whole prompts can be long) is kept up to
    MAX_PROMPT_BYTES and flagged ``promptTruncated`` beyond, the model name up to
    MAX_MODEL_CHARS, so every import's MediaImport and row stay small.
    """
    inputs = document.get("input")
    prompt = inputs.get("prompt") if isinstance(inputs, dict) else None
    model = next((value for value in (document.get("model"), document.get("version"))
                  if isinstance(value, str) and value), None)
    metadata: dict[str, Any] = {
        "aiGenerated": True,
        "prompt": None,
        "model": storable_text(model)[:MAX_MODEL_CHARS] if model else None,
        "source": "ai_generation",
        "predictionId": document["id"],
    }
    if isinstance(prompt, str):
        stored = storable_text(prompt)
        metadata["prompt"] = _truncated(stored, MAX_PROMPT_BYTES)
        if metadata["prompt"] != stored:
            metadata["promptTruncated"] = True
    return metadata


def prediction_from_body(raw: bytes) -> Prediction:
    """A delivery's raw body as a Prediction, or PredictionError saying why it is none."""
    try:
        document = json.loads(raw)
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise PredictionError("the body nests too deeply to be a prediction") from None
    except ValueError as error:  # not UTF-8, or not JSON
        raise PredictionError(f"the body is not JSON: {error}") from None
    return parse_prediction(document)


def parse_prediction(document: Any) -> Prediction:
    if not isinstance(document, dict):
        raise PredictionError("the body is not a prediction object")
    prediction_id, status = document.get("id"), document.get("status")
    if not isinstance(prediction_id, str) or not prediction_id.strip():
        raise PredictionError("the prediction has no id")
    if len(prediction_id) > 200:
        raise PredictionError("the prediction id is longer than 200 characters")
    if not prediction_id.isprintable():
        raise PredictionError("the prediction id contains control characters")
    if status not in KNOWN_STATUSES:
        raise PredictionError(f"unknown prediction status {status!r}")
    outputs = tuple(output_urls(document.get("output"))) if status == SUCCEEDED else ()
    if len(outputs) > MAX_OUTPUTS:
        raise PredictionError(f"the prediction has more than {MAX_OUTPUTS} output URLs")
    return Prediction(prediction_id, status, outputs, prediction_metadata(document))


def _digest(user: str, prediction_id: str, index: int) -> str:
    return hashlib.sha256(f"{user}\0{prediction_id}\0{index}".encode()).hexdigest()


def import_name(user: str, prediction_id: str, index: int) -> str:
    """``rep-<prediction id>-<index>-<hash of user, prediction, index>``, at most 56 chars."""
    stem = _UNSAFE.sub("", prediction_id.lower())[:32]
    suffix = f"{index}-{_digest(user, prediction_id, index)[:12]}"
    return f"rep-{stem}-{suffix}" if stem else f"rep-{suffix}"


def asset_id(user: str, prediction_id: str, index: int) -> str:
    return str(uuid.uuid5(_ASSET_NAMESPACE, _digest(user, prediction_id, index)))
