"""How many of the operator's API requests may be in flight at once, by lane.

In a burst of new imports the API server is the shared bottleneck, and every import
waits for its Job to be created before anything else can happen. So Job creations have
connections of their own (twice the ordinary ones), and while any is waiting, in flight,
or started less than ``quiet_s`` ago, ordinary requests (status writes, reads) go only a
``trickle`` at a time: they keep moving, so nothing starves in a steady stream of
creations, but they do not flood the API server while creations wait. The leader Lease
has lanes of its own and never waits behind either.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator, Callable


class Lane(enum.Enum):
    """Which share of the connections a request uses, and whether it gives way."""

    WORK = "work"  # status writes, reads: a trickle while creations are pending
    CREATE = "create"  # creating an import's Job: lanes of its own, goes first
    LEASE = "lease"  # leader election: lanes of its own, never held back


LEASE_LANES = 2


class Lanes:
    def __init__(
        self,
        work: int,
        *,
        trickle: int = 2,
        quiet_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.work, self.trickle, self.quiet_s = work, min(trickle, work), quiet_s
        self._clock = clock
        self.create = 2 * work
        self._create = asyncio.Semaphore(self.create)
        self._lease = asyncio.Semaphore(LEASE_LANES)
        self._creations = 0  # waiting or in flight
        self._last_creation = float("-inf")
        self._work_in_flight = 0
        # Replaced each time it is set: a waiter holds the one current when it checked,
        # so a change between its check and its wait cannot be missed.
        self._changed = asyncio.Event()

    @property
    def connections(self) -> int:
        """The most requests that can be in flight at once (the connection pool's size)."""
        return self.work + self.create + LEASE_LANES

    def creating(self) -> bool:
        """Job creations are waiting, in flight, or just ended (a burst is under way)."""
        return bool(self._creations) or self._clock() < self._last_creation + self.quiet_s

    def work_allowed(self) -> int:
        """How many ordinary requests may be in flight now."""
        return self.trickle if self.creating() else self.work

    @contextlib.asynccontextmanager
    async def slot(self, lane: Lane) -> AsyncIterator[None]:
        if lane is Lane.LEASE:
            async with self._lease:
                yield
        elif lane is Lane.CREATE:
            self._creations += 1
            self._last_creation = self._clock()
            try:
                async with self._create:
                    yield
            finally:
                self._creations -= 1
                if not self._creations:
                    self._notify()
        else:
            await self._enter_work()
            try:
                yield
            finally:
                self._work_in_flight -= 1
                self._notify()

    async def _enter_work(self) -> None:
        while self._work_in_flight >= self.work_allowed():
            timeout = None
            if not self._creations:  # only the quiet moment after the last one is left
                timeout = max(0.0, self._last_creation + self.quiet_s - self._clock())
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        self._work_in_flight += 1

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
