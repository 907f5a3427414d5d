"""Work on MediaImports: one object's work in order, different objects' at once, bounded."""

from __future__ import annotations

import asyncio

from mediaimport_operator.serial import Serial


def test_one_objects_work_runs_in_order_and_others_run_meanwhile() -> None:
    done: list[str] = []

    async def main() -> None:
        serial = Serial(limit=4)
        slow_started = asyncio.Event()

        async def slow() -> None:
            slow_started.set()
            await asyncio.sleep(0.05)
            done.append("a1")

        async def record(label: str) -> None:
            done.append(label)

        await serial.submit("a", slow)
        await serial.submit("a", lambda: record("a2"))
        await slow_started.wait()
        await serial.submit("b", lambda: record("b1"))
        await serial.idle()
        assert len(serial) == 0

    asyncio.run(main())
    assert done.index("b1") < done.index("a1") < done.index("a2")


def test_a_failing_work_does_not_stop_the_next() -> None:
    done: list[str] = []

    async def main() -> None:
        serial = Serial(limit=1)

        async def fail() -> None:
            raise RuntimeError("one odd object")

        async def record() -> None:
            done.append("next")

        await serial.submit("a", fail)
        await serial.submit("a", record)
        await serial.submit("b", record)
        await serial.idle()

    asyncio.run(main())
    assert done == ["next", "next"]


def test_at_most_limit_objects_at_once_and_submit_waits_for_a_slot() -> None:
    running: list[int] = []
    peak = 0

    async def main() -> None:
        nonlocal peak
        serial = Serial(limit=3)
        gate = asyncio.Event()

        async def work() -> None:
            nonlocal peak
            running.append(1)
            peak = max(peak, len(running))
            await gate.wait()
            running.pop()

        for index in range(3):
            await serial.submit(f"k{index}", work)
        fourth = asyncio.create_task(serial.submit("k3", work))
        await asyncio.sleep(0.05)
        assert not fourth.done()  # waits: the watch reading events waits with it
        await serial.submit("k0", work)  # a busy object's work queues without a slot
        gate.set()
        await fourth
        await serial.idle()

    asyncio.run(main())
    assert peak == 3
