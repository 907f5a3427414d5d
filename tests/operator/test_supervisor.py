"""Background loops survive their errors; the supervisor restarts a loop that ends, and an
essential one's end ends the process (here: the callback main.py uses to stop)."""

from __future__ import annotations

import asyncio

from mediaimport_operator.supervisor import ENDED, RUNNING, Supervisor, repeat


def test_a_loop_survives_any_error_of_its_work() -> None:
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) % 2:
            raise RuntimeError("an odd object")  # not an error anyone expected

    async def main() -> None:
        task = asyncio.create_task(repeat("odd", work, 0.01))
        await asyncio.sleep(0.2)
        assert not task.done()
        task.cancel()

    asyncio.run(main())
    assert len(rounds) > 5


def test_an_ended_loop_is_restarted_and_an_essential_one_ends_everything() -> None:
    ended: list[str] = []
    starts: list[str] = []

    async def brief() -> None:
        starts.append("brief")
        raise RuntimeError("ended by a bug")

    async def renew() -> None:
        await asyncio.sleep(0.05)  # returns: leadership is over

    async def main() -> None:
        supervisor = Supervisor(ended.append)
        supervisor.start("brief", brief)
        supervisor.start("lease", renew, essential=True)
        assert supervisor.states() == {"brief": RUNNING, "lease": RUNNING}
        await asyncio.sleep(1.3)
        assert starts.count("brief") >= 2  # restarted after its pause
        assert supervisor.states()["lease"] == ENDED
        assert not supervisor.healthy()
        await supervisor.stop()

    asyncio.run(main())
    assert ended == ["lease"]
