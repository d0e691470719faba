"""When each job runs next, and starting every job that is due.

tunasync pops at most one due job per 5-second tick, so a backlog of N jobs takes 5·N seconds
and two jobs due at the same instant collide.  Here every due job is handed to ``on_due`` in
the same pass (the concurrency limit then decides how many run at once), jobs with equal times
do not collide, and the loop sleeps exactly until the earliest due time or a change.  It
sleeps on its clock (:meth:`~mirrorbus.clock.Clock.sleep`), so a test moves a
:class:`~mirrorbus.clock.ManualClock` instead of waiting.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from datetime import datetime

import anyio

from mirrorbus.clock import Clock

MAX_SLEEP = 30.0
"""Re-read the clock at least this often (wall-clock jumps, suspend)."""


class Scheduler:
    def __init__(self, clock: Clock, on_due: Callable[[str], None]) -> None:
        self._clock = clock
        self._on_due = on_due
        self._due: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, int, str]] = []
        self._counter = itertools.count()
        self._changed = anyio.Event()

    def schedule(self, name: str, at: datetime) -> None:
        """(Re)schedule ``name`` at ``at``; replaces any earlier entry of the job."""
        self._due[name] = at
        heapq.heappush(self._heap, (at, next(self._counter), name))
        self._changed.set()

    def unschedule(self, name: str) -> None:
        if self._due.pop(name, None) is not None:
            self._changed.set()

    def next_time(self, name: str) -> datetime | None:
        return self._due.get(name)

    def __len__(self) -> int:
        return len(self._due)

    def pop_due(self, now: datetime) -> list[str]:
        """Remove and return every job due at ``now``, earliest first."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, name = heapq.heappop(self._heap)
            if self._due.get(name) == at:  # else a stale entry of a rescheduled job
                del self._due[name]
                due.append(name)
        return due

    async def run(self) -> None:
        while True:
            self._changed = anyio.Event()
            for name in self.pop_due(self._clock.now()):
                self._on_due(name)
            while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # drop stale heads so the sleep is right
            delay = MAX_SLEEP
            if self._heap:
                delay = min(delay, (self._heap[0][0] - self._clock.now()).total_seconds())
            if delay > 0:
                await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Until ``delay`` seconds have passed on the clock, or the schedule changed."""
        changed = self._changed

        async def alarm() -> None:
            await self._clock.sleep(delay)
            changed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(alarm)
            await changed.wait()
            tg.cancel_scope.cancel()
