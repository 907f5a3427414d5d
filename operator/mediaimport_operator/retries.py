"""One queue of work to try again later, for every import at once (pure, no I/O).

What lands here: an import whose row could not be written (Postgres down, or the row
refused), an import that could not be started or whose Job event could not be handled,
the last body of an import deleted while its row was behind (its row is written from that
body), and the finalizer work of an import whose objects go with it. One background loop
takes what is due; there is no timer, task or finalizer per import, and no retry budget
that runs out: each entry is retried with a growing pause (``base`` doubling up to
``cap``) until it is done or its import is gone.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


class Work(enum.Enum):
    START = "start"  # create the import's Job (and claim its row)
    SYNC = "sync"  # converge status and row with the Job
    RECORD_DELETED = "record-deleted"  # write the row of a deleted import from its last body
    FINALIZER = "finalizer"  # add the finalizer, or delete the objects and remove it


@dataclass
class Entry:
    work: Work
    namespace: str
    name: str
    uid: str
    due: float
    attempt: int = 1
    body: Json | None = None  # RECORD_DELETED: the deleted import's last body

    @property
    def key(self) -> tuple[Work, str, str]:
        return (self.work, self.namespace, self.name)


class RetryQueue:
    def __init__(
        self, *, base: float, cap: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.base, self.cap = base, max(cap, base)
        self._clock = clock
        self._entries: dict[tuple[Work, str, str], Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)))

    def add(
        self,
        work: Work,
        namespace: str,
        name: str,
        uid: str,
        *,
        attempt: int = 1,
        delay: float | None = None,
        body: Json | None = None,
    ) -> Entry:
        """Schedule ``work`` (again); an entry already queued keeps its earlier time."""
        wait = self.delay(attempt) if delay is None else delay
        due = self._clock() + wait
        key = (work, namespace, name)
        old = self._entries.get(key)
        if old is not None and old.uid == uid:
            old.due = min(old.due, due)
            old.attempt = max(old.attempt, attempt)
            old.body = body if body is not None else old.body
            return old
        entry = self._entries[key] = Entry(work, namespace, name, uid, due, attempt, body)
        return entry

    def discard(self, work: Work, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Drop the entry of ``work`` for that name (only if it is ``uid``'s, when given)."""
        entry = self._entries.get((work, namespace, name))
        if entry is not None and uid in (None, entry.uid):
            del self._entries[entry.key]

    def take_due(self) -> list[Entry]:
        """Remove and return the entries whose time has come, earliest first."""
        now = self._clock()
        due = sorted((e for e in self._entries.values() if e.due <= now), key=lambda e: e.due)
        for entry in due:
            del self._entries[entry.key]
        return due

    def hurry(self, work: Work) -> None:
        """Make every entry of ``work`` due now (e.g. the database answered again)."""
        now = self._clock()
        for entry in self._entries.values():
            if entry.work is work:
                entry.due = min(entry.due, now)

    def pending(self, work: Work) -> list[Entry]:
        return [e for e in self._entries.values() if e.work is work]

    def next_due(self) -> float | None:
        return min((e.due for e in self._entries.values()), default=None)
