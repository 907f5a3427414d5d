"""Work on one object at a time, in the order it came; on different objects at once.

What a watch hands over is handled here: the events of one MediaImport one after the other
(an import deleted right after its creation is cancelled after it was started, never
before), those of different imports concurrently, and at most ``limit`` imports at a time —
beyond that, ``submit`` waits, and so the watch reading the events waits too: thousands of
live imports listed at once are taken a few at a time instead of all becoming tasks at
once. A key's task ends as soon as its work is done (no idle worker per object is kept),
and nothing of an object whose events need no work is ever held.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None]]


class Serial:
    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._queues: dict[str, deque[Work]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Keys with work queued or running."""
        return len(self._queues)

    async def submit(self, key: str, work: Work) -> None:
        """Queue ``work`` behind whatever ``key`` has queued (waits only for a free slot)."""
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(work)
            return
        await self._slots.acquire()
        queue = self._queues.get(key)  # the key may have got a queue while we waited
        if queue is not None:
            self._slots.release()
            queue.append(work)
            return
        self._queues[key] = deque([work])
        task = asyncio.create_task(self._drain(key), name=f"work on {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                work = queue.popleft()
                try:
                    await work()
                except Exception:  # one object's failure is not another's
                    log.exception("work on an object failed", extra={"key": key})
        finally:
            # No await between the last check of the queue and this: work submitted for the
            # key meanwhile would otherwise be lost.
            del self._queues[key]
            self._slots.release()

    async def idle(self) -> None:
        """Wait until no work is queued or running (for tests and a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel every key's work and wait for it to end."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
