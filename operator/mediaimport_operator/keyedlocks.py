"""One asyncio lock per key, kept only while someone holds it or waits for it.

The operator serialises the work on each import with a lock of its own. A map that keeps
every import's lock grows with every import ever handled (2,000 finished imports, 2,000
locks); this one forgets a key the moment its last holder leaves, so its size follows the
work in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class _Entry:
    lock: asyncio.Lock
    users: int = 0  # holding or waiting


class KeyedLocks:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._entries.get(key) is entry:
                del self._entries[key]
