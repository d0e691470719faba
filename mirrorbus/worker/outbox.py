"""The worker's ordered, acknowledged append of its events.

``emit`` is synchronous: it folds the event into the worker's live state at once and queues it;
a single publisher task appends queued events in order, waiting for each PubAck, and retries
with the same ``Nats-Msg-Id`` until it is acknowledged, so a retried append is never stored
twice.  Being synchronous, ``emit`` is safe in cleanup code that runs under cancellation.

The outbox also keeps the fold of the *acknowledged* events with the stream sequence of the last
one: that pair is exactly what a snapshot may claim, and every ``snapshot_every`` job events it
is written to the snapshot stream so that restore cost stays bounded.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import anyio

from mirrorbus.bus import Bus
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
from mirrorbus.worker.journal import Journal

log = logging.getLogger(__name__)


class Outbox:
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
