"""The worker's schedule: every due job at once, no collisions, a loop that sleeps just enough.

The run loop sleeps on its clock: these tests move a :class:`ManualClock` and never wait for
time to pass (one test checks the system clock's real sleep).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from mirrorbus.clock import ManualClock, SystemClock
from mirrorbus.worker.scheduler import MAX_SLEEP, Scheduler

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


class Running:
    """A scheduler's run loop on a :class:`ManualClock`, and the jobs it has handed over."""

    def __init__(self, scheduler: Scheduler, clock: ManualClock, fired: list[str]) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.fired = fired

    async def asleep_until(self) -> datetime | None:
        """Let the loop run until it waits; when its sleep ends (None: it does not sleep)."""
        await anyio.wait_all_tasks_blocked()
        return self.clock.next_wake

    async def advance(self, seconds: float) -> list[str]:
        """Move the clock, let the loop act on it; the jobs handed over so far."""
        self.clock.advance(seconds)
        await anyio.wait_all_tasks_blocked()
        return self.fired


@asynccontextmanager
async def running() -> AsyncIterator[Running]:
    clock = ManualClock(T0)
    fired: list[str] = []
    s = Scheduler(clock, fired.append)
    with anyio.fail_after(10):  # bounds the test, in real time; the clock never moves by itself
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.run)
            yield Running(s, clock, fired)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_run_starts_a_job_at_its_time_not_before() -> None:
    async with running() as r:
        r.scheduler.schedule("soon", T0 + timedelta(seconds=20))
        assert await r.asleep_until() == T0 + timedelta(seconds=20)
        assert await r.advance(19.9) == []
        assert await r.advance(0.1) == ["soon"]
        assert len(r.scheduler) == 0
        assert await r.asleep_until() == T0 + timedelta(seconds=20 + MAX_SLEEP)  # nothing left


@pytest.mark.anyio
async def test_run_wakes_early_when_a_sooner_job_is_scheduled() -> None:
    async with running() as r:
        r.scheduler.schedule("far", T0 + timedelta(hours=1))
        assert await r.asleep_until() == T0 + timedelta(seconds=MAX_SLEEP)  # re-reads the clock
        r.scheduler.schedule("near", T0 + timedelta(seconds=10))
        assert await r.asleep_until() == T0 + timedelta(seconds=10)
        assert await r.advance(10) == ["near"]
        assert r.scheduler.next_time("far") == T0 + timedelta(hours=1)


@pytest.mark.anyio
async def test_a_clock_that_jumps_past_a_long_sleep_is_read_again() -> None:
    """The longest sleep is MAX_SLEEP: a wall clock that jumps ahead (a suspended machine) is
    noticed at the next wake, and what fell due in the jump runs then."""
    async with running() as r:
        r.scheduler.schedule("daily", T0 + timedelta(days=1))
        assert await r.asleep_until() == T0 + timedelta(seconds=MAX_SLEEP)
        assert await r.advance(2 * 86400) == ["daily"]


@pytest.mark.anyio
async def test_run_hands_every_due_job_over_in_one_pass() -> None:
    async with running() as r:
        for i in range(200):
            r.scheduler.schedule(f"j{i}", T0 - timedelta(seconds=1))
        await r.asleep_until()
        assert sorted(r.fired) == sorted(f"j{i}" for i in range(200))
        assert r.clock.now() == T0  # no time had to pass


@pytest.mark.anyio
async def test_run_does_not_fire_an_unscheduled_job() -> None:
    async with running() as r:
        r.scheduler.schedule("cancelled", T0 + timedelta(seconds=20))
        r.scheduler.schedule("kept", T0 + timedelta(seconds=40))
        r.scheduler.unschedule("cancelled")
        assert await r.asleep_until() == T0 + timedelta(seconds=MAX_SLEEP)  # at most 30 s
        assert await r.advance(20) == []  # the time "cancelled" had
        assert await r.advance(20) == ["kept"]


@pytest.mark.anyio
async def test_the_system_clock_sleeps_in_real_time() -> None:
    clock = SystemClock()
    fired: list[datetime] = []
    done = anyio.Event()

    def on_due(name: str) -> None:
        fired.append(clock.now())
        done.set()

    s = Scheduler(clock, on_due)
    due = clock.now() + timedelta(seconds=0.05)
    s.schedule("soon", due)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.run)
            await done.wait()
            tg.cancel_scope.cancel()
    assert fired[0] >= due  # not before its time


@pytest.mark.anyio
async def test_a_manual_clock_wakes_each_sleep_at_its_deadline_only() -> None:
    clock = ManualClock(T0)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, "a", 5)
            tg.start_soon(sleeper, "b", 10)
            await anyio.wait_all_tasks_blocked()
            assert clock.next_wake == T0 + timedelta(seconds=5)
            clock.advance(7)
            await anyio.wait_all_tasks_blocked()
            assert woke == [("a", T0 + timedelta(seconds=7))]
            assert clock.next_wake == T0 + timedelta(seconds=10)
            clock.advance(3)
    assert woke[1] == ("b", T0 + timedelta(seconds=10))
    assert clock.next_wake is None
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
