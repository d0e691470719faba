"""Feed the event stream into the status view: fetch a batch, apply it in one transaction.

The stored position in the view is the truth, and the only record of progress (the consumer
acknowledges nothing): at start the durable consumer is (re)created to deliver from
``position + 1``, so a fresh or rebuilt view never misses events, and a batch that was being
applied when the manager died is delivered again and applied once.

The same projector feeds a standalone ``mirrorbus project`` with a ``reader`` certificate: it
then names its own consumer and sets ``inactive_threshold``, so that the server removes the
consumer of a reader that went away for good.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import anyio
import nats.errors
import nats.js.errors
from anyio.abc import TaskStatus
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mirrorbus.bus import Bus, next_fetch_size
from mirrorbus.errors import BusError, CodecError, InvalidName, ProjectionError
from mirrorbus.events import WorkerSnapshot, decode_snapshot
from mirrorbus.events.subjects import Subjects
from projections.status_view import ApplyResult, Entry, StatusView

log = logging.getLogger(__name__)

INLINE_EVENTS = 8
"""Batches of at most this many events on an in-process database are applied on the loop."""


class Projector:
    def __init__(
        self,
        bus: Bus,
        view: StatusView,
        *,
        batch: int = 512,
        consumer: str,
        on_applied: Callable[[ApplyResult], None] | None = None,
        inactive_threshold: float | None = None,
    ) -> None:
        self.bus = bus
        self.view = view
        self.batch = batch
        self.consumer = consumer
        self.on_applied = on_applied
        self.inactive_threshold = inactive_threshold
        self.position = 0
        self.created: datetime | None = None
        """When the server made our consumer (another time: someone else made it again)."""

    async def _bind(self) -> nats.js.JetStreamContext.PullSubscription:
        s = self.bus.subjects
        await seed_if_truncated(self.bus, self.view)
        self.position = await anyio.to_thread.run_sync(self.view.position)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.bus.js.delete_consumer(s.evt_stream, self.consumer)
        config = ConsumerConfig(
            durable_name=self.consumer,
            name=self.consumer,
            filter_subject=s.all_events,
            # Nothing is acknowledged: the position stored with the view is the only record
            # of progress, and the consumer is made anew from it at every start (above).
            # An ack per batch would be one more message on the path of every event, and an
            # ack timeout would only redeliver what the view skips by sequence anyway.
            ack_policy=AckPolicy.NONE,
            deliver_policy=(
                DeliverPolicy.BY_START_SEQUENCE if self.position else DeliverPolicy.ALL
            ),
            opt_start_seq=self.position + 1 if self.position else None,
            inactive_threshold=self.inactive_threshold,
        )
        self.created = (await self.bus.js.add_consumer(s.evt_stream, config)).created
        return await self.bus.js.pull_subscribe_bind(consumer=self.consumer, stream=s.evt_stream)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            sub = await self._bind()
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusError(f"cannot create the projector's consumer: {exc}") from None
        log.info("projecting from sequence %d", self.position + 1)
        task_status.started()
        size = self.batch  # a fresh consumer may start with a backlog
        while True:
            try:
                msgs = await sub.fetch(size, timeout=2)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("fetch failed: %s", exc)
                await anyio.sleep(1)
                continue
            if not msgs:
                continue
            size = next_fetch_size(msgs, self.batch)
            entries: list[Entry] = [
                (int(m.metadata.sequence.stream), m.subject, m.data) for m in msgs
            ]
            result = await self._apply(entries)
            self.position = result.position
            if result.dead:
                log.warning("%d events set aside as dead letters", result.dead)
            if self.on_applied is not None:
                self.on_applied(result)

    async def _apply(self, entries: list[Entry]) -> ApplyResult:
        """Apply a batch, retrying while the database is away (restarting, unreachable): the
        position moves only once the batch is committed.

        A few events on an in-process database (SQLite) are applied right here: that work is
        this process's CPU either way, shorter than a hop to a thread and back, and a thread
        would only trade the GIL with the event loop (BENCHMARKS.md "Control latency").
        Bigger batches, and every batch for a database server, go to a thread so that the
        loop goes on serving queries meanwhile.
        """
        inline = self.view.in_process and len(entries) <= INLINE_EVENTS
        delay = 0.5
        while True:
            try:
                if inline:
                    return self.view.apply(entries)
                return await anyio.to_thread.run_sync(self.view.apply, entries)
            except ProjectionError as exc:
                log.error("the status view cannot be written (%s); retrying in %.0fs", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 30.0)


async def seed_if_truncated(bus: Bus, view: StatusView) -> bool:
    """If events the view has not applied are gone from the log (its maximum age), seed the
    view from the workers' snapshots (see ``StatusView.seed``); True if it did."""
    s = bus.subjects
    try:
        info = await bus.js.stream_info(s.evt_stream)
    except nats.js.errors.NotFoundError:
        return False
    first = int(info.state.first_seq or 0)
    position = await anyio.to_thread.run_sync(view.position)
    if first <= position + 1:
        return False
    snapshots = []
    try:
        snaps_info = await bus.js.stream_info(s.snap_stream, subjects_filter=s.all_snapshots)
        for subject in sorted((snaps_info.state.subjects or {}).keys()):
            raw = await bus.js.get_last_msg(s.snap_stream, subject)
            try:
                snapshot = decode_snapshot(raw.data or b"")
            except CodecError as exc:
                log.warning("unreadable snapshot on %s: %s", subject, exc)
                continue
            if not _own_snapshot(s, subject, snapshot):
                log.warning(
                    "snapshot on %s speaks for worker %r; ignored", subject, snapshot.worker
                )
                continue
            snapshots.append(snapshot)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
        log.error(
            "the log starts at event %d but the snapshots cannot be read (%s): jobs "
            "whose events are all older will be missing",
            first,
            exc,
        )
    await anyio.to_thread.run_sync(view.seed, snapshots, first - 1)
    log.warning(
        "the log starts at event %d (older ones are past its maximum age); the view "
        "took %d workers' jobs from their snapshots",
        first,
        len(snapshots),
    )
    return True


