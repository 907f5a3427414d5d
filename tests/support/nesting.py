"""Values nested many levels deep, built without recursion (as hostile input arrives)."""

from __future__ import annotations

from typing import Any


def nested(depth: int, leaf: Any = "leaf") -> Any:
    """``leaf`` inside ``depth`` one-item lists."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value
