"""The old tunasync workers the gateway speaks for: where they take commands, and their jobs.

Which workers are old ones is in the log, nowhere else: an old worker's registration is a
``WorkerStarted`` with the ``url`` it registered, appended by the gateway; a later
``WorkerStarted`` without ``url`` (a mirrorbus worker of the same name started) or an
operator's ``rm-worker`` ends it.  :meth:`Fleet.follow` reads those worker-level events from
the start of the log and then keeps following them, so a restarted gateway knows every old
worker again without any file of its own.

:meth:`Fleet.emit` appends events on an old worker's behalf and folds them into the gateway's
own copy of its jobs, which it takes from the status view the first time a worker is touched:
the next report is then translated against what was just appended, not against a view that
may not have applied it yet.  The server, not this code, decides whether the gateway may
speak for a worker (a worker with its own certificate is refused to it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
import nats.errors
import nats.js.errors
from anyio.abc import TaskStatus
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mirrorbus.bus import Bus
from mirrorbus.errors import BusError, CodecError
from mirrorbus.events import (
    AdminEvent,
    Event,
    JobEvent,
    JobState,
    WorkerEvent,
    WorkerForgotten,
    WorkerStarted,
    decode_event,
    encode,
    evolve,
)
from projections.changes import Changes
from projections.status_view import StatusView

log = logging.getLogger(__name__)

FETCH_BATCH = 256
VIEW_WAIT = 10.0


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
        self.workers: dict[str, OldWorker] = {}
        self._jobs: dict[str, dict[str, JobState]] = {}
        self.written = 0
        """Stream sequence of the last event this gateway appended (or the log's end when it
        started): what the view must have applied before a job copy is read from it."""
        self.lock = anyio.Lock()
        """Held while a report is translated and appended: reports of one job stay in order,
        as tunasync's manager serialised them with its database lock."""

    # -- who is an old worker ------------------------------------------------------------------
    def note(self, event: Event) -> None:
        """Update the registrations with a worker-level event from the log."""
        match event:
            case WorkerStarted(url=url) if url:
                self.workers[event.worker] = OldWorker(event.worker, url, event.at)
            case WorkerStarted():
                if self.workers.pop(event.worker, None) is not None:
                    log.info(
                        "worker %s now runs mirrorbus: no longer a tunasync worker", event.worker
                    )
                self._jobs.pop(event.worker, None)
            case WorkerForgotten():
                self.workers.pop(event.worker, None)

    async def follow(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read every worker-level event of the log, then keep following; ``started`` once
        the past is read (the registrations are then complete).  A consumer lost meanwhile
        (deleted, or a server that lost it) is made again from the next event not yet read."""
        seen = 0
        ready = False
        while True:
            sub, pending = await self._open(seen)
            try:
                while True:
                    if not pending and not ready:
                        ready = True
                        log.info("gateway knows %d tunasync worker(s)", len(self.workers))
                        task_status.started()
                    try:
                        msgs = await sub.fetch(FETCH_BATCH if pending else 1, timeout=5)
                    except (nats.errors.TimeoutError, TimeoutError):
                        continue
                    except nats.errors.Error as exc:
                        log.warning("following the workers' events (%s); reopening", exc)
                        break
                    for msg in msgs:
                        pending = int(msg.metadata.num_pending)
                        seen = max(seen, int(msg.metadata.sequence.stream))
                        try:
                            self.note(decode_event(msg.data))
                        except CodecError:
                            continue
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await anyio.sleep(1)

    async def _open(self, seen: int) -> tuple[JetStreamContext.PullSubscription, int]:
        """(Re)make the follower's consumer from the event after ``seen``; (it, how many
        events it has to deliver now)."""
        s = self.bus.subjects
        name = s.gateway_consumer
        config = ConsumerConfig(
            name=name,
            filter_subject=s.all_worker_events,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if seen else DeliverPolicy.ALL,
            opt_start_seq=seen + 1 if seen else None,
            ack_policy=AckPolicy.NONE,
            # Kept on disk, so that it outlives a restart of nats-server (the gateway keeps
            # following); one left by a gateway that is gone expires after an hour.
            inactive_threshold=3600.0,
        )
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.bus.js.delete_consumer(s.evt_stream, name)
        try:
            info = await self.bus.js.add_consumer(s.evt_stream, config)
        except nats.js.errors.APIError as exc:
            raise BusError(f"cannot read the workers' events: {exc.description}") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise BusError("cannot read the workers' events: no answer") from None
        sub = await self.bus.js.pull_subscribe_bind(consumer=name, stream=s.evt_stream)
        return sub, int(info.num_pending or 0)

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
            self.written = max(
                self.written, await self.bus.append(subject, encode(event), event.id)
            )
            if isinstance(event, JobEvent):
                jobs[event.job] = evolve(jobs.get(event.job), event)
            elif isinstance(event, WorkerStarted | WorkerForgotten):
                self.note(event)