def _own_snapshot(s: Subjects, subject: str, snapshot: WorkerSnapshot) -> bool:
    """Whether a snapshot is of the worker whose subject it was written on (and only of its
    jobs): a worker may write only its own snapshot subject, so a snapshot naming another
    worker is a forgery and must not seed anyone's jobs."""
    try:
        kind, worker, _ = s.names_in(subject)
    except InvalidName:
        return False
    return (
        kind == "snap"
        and worker == snapshot.worker
        and all(job.worker == worker for job in snapshot.jobs)
    )


async def catch_up(
    bus: Bus, view: StatusView, *, batch: int = 2000, until: int | None = None
) -> int:
    """Apply every event up to ``until`` (default: the stream's last sequence now) and stop.

    Used by ``manager rebuild``: an ordered, ephemeral read of the log into ``view``.
    """
    s = bus.subjects
    await seed_if_truncated(bus, view)
    last = until if until is not None else await bus.last_sequence()
    position = await anyio.to_thread.run_sync(view.position)
    if position >= last:
        return position
    sub = await bus.js.pull_subscribe(
        s.all_events,
        stream=s.evt_stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=position + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=60,
            mem_storage=True,
        ),
    )
    # One batch at a time, applied right here: nothing else is served from this loop while
    # the view is rebuilt, and a worker thread only traded the GIL with it (each event's
    # apply took 23 against 19 µs on SQLite; BENCHMARKS.md, fifth round).  Fetching the next
    # batch while a thread applied this one was slower still (4,500 against 5,900 events/s
    # on SQLite, 3,700 against 4,600 on PostgreSQL; BENCHMARKS.md "Ingest").
    try:
        while position < last:
            try:
                msgs = await sub.fetch(batch, timeout=5)
            except (nats.errors.TimeoutError, TimeoutError):
                raise BusError(f"rebuild stalled at sequence {position} of {last}") from None
            entries = [(int(m.metadata.sequence.stream), m.subject, m.data) for m in msgs]
            entries = [e for e in entries if e[0] <= last]
            if entries:
                position = view.apply(entries).position
            if len(entries) < len(msgs):
                break  # past ``until``
    finally:
        await sub.unsubscribe()
    return position
