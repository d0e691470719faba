"""The outbox's queue: the worker's ordered, acknowledged append of its events.

``emit`` is synchronous: it folds the event into the worker's live state at once and queues it;
a single publisher task appends queued events in order and retries with the same
``Nats-Msg-Id`` until each is acknowledged, so a retried append is never stored twice.  Being
synchronous, ``emit`` is safe in cleanup code that runs under cancellation.

Pipelining: while appends succeed, up to :data:`WINDOW` queued events are published without
waiting in between (one connection, so the server stores them in publish order) and their
PubAcks are taken in order.  Waiting for each ack before the next publish capped a worker at
one event per round trip.  At the first failure or missing ack the publisher falls back to one
acknowledged append at a time from the oldest unacknowledged event, with back-off; events of
the window that were stored meanwhile come back as duplicates with their first sequence, so
nothing is stored twice and the stream order is the publish order.

The outbox also keeps the fold of the *acknowledged* events with the stream sequence of the last
one: that pair is exactly what a snapshot may claim, and every ``snapshot_every`` job events it
is written to the snapshot stream so that restore cost stays bounded.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable

import anyio

from mirrorbus.bus import AppendPipeline, Bus
from mirrorbus.clock import Clock, new_id
from mirrorbus.errors import BusError
from mirrorbus.events import (
    Event,
    JobEvent,
    JobState,
    WorkerSnapshot,
    encode,
    encode_snapshot,
    evolve,
)
from mirrorbus.worker.outbox.journal import Journal

log = logging.getLogger(__name__)

WINDOW = 256
"""Most events published before their acknowledgements are awaited."""
ACK_TIMEOUT = 5.0
"""Seconds a window's acknowledgements may take before the one-at-a-time path takes over."""


class Outbox:
    """Queues the worker's events, writes each to the :class:`Journal` first, appends them in
    order until acknowledged, and snapshots the acknowledged fold."""

    def __init__(
        self,
        bus: Bus,
        worker: str,
        clock: Clock,
        *,
        acked_states: dict[str, JobState],
        acked_seq: int,
        snapshot_every: int = 200,
        on_acked: Callable[[Event, int], None] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._bus = bus
        self._journal = journal or Journal(None)
        self._worker = worker
        self._clock = clock
        self._queue: deque[tuple[int, str, Event, bytes]] = deque()
        self._wakeup = anyio.Event()
        self._drained = anyio.Event()
        self._drained.set()
        self.acked_states = dict(acked_states)
        self.acked_seq = acked_seq
        self._since_snapshot = 0
        self._snapshot_seq = acked_seq
        self._snapshot_every = snapshot_every
        self._on_acked = on_acked
        self.published = 0
        self._pipe = AppendPipeline(bus)  # subscribes for its acks at its first append

    def put(self, subject: str, event: Event) -> None:
        data = encode(event)
        kept = self._journal.append(subject, event.id, data)  # on disk before anything else
        self._queue.append((kept, subject, event, data))
        self._drained = anyio.Event() if self._drained.is_set() else self._drained
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Publish forever (until cancelled), in order, retrying with back-off."""
        delay = 0.2
        while True:
            if not self._queue:
                self._drained.set()
                self._wakeup = anyio.Event()
                if self._since_snapshot >= self._snapshot_every:
                    await self._try_snapshot()
                await self._wakeup.wait()
                continue
            if delay == 0.2 and len(self._queue) > 1 and await self._publish_window():
                continue  # healthy and more than one event queued: pipelined
            kept, subject, event, data = self._queue[0]
            try:
                seq = await self._bus.append(subject, data, event.id)
            except BusError as exc:
                log.warning(
                    "event %s not yet stored (%s); retrying in %.1fs",
                    type(event).__name__,
                    exc,
                    delay,
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.2
            self._queue.popleft()
            self._journal.remove(kept)
            self.published += 1
            self._acked(event, seq)

    async def _publish_window(self) -> int:
        """Publish up to :data:`WINDOW` queued events, then take their acks in order;
        return how many (from the head of the queue) were acknowledged and dequeued."""
        pipe = self._pipe
        serials: list[int] = []
        try:
            for _kept, subject, event, data in itertools.islice(self._queue, WINDOW):
                serials.append(await pipe.send(subject, data, event.id))
        except Exception as exc:  # nats-py raises a wide mix; the slow path reports it
            log.debug("pipelined publish stopped: %s", exc)
        done = 0
        try:
            with anyio.move_on_after(ACK_TIMEOUT):
                for serial in serials:
                    seq = await pipe.ack(serial)
                    kept, _subject, event, _data = self._queue.popleft()
                    self._journal.remove(kept)
                    self.published += 1
                    self._acked(event, seq)
                    done += 1
        except BusError as exc:  # refused, or no stream: the slow path says which
            log.debug("pipelined append not acknowledged: %s", exc)
        finally:
            if done < len(serials):
                pipe.forget()  # the rest is sent again, one at a time
        return done

    def _acked(self, event: Event, seq: int) -> None:
        self.acked_seq = max(self.acked_seq, seq)
        if isinstance(event, JobEvent):
            self.acked_states[event.job] = evolve(self.acked_states.get(event.job), event)
            self._since_snapshot += 1
        if self._on_acked is not None:
            self._on_acked(event, seq)

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued event is acknowledged; False if time ran out."""
        with anyio.move_on_after(timeout):
            await self._drained.wait()
            return True
        return False

    async def _try_snapshot(self) -> None:
        try:
            await self.snapshot()
        except BusError as exc:
            log.warning("snapshot not written: %s", exc)

    async def snapshot(self) -> None:
        """Write the acknowledged fold and its sequence to the snapshot stream."""
        if self.acked_seq == self._snapshot_seq and self._since_snapshot == 0:
            return
        snap = WorkerSnapshot(
            id=new_id(),
            at=self._clock.now(),
            worker=self._worker,
            seq=self.acked_seq,
            jobs=tuple(self.acked_states[name] for name in sorted(self.acked_states)),
        )
        await self._bus.append(
            self._bus.subjects.snapshot(self._worker), encode_snapshot(snap), snap.id
        )
        self._snapshot_seq = snap.seq
        self._since_snapshot = 0
