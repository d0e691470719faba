"""The old tunasync workers the gateway speaks for: where they take commands, and their jobs.

Which workers are old ones is in the log, nowhere else: an old worker's registration is a
``WorkerStarted`` with the ``url`` it registered, appended by the gateway; a later
``WorkerStarted`` without ``url`` (a mirrorbus worker of the same name started) or an
operator's ``rm-worker`` ends it.  The status view folds that into the workers' ``url``, so
the gateway reads who is an old worker from the view, like everything else it serves: a
restarted gateway, or a second one beside another manager, knows them all.  What the gateway
itself just appended counts at once, before the view has applied it.

:meth:`Fleet.emit` appends events on an old worker's behalf and folds them into the gateway's
own copy of its jobs, which it takes from the status view the first time a worker is touched:
the next report is then translated against what was just appended, not against a view that
may not have applied it yet.  The server, not this code, decides whether the gateway may
speak for a worker (a worker with its own certificate is refused to it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from mirrorbus.bus import Bus
from mirrorbus.errors import BusError
from mirrorbus.events import (
    AdminEvent,
    JobEvent,
    JobState,
    WorkerEvent,
    WorkerForgotten,
    WorkerStarted,
    encode,
    evolve,
)
from mirrorbus.events.wire import WorkerRow
from projections.changes import Changes
from projections.status_view import StatusView

log = logging.getLogger(__name__)

VIEW_WAIT = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OldWorker:
    """An old worker's registration: its command URL and when it registered."""

    name: str
    url: str
    registered: datetime
    token: str = ""


class Fleet:
    def __init__(self, bus: Bus, view: StatusView, changes: Changes) -> None:
        self.bus = bus
        self.view = view
        self.changes = changes  # the projector's: when the view moved
        self._noted: dict[str, tuple[int, OldWorker | None]] = {}
        """Registrations (and their ends) this gateway appended, by worker, with their stream
        sequence: they count until the view has applied them."""
        self._jobs: dict[str, dict[str, JobState]] = {}
        self.written = 0
        """Stream sequence of the last event this gateway appended (or the log's end when it
        started): what the view must have applied before a job copy is read from it."""
        self.lock = anyio.Lock()
        """Held while a report is translated and appended: reports of one job stay in order,
        as tunasync's manager serialised them with its database lock."""

    # -- who is an old worker ------------------------------------------------------------------
    async def old_workers(self) -> dict[str, OldWorker]:
        """Every old worker: the view's, with what this gateway appended since on top."""

        def read() -> tuple[int, list[WorkerRow]]:
            return self.view.position(), self.view.workers()

        position, rows = await anyio.to_thread.run_sync(read)
        found = {
            r.name: OldWorker(r.name, r.url, r.started_at or r.last_seen or _EPOCH)
            for r in rows
            if r.url
        }
        for name, (seq, old) in list(self._noted.items()):
            if seq <= position:
                del self._noted[name]  # the view has it now
            elif old is None:
                found.pop(name, None)
            else:
                found[name] = old
        return found

    async def old_worker(self, name: str) -> OldWorker | None:
        return (await self.old_workers()).get(name)

    def _note(self, seq: int, event: WorkerStarted | WorkerForgotten) -> None:
        if isinstance(event, WorkerStarted) and event.url:
            self._noted[event.worker] = (seq, OldWorker(event.worker, event.url, event.at))
        else:
            self._noted[event.worker] = (seq, None)

    # -- their jobs ----------------------------------------------------------------------------
    async def jobs(self, worker: str) -> dict[str, JobState]:
        """The gateway's copy of ``worker``'s jobs (removed ones included), read from the
        view once it holds everything this gateway wrote (and the log held when it began)."""
        jobs = self._jobs.get(worker)
        if jobs is None:
            await self._view_reached(self.written)
            states = await anyio.to_thread.run_sync(
                lambda: self.view.jobs(worker, include_removed=True)
            )
            jobs = self._jobs.setdefault(worker, {s.name: s for s in states})
        return jobs

    async def _view_reached(self, seq: int) -> None:
        """Wait (at most :data:`VIEW_WAIT`) until the view has applied the log up to ``seq``;
        a view further behind than that is read as it is, with a warning."""
        with anyio.move_on_after(VIEW_WAIT):
            seen = -1
            while await anyio.to_thread.run_sync(self.view.position) < seq:
                seen = await self.changes.wait(seen)
            return
        log.warning("the status view is behind the log (event %d not applied yet)", seq)

    async def catch_up(self) -> None:
        """Note where the log ends now: job copies are read from the view only once it has
        applied that far (after a restart, the projector may still be catching up)."""
        try:
            self.written = max(self.written, await self.bus.last_sequence())
        except BusError as exc:
            log.warning("cannot tell where the log ends (%s)", exc)

    def forget_jobs(self) -> None:
        """Drop the copies of the jobs (after ``flush``): they are read from the view again."""
        self._jobs.clear()

    async def emit(
        self, worker: str, events: Sequence[JobEvent | WorkerEvent | AdminEvent]
    ) -> None:
        """Append ``events`` of ``worker`` in order, each acknowledged; raises BusError (and
        :class:`~mirrorbus.errors.PermissionDenied` when the server refuses the gateway this
        worker) at the first that is not stored; those before it are."""
        s = self.bus.subjects
        jobs = await self.jobs(worker)
        for event in events:
            if isinstance(event, JobEvent):
                subject = s.job_events(worker, event.job)
            elif isinstance(event, AdminEvent):
                subject = s.admin_events
            else:
                subject = s.worker_events(worker)
            seq = await self.bus.append(subject, encode(event), event.id)
            self.written = max(self.written, seq)
            if isinstance(event, JobEvent):
                jobs[event.job] = evolve(jobs.get(event.job), event)
            elif isinstance(event, WorkerStarted | WorkerForgotten):
                self._note(seq, event)
