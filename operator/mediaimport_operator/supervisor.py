"""The operator's background loops, and what happens when one of them ends.

A loop's own work may fail in any way (an API server restart, a database error, a bug
on one odd object): the loop logs it, counts it, and goes on. The loops' tasks are
watched as well: one that ends anyway is restarted after a pause, unless it is
essential (the leader Lease), whose end ends the process. Each loop's state is on
``/healthz``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import metrics

log = logging.getLogger(__name__)

RUNNING, RESTARTING, ENDED = "running", "restarting", "ended"
_RESTART_PAUSE_S = 1.0


async def repeat(
    name: str,
    work: Callable[[], Awaitable[object]],
    interval: float,
    *,
    expected: tuple[type[Exception], ...] = (),
) -> None:
    """Run ``work`` every ``interval`` seconds for ever; an error of one round is logged
    (with its traceback unless it is one of the ``expected`` errors of the outside world)."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            metrics.LOOP_ERRORS.labels(name).inc()
            log.warning("background work failed; trying again in %gs", interval,
                        extra={"loop": name, "error": f"{type(error).__name__}: {error}"},
                        exc_info=not isinstance(error, expected))
        await asyncio.sleep(interval)


@dataclass
class _Loop:
    name: str
    start: Callable[[], Awaitable[None]]
    essential: bool
    task: asyncio.Task[None] | None = None
    state: str = RUNNING


class Supervisor:
    def __init__(self, on_essential_end: Callable[[str], None]) -> None:
        self._on_essential_end = on_essential_end
        self._loops: dict[str, _Loop] = {}
        self._stopping = False

    def start(
        self, name: str, run: Callable[[], Awaitable[None]], *, essential: bool = False
    ) -> None:
        """Run ``run()`` as a watched task (a new one each time it is restarted)."""
        loop = self._loops[name] = _Loop(name, run, essential)
        self._launch(loop)

    def _launch(self, loop: _Loop) -> None:
        loop.state = RUNNING
        loop.task = asyncio.create_task(self._guard(loop), name=loop.name)
        loop.task.add_done_callback(functools.partial(self._ended, loop))

    @staticmethod
    async def _guard(loop: _Loop) -> None:
        await loop.start()

    def _ended(self, loop: _Loop, task: asyncio.Task[None]) -> None:
        if self._stopping or self._loops.get(loop.name) is not loop:
            return
        error = None if task.cancelled() else task.exception()
        detail = "cancelled" if task.cancelled() else repr(error) if error else "returned"
        metrics.LOOP_ERRORS.labels(loop.name).inc()
        if loop.essential:
            loop.state = ENDED
            log.error("essential background task ended: stopping",
                      extra={"loop": loop.name, "error": detail}, exc_info=error)
            self._on_essential_end(loop.name)
            return
        loop.state = RESTARTING
        log.error("background task ended; restarting it",
                  extra={"loop": loop.name, "error": detail}, exc_info=error)

        async def restart() -> None:
            await asyncio.sleep(_RESTART_PAUSE_S)
            if not self._stopping and self._loops.get(loop.name) is loop:
                self._launch(loop)

        asyncio.get_running_loop().create_task(restart())

    def states(self) -> dict[str, str]:
        return {name: loop.state for name, loop in sorted(self._loops.items())}

    def healthy(self) -> bool:
        return all(loop.state != ENDED for loop in self._loops.values() if loop.essential)

    async def stop(self, *names: str) -> None:
        """Cancel the named loops (all when none is named) and wait for them."""
        chosen = [self._loops[n] for n in names if n in self._loops] if names else list(
            self._loops.values()
        )
        if not names:
            self._stopping = True
        for loop in chosen:
            self._loops.pop(loop.name, None)
            if loop.task is not None:
                loop.task.cancel()
        for loop in chosen:
            if loop.task is not None:
                await asyncio.gather(loop.task, return_exceptions=True)
