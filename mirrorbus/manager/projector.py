"""Feed the event stream into the status view: fetch a batch, apply it in one transaction.

The stored position in the view is the truth.  A manager replica reads through its durable
consumer, (re)created at start to deliver from ``position + 1``, so a fresh or rebuilt view
never misses events, and a batch that was being applied when the manager died is delivered
again and applied once.  The consumer acknowledges explicitly (each batch, once committed,
by its last message; ``max_ack_pending`` bounds what is out), so a delivery that never
reached the view (lost to a slow-consumer drop on the way) is delivered again after
``ack_wait``; and a batch that does not start right after the view's position (a message
lost before later ones arrived) is not applied past the hole: the consumer is made again from
the position, the next fetches kept small, so that a log of oversized events is taken a few
at a time instead of overflowing the client again.  Only managers have consumer rights.

``mirrorbus project`` (a ``reader`` certificate, which may make no consumer) and ``manager
rebuild`` read the log by sequence instead (batched direct gets, bounded in bytes; see
:mod:`mirrorbus.bus.logread`): nothing to steal or delete there either.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import anyio
from anyio.abc import TaskStatus

from mirrorbus.bus import (
    DEFAULT_MAX_BYTES,
    REPLAYED,
    Bus,
    ConsumerSpec,
    LogReader,
    Message,
    PullConsumer,
    Stored,
    Wakeup,
    delete_consumer,
    make_consumer,
    replayed,
)
from mirrorbus.errors import BusError, CodecError, InvalidName, NotFound, ProjectionError
from mirrorbus.events import WorkerSnapshot, decode_snapshot
from mirrorbus.events.subjects import Subjects
from projections.status_view import ApplyResult, Entry, StatusView

log = logging.getLogger(__name__)

INLINE_EVENTS = 8
"""Batches of at most this many events on an in-process database are applied on the loop."""

POLL = 2.0
"""Seconds a caught-up reader without a consumer waits for a wake-up before it reads again."""

ACK_WAIT = 30.0
"""Seconds after which a delivery the projector did not acknowledge is delivered again."""

FETCH_WAIT = 2.0
"""Seconds one fetch waits for a delivery before the projector looks at its watchdog."""

CAREFUL_FETCHES = 32
"""Fetches of one message each after a hole: a log of big events is then taken one by one."""

STALL_AFTER = 2 * ACK_WAIT
"""Seconds without a delivery, while the log holds events past the view's position, after
which the consumer is made again from the position.  Redeliveries come after ``ACK_WAIT``;
a consumer that still delivers nothing (its replicas lost their leader in a partition and
never elected one again, or it answers "service unavailable" for good) is not waited for."""


class Projector:
    def __init__(
        self,
        bus: Bus,
        view: StatusView,
        *,
        batch: int = 512,
        consumer: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_applied: Callable[[ApplyResult], None] | None = None,
        inactive_threshold: float | None = None,
    ) -> None:
        self.bus = bus
        self.view = view
        self.batch = batch
        self.consumer = consumer
        """The durable consumer to read through (a manager replica's), or None to read the log
        by sequence without one (a reader's ``mirrorbus project``)."""
        self.max_bytes = max_bytes
        self.on_applied = on_applied
        self.inactive_threshold = inactive_threshold
        self.position = 0
        self.created: datetime | None = None
        """When the server made our consumer (another time: someone else made it again)."""
        self.rebinds = 0
        """How many times the consumer was made again over a hole in what it delivered."""

    async def _make(self) -> None:
        """Make the consumer again from the view's position (seeding the view first if the
        log starts later)."""
        assert self.consumer is not None
        s = self.bus.subjects
        await seed_if_truncated(self.bus, self.view)
        self.position = await anyio.to_thread.run_sync(self.view.position)
        await delete_consumer(self.bus, s.evt_stream, self.consumer)
        spec = ConsumerSpec(
            stream=s.evt_stream,
            name=self.consumer,
            filter_subject=s.all_events,
            # Acknowledged once applied (a batch by its last message): what was delivered
            # but never applied is delivered again; what is applied twice the view skips by
            # sequence.
            ack="all",
            ack_wait=ACK_WAIT,
            max_ack_pending=4 * self.batch,
            start=self.position + 1,
            inactive_threshold=self.inactive_threshold,
        )
        self.created = await make_consumer(self.bus, spec)

    async def _bind(self, sub: PullConsumer) -> None:
        try:
            await sub.bind()
        except BusError as exc:
            raise BusError(f"cannot create the projector's consumer: {exc}") from None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if self.consumer is None:
            await self._run_direct(task_status=task_status)
            return
        sub = PullConsumer(
            self.bus,
            self.bus.subjects.evt_stream,
            self.consumer,
            batch=self.batch,
            timeout=FETCH_WAIT,
            what="the event stream",
            make=self._make,
        )
        try:
            await self._consume(sub, task_status)
        finally:
            with anyio.CancelScope(shield=True):
                await sub.close()

    async def _consume(self, sub: PullConsumer, task_status: TaskStatus[None]) -> None:
        await self._bind(sub)
        log.info("projecting from sequence %d", self.position + 1)
        task_status.started()
        careful = 0
        delivered_at = anyio.current_time()
        while True:
            msgs = await sub.fetch(1 if careful else None)
            if not msgs:
                if anyio.current_time() - delivered_at >= STALL_AFTER:
                    delivered_at = anyio.current_time()
                    await self._unstall(sub)
                continue
            delivered_at = anyio.current_time()
            careful = max(0, careful - 1)
            usable = self._contiguous(msgs)
            if len(usable) < len(msgs) and not usable and await self._hole(self.position + 1):
                usable = msgs  # the log itself has no such event (deleted before protection)
            if usable:
                entries: list[Entry] = [(m.seq, m.subject, m.data) for m in usable]
                refused = {m.seq: REPLAYED for m in usable if replayed(m.headers, direct=False)}
                result = await self._apply(entries, refused)
                self.position = result.position
                with contextlib.suppress(BusError):
                    await usable[-1].ack()  # acknowledges every delivery up to it
                if result.dead:
                    log.warning("%d events set aside as dead letters", result.dead)
                if self.on_applied is not None:
                    self.on_applied(result)
            if len(usable) < len(msgs):
                log.warning(
                    "event %d did not arrive before later ones (lost on the way); reading "
                    "again from there",
                    self.position + 1,
                )
                await self._bind(sub)  # seeds the view first if the log starts later
                self.rebinds += 1
                careful = CAREFUL_FETCHES

    async def _unstall(self, sub: PullConsumer) -> None:
        """After :data:`STALL_AFTER` seconds without a delivery: if the log holds events past
        the view's position, make the consumer again from the position; else (caught up, or
        the server cannot tell now) keep it."""
        try:
            last = await self.bus.last_sequence()
        except BusError:
            return
        if last <= self.position:
            return
        log.warning(
            "no event delivered for %.0fs though the log is at event %d and the view at %d; "
            "making the consumer again",
            STALL_AFTER,
            last,
            self.position,
        )
        try:
            await sub.bind()
        except BusError as exc:
            log.warning("cannot make the consumer again yet: %s", exc)
            await sub.bind(make=False)
            return
        self.rebinds += 1

    def _contiguous(self, msgs: list[Message]) -> list[Message]:
        """The messages of a batch up to the first hole after the view's position.

        The consumer's filter covers the whole stream and no message is deleted from it, so
        its sequences follow each other; redelivered ones (at or below the position) are
        kept for the view to skip.
        """
        expected = self.position + 1
        kept: list[Message] = []
        for m in msgs:
            seq = m.seq
            if seq > expected:
                break
            kept.append(m)
            expected = max(expected, seq + 1)
        return kept

    async def _hole(self, seq: int) -> bool:
        """Whether the log has no message ``seq`` though it has later ones (a message deleted
        before the streams denied it): then waiting for it would wait forever."""
        stream = self.bus.subjects.evt_stream
        try:
            if (await self.bus.stream_state(stream)).first > seq:
                return False  # the log starts later: the next bind seeds the view
            await self.bus.get_message(stream, seq=seq)
        except NotFound:
            return True
        except BusError:
            return False
        return False

    async def _run_direct(self, *, task_status: TaskStatus[None]) -> None:
        """Read the log by sequence from ``position + 1``, woken by new events."""
        s = self.bus.subjects
        reader = LogReader(self.bus, s.evt_stream, batch=self.batch, max_bytes=self.max_bytes)
        wakeup = Wakeup(self.bus, [s.all_events])
        try:
            await wakeup.start()
            try:
                await seed_if_truncated(self.bus, self.view)
            except BusError as exc:
                raise BusError(f"cannot read the event stream: {exc}") from None
            self.position = await anyio.to_thread.run_sync(self.view.position)
            log.info("projecting from sequence %d", self.position + 1)
            task_status.started()
            while True:
                wakeup.clear()
                try:
                    batch = await reader.read(self.position + 1)
                except BusError as exc:
                    log.warning("reading the event stream failed: %s", exc)
                    await wakeup.wait(POLL)
                    continue
                if batch.messages:
                    entries: list[Entry] = [(m.seq, m.subject, m.data) for m in batch.messages]
                    result = await self._apply(entries, _refused(batch.messages))
                    self.position = result.position
                    if result.dead:
                        log.warning("%d events set aside as dead letters", result.dead)
                    if self.on_applied is not None:
                        self.on_applied(result)
                if not batch.pending:
                    await wakeup.wait(POLL)
        finally:
            with anyio.CancelScope(shield=True):
                await wakeup.close()
                await reader.close()

    async def _apply(self, entries: list[Entry], refused: dict[int, str]) -> ApplyResult:
        """Apply a batch, retrying while the database is away (restarting, unreachable): the
        position moves only once the batch is committed.

        A few events on an in-process database (SQLite) are applied right here: that work is
        this process's CPU either way, shorter than a hop to a thread and back, and a thread
        would only trade the GIL with the event loop (see BENCHMARKS.md).
        Bigger batches, and every batch for a database server, go to a thread so that the
        loop goes on serving queries meanwhile.
        """
        inline = self.view.in_process and len(entries) <= INLINE_EVENTS
        delay = 0.5
        while True:
            try:
                if inline:
                    return self.view.apply(entries, refused)
                return await anyio.to_thread.run_sync(self.view.apply, entries, refused)
            except ProjectionError as exc:
                log.error("the status view cannot be written (%s); retrying in %.0fs", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 30.0)


def _refused(messages: list[Stored]) -> dict[int, str]:
    """The messages of a read that are copies stored by the server, not events."""
    return {m.seq: REPLAYED for m in messages if m.replayed}


async def seed_if_truncated(bus: Bus, view: StatusView) -> bool:
    """If events the view has not applied are gone from the log (its maximum age), seed the
    view from the workers' snapshots (see ``StatusView.seed``); True if it did."""
    s = bus.subjects
    try:
        first = (await bus.stream_state(s.evt_stream)).first
    except NotFound:
        return False
    position = await anyio.to_thread.run_sync(view.position)
    if first <= position + 1:
        return False
    snapshots = []
    try:
        snaps = await bus.stream_state(s.snap_stream, subjects=s.all_snapshots)
        for subject in sorted(snaps.subjects):
            raw = await bus.get_message(s.snap_stream, last_on=subject, direct=False)
            if raw.replayed:
                log.warning("snapshot on %s is %s; ignored", subject, REPLAYED)
                continue
            try:
                snapshot = decode_snapshot(raw.data)
            except CodecError as exc:
                log.warning("unreadable snapshot on %s: %s", subject, exc)
                continue
            if not _own_snapshot(s, subject, snapshot):
                log.warning(
                    "snapshot on %s speaks for worker %r; ignored", subject, snapshot.worker
                )
                continue
            snapshots.append(snapshot)
    except BusError as exc:
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
    bus: Bus,
    view: StatusView,
    *,
    batch: int = 2000,
    until: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> int:
    """Apply every event up to ``until`` (default: the stream's last sequence now) and stop.

    Used by ``manager rebuild``: an ordered read of the log into ``view``, by sequence and
    bounded in bytes, so that it finishes on a log of oversized or malformed events too.
    """
    s = bus.subjects
    await seed_if_truncated(bus, view)
    last = until if until is not None else await bus.last_sequence()
    position = await anyio.to_thread.run_sync(view.position)
    if position >= last:
        return position
    reader = LogReader(bus, s.evt_stream, batch=batch, max_bytes=max_bytes)
    # One batch at a time, applied right here: nothing else is served from this loop while
    # the view is rebuilt, and a worker thread only traded the GIL with it (each event's
    # apply took longer through a thread on SQLite; see BENCHMARKS.md).
    try:
        while position < last:
            got = await reader.read(position + 1)
            messages = [m for m in got.messages if m.seq <= last]
            entries = [(m.seq, m.subject, m.data) for m in messages]
            if entries:
                position = view.apply(entries, _refused(messages)).position
            if len(entries) < len(got.messages) or not got.messages:
                break  # past ``until``, or the log ends before it
    finally:
        await reader.close()
    return position
