"""What free-form metadata (``spec.metadata``) Kubernetes and Postgres can hold.

The API refuses metadata that breaks these rules (``problem``); a MediaImport made
some other way (kubectl) may still carry it, and its row keeps what can be kept
(``storable``). Both walk without recursion: the API server accepts objects nested
up to 10,000 levels.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_DEPTH = 32
TOO_DEEP = f"(nested deeper than {MAX_DEPTH} levels)"
_INT64 = range(-(2**63), 2**63)
# Postgres refuses \u0000 in text and JSONB; lone surrogates cannot be encoded to UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why Postgres could not store ``text``, if it could not."""
    if "\x00" in text:
        return "metadata text must not contain NUL characters (\\u0000)"
    if _UNSTORABLE.search(text):
        return "metadata text must be valid Unicode (no lone surrogates)"
    return None


def storable_text(text: str) -> str:
    """``text`` with what Postgres cannot store replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):  # Kubernetes decodes JSON numbers into 64 bits
        return None if value in _INT64 else "metadata numbers must fit in 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else (
            "metadata numbers must be finite (no NaN or Infinity)")
    return f"metadata cannot hold a {type(value).__name__}"


def problem(metadata: dict[str, Any]) -> str | None:
    """What in ``metadata`` Kubernetes or Postgres cannot store, if anything."""
    pending: list[tuple[Any, int]] = [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if not isinstance(value, dict | list):
            found = _scalar_problem(value)
        elif depth > MAX_DEPTH:
            found = f"metadata nests deeper than {MAX_DEPTH} levels"
        else:
            keys = [key for key in value if isinstance(key, str)] if isinstance(value, dict) else []
            found = next(filter(None, map(text_problem, keys)), None)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
        if found:
            return found
    return None


def storable(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata`` Postgres can store: text cleaned, nesting cut at MAX_DEPTH."""
    root: dict[str, Any] = {}
    # (source container, its copy, its depth): each copy is filled in when popped.
    pending: list[tuple[Any, Any, int]] = [(metadata, root, 1)]
    while pending:
        source, copy, depth = pending.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if isinstance(value, dict | list):
                if depth >= MAX_DEPTH:
                    child: Any = TOO_DEEP
                else:
                    child = {} if isinstance(value, dict) else []
                    pending.append((value, child, depth + 1))
            elif isinstance(value, str):
                child = storable_text(value)
            elif isinstance(value, float) and not math.isfinite(value):
                child = None
            else:
                child = value
            if isinstance(copy, dict):
                copy[storable_text(str(key))] = child
            else:
                copy.append(child)
    return root
