"""Per-import locks serialise the work on one import and are forgotten once it is done."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from mediaimport_operator.keyedlocks import KeyedLocks
from mediaimport_operator.reconcile import Reconciler
from mediaimport_operator.settings import Settings


def test_a_key_is_held_by_one_at_a_time_and_forgotten_after() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: str, tag: str) -> None:
        async with locks.hold(key):
            order.append(f"{tag}+")
            await asyncio.sleep(0.01)
            order.append(f"{tag}-")

    async def scenario() -> int:
        await asyncio.gather(work("a", "1"), work("a", "2"), work("b", "3"))
        return len(locks)

    assert asyncio.run(scenario()) == 0
    first = order.index("1+")
    assert order[first + 1] == "1-" or order[first + 1] == "3+"  # "2" never inside "1"
    assert order.index("2+") > order.index("1-")


def test_a_failure_inside_frees_the_key() -> None:
    locks = KeyedLocks()

    async def scenario() -> int:
        try:
            async with locks.hold("a"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        return len(locks)

    assert asyncio.run(scenario()) == 0


def test_the_reconciler_keeps_no_lock_of_imports_it_is_done_with() -> None:
    rec = Reconciler(settings=Settings(), kube=cast(Any, None), db=None,
                     post_event=lambda *_: None)

    async def scenario() -> int:
        async def one(index: int) -> None:
            async with rec._lock("media", f"import-{index}"):
                await asyncio.sleep(0)

        await asyncio.gather(*(one(index) for index in range(2000)))
        return len(rec._locks)

    assert asyncio.run(scenario()) == 0
