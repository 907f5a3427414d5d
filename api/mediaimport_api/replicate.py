"""Replicate predictions → imports (pure): output URLs, names, asset ids, metadata.

An import made from a delivery is named from the user, the prediction id and the
output's index, and its asset id is derived the same way, so a redelivery (or
two deliveries at once) maps to the same MediaImport and row and creates nothing new.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

SUCCEEDED = "succeeded"
KNOWN_STATUSES = frozenset({"starting", "processing", SUCCEEDED, "failed", "canceled"})
MAX_OUTPUTS = 100
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
    always gives the same indexes.
    """
    if isinstance(output, str):
        return [output] if output.lower().startswith(("http://", "https://")) else []
    if isinstance(output, list):
        return [url for item in output for url in output_urls(item)]
    if isinstance(output, dict):
        return [url for key in sorted(output) for url in output_urls(output[key])]
    return []


def prediction_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """The metadata stored with each output, as the seed stored it."""
    inputs = document.get("input")
    prompt = inputs.get("prompt") if isinstance(inputs, dict) else None
    return {
        "aiGenerated": True,
        "prompt": prompt if isinstance(prompt, str) else None,
        "model": document.get("model") or document.get("version"),
        "source": "ai_generation",
        "predictionId": document["id"],
    }


def parse_prediction(document: Any) -> Prediction:
    if not isinstance(document, dict):
        raise PredictionError("the body is not a prediction object")
    prediction_id, status = document.get("id"), document.get("status")
    if not isinstance(prediction_id, str) or not prediction_id.strip():
        raise PredictionError("the prediction has no id")
    if len(prediction_id) > 200:
        raise PredictionError("the prediction id is longer than 200 characters")
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
