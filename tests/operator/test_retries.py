"""The retry queue (pure): one queue for every import, growing pauses, no budget that ends."""

from __future__ import annotations

from mediaimport_operator.retries import RetryQueue, Work


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_come_due_after_their_pause_and_only_once() -> None:
    clock = Clock()
    queue = RetryQueue(base=10, cap=120, clock=clock)
    queue.add(Work.SYNC, "media", "a", "uid-a")
    assert queue.take_due() == []
    clock.now += 10
    (entry,) = queue.take_due()
    assert (entry.work, entry.namespace, entry.name, entry.uid) == (Work.SYNC, "media", "a",
                                                                      "uid-a")
    assert queue.take_due() == [] and len(queue) == 0


def test_the_pause_doubles_up_to_the_cap_and_never_gives_up() -> None:
    clock = Clock()
    queue = RetryQueue(base=10, cap=120, clock=clock)
    delays = []
    attempt = 1
    for _ in range(40):
        entry = queue.add(Work.START, "media", "a", "uid-a", attempt=attempt)
        delays.append(entry.due - clock.now)
        clock.now = entry.due
        (taken,) = queue.take_due()
        attempt = taken.attempt + 1
    assert delays[:6] == [10, 20, 40, 80, 120, 120]
    assert delays[-1] == 120 and attempt == 41


def test_adding_again_keeps_the_earlier_time_and_a_new_uid_replaces_the_entry() -> None:
    clock = Clock()
    queue = RetryQueue(base=10, cap=120, clock=clock)
    queue.add(Work.SYNC, "media", "a", "uid-a", delay=5)
    queue.add(Work.SYNC, "media", "a", "uid-a", delay=50)
    assert queue.next_due() == clock.now + 5
    queue.add(Work.SYNC, "media", "a", "uid-b", delay=50)  # re-created under the same name
    assert queue.next_due() == clock.now + 50
    assert [e.uid for e in queue.pending(Work.SYNC)] == ["uid-b"]


def test_hurry_makes_one_kind_of_work_due_now() -> None:
    clock = Clock()
    queue = RetryQueue(base=10, cap=120, clock=clock)
    queue.add(Work.SYNC, "media", "a", "uid-a", attempt=5)
    queue.add(Work.RECORD_DELETED, "media", "b", "uid-b", attempt=5, body={"spec": {}})
    queue.add(Work.START, "media", "c", "uid-c", attempt=5)
    queue.hurry(Work.SYNC)
    assert [e.name for e in queue.take_due()] == ["a"]
    queue.discard(Work.START, "media", "c")
    assert [e.name for e in queue.pending(Work.RECORD_DELETED)] == ["b"]
    assert len(queue) == 1


def test_discarding_for_one_uid_leaves_a_successors_entry() -> None:
    queue = RetryQueue(base=1, cap=10)
    queue.add(Work.SYNC, "media", "a", "uid-new")
    queue.discard(Work.SYNC, "media", "a", uid="uid-old")  # the predecessor's deletion
    assert [e.uid for e in queue.pending(Work.SYNC)] == ["uid-new"]
    queue.discard(Work.SYNC, "media", "a", uid="uid-new")
    assert queue.pending(Work.SYNC) == []
