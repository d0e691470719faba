"""The worker's schedule: every due job at once, no collisions, a loop that sleeps just enough."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from mirrorbus.clock import SystemClock
from mirrorbus.worker.scheduler import Scheduler

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class FixedClock:
    """A clock that stays where the test puts it (the Clock interface, injected)."""

    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t


def make() -> tuple[Scheduler, list[str]]:
    started: list[str] = []
    return Scheduler(FixedClock(T0), started.append), started


def test_a_thousand_jobs_due_at_once_are_all_returned_in_one_call() -> None:
    s, _ = make()
    names = [f"job{i:04d}" for i in range(1000)]
    for name in names:
        s.schedule(name, T0)
    assert len(s) == 1000
    due = s.pop_due(T0 + timedelta(seconds=1))
    assert sorted(due) == names  # nobody lost to a key collision
    assert len(due) == 1000
    assert len(s) == 0
    assert s.pop_due(T0 + timedelta(days=1)) == []


def test_due_jobs_come_earliest_first_and_future_ones_stay() -> None:
    s, _ = make()
    s.schedule("c", T0 + timedelta(seconds=30))
    s.schedule("a", T0 + timedelta(seconds=10))
    s.schedule("later", T0 + timedelta(hours=1))
    s.schedule("b", T0 + timedelta(seconds=20))
    assert s.pop_due(T0) == []
    assert s.pop_due(T0 + timedelta(seconds=30)) == ["a", "b", "c"]  # a time equal to now is due
    assert len(s) == 1
    assert s.next_time("later") == T0 + timedelta(hours=1)
    assert s.next_time("a") is None


def test_rescheduling_replaces_the_earlier_entry() -> None:
    s, _ = make()
    s.schedule("debian", T0 + timedelta(seconds=10))
    s.schedule("debian", T0 + timedelta(hours=1))
    assert len(s) == 1
    assert s.next_time("debian") == T0 + timedelta(hours=1)
    assert s.pop_due(T0 + timedelta(minutes=1)) == []  # the old time no longer fires
    assert s.pop_due(T0 + timedelta(hours=1)) == ["debian"]
    # and earlier again
    s.schedule("debian", T0 + timedelta(hours=5))
    s.schedule("debian", T0 + timedelta(hours=2))
    assert s.pop_due(T0 + timedelta(hours=6)) == ["debian"]  # exactly once
    assert s.pop_due(T0 + timedelta(hours=7)) == []


def test_rescheduling_back_to_the_same_time_fires_once() -> None:
    s, _ = make()
    s.schedule("debian", T0)
    s.schedule("debian", T0 + timedelta(hours=1))
    s.schedule("debian", T0)
    assert s.pop_due(T0 + timedelta(hours=2)) == ["debian"]
    assert len(s) == 0


def test_unschedule_removes() -> None:
    s, _ = make()
    s.schedule("debian", T0)
    s.schedule("ubuntu", T0)
    s.unschedule("debian")
    s.unschedule("never-scheduled")  # no error
    assert s.next_time("debian") is None
    assert len(s) == 1
    assert s.pop_due(T0 + timedelta(seconds=1)) == ["ubuntu"]
    # unschedule then schedule again at the old time: fires once
    s.schedule("debian", T0)
    s.unschedule("debian")
    s.schedule("debian", T0)
    assert s.pop_due(T0) == ["debian"]


def test_jobs_with_equal_times_do_not_collide() -> None:
    s, _ = make()
    s.schedule("a", T0)
    s.schedule("b", T0)
    s.unschedule("a")
    assert s.next_time("b") == T0
    assert s.pop_due(T0) == ["b"]


@pytest.mark.anyio
async def test_run_starts_a_job_scheduled_shortly_ahead() -> None:
    clock = SystemClock()
    fired: list[tuple[str, float]] = []
    done = anyio.Event()

    def on_due(name: str) -> None:
        fired.append((name, time.monotonic()))
        done.set()

    s = Scheduler(clock, on_due)
    begin = time.monotonic()
    s.schedule("soon", clock.now() + timedelta(seconds=0.2))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.run)
            await done.wait()
            tg.cancel_scope.cancel()
    assert [n for n, _ in fired] == ["soon"]
    assert fired[0][1] - begin >= 0.15  # not before its time
    assert len(s) == 0


@pytest.mark.anyio
async def test_run_wakes_early_when_a_sooner_job_is_scheduled() -> None:
    clock = SystemClock()
    fired: list[str] = []
    done = anyio.Event()

    def on_due(name: str) -> None:
        fired.append(name)
        done.set()

    s = Scheduler(clock, on_due)
    s.schedule("far", clock.now() + timedelta(hours=1))
    begin = time.monotonic()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.run)
            await anyio.sleep(0.1)  # the loop now sleeps towards "far" (or MAX_SLEEP)
            s.schedule("near", clock.now() + timedelta(seconds=0.1))
            await done.wait()
            tg.cancel_scope.cancel()
    assert fired == ["near"]
    assert time.monotonic() - begin < 3
    assert s.next_time("far") is not None


@pytest.mark.anyio
async def test_run_hands_every_due_job_over_in_one_pass() -> None:
    clock = SystemClock()
    fired: list[str] = []
    all_done = anyio.Event()

    def on_due(name: str) -> None:
        fired.append(name)
        if len(fired) == 200:
            all_done.set()

    s = Scheduler(clock, on_due)
    past = clock.now() - timedelta(seconds=1)
    for i in range(200):
        s.schedule(f"j{i}", past)
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.run)
            await all_done.wait()
            tg.cancel_scope.cancel()
    assert sorted(fired) == sorted(f"j{i}" for i in range(200))


@pytest.mark.anyio
async def test_run_does_not_fire_an_unscheduled_job() -> None:
    clock = SystemClock()
    fired: list[str] = []
    done = anyio.Event()

    def on_due(name: str) -> None:
        fired.append(name)
        done.set()

    s = Scheduler(clock, on_due)
    s.schedule("cancelled", clock.now() + timedelta(seconds=0.2))
    s.schedule("kept", clock.now() + timedelta(seconds=0.4))
    s.unschedule("cancelled")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.run)
            await done.wait()
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
    assert fired == ["kept"]
