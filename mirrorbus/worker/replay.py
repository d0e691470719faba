"""Restore a worker's job states from its snapshot and the events after it.

Cost: one direct get of the last snapshot, then only the events appended since (at most
``snapshot_every`` of them plus those of an unclean stop), read through a consumer filtered to
this worker's subjects.  It does not grow with the length of history.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mirrorbus.bus import Bus
from mirrorbus.errors import BusError, CodecError
from mirrorbus.events import JobEvent, JobState, decode_event, decode_snapshot, evolve

log = logging.getLogger(__name__)


async def read_snapshot(bus: Bus, worker: str) -> tuple[dict[str, JobState], int]:
    s = bus.subjects
    started = time.monotonic()
    try:
        raw = await bus.js.get_last_msg(s.snap_stream, s.snapshot(worker), direct=True)
    except nats.js.errors.NotFoundError:
        return {}, 0
    except nats.errors.NoRespondersError:
        raise BusError(f"stream {s.snap_stream} does not exist: is the manager running?") from None
    except (nats.errors.TimeoutError, TimeoutError):
        bus.raise_if_denied(s.snapshot(worker), started)
        raise BusError(f"no answer reading the snapshot from {s.snap_stream}") from None
    try:
        snap = decode_snapshot(raw.data or b"")
    except CodecError as exc:
        log.warning("ignoring unreadable snapshot of %s: %s", worker, exc)
        return {}, 0
    return {job.name: job for job in snap.jobs}, snap.seq


@dataclass(frozen=True, slots=True)
class Restored:
    """A worker's job states, the last sequence folded in, and how many events were replayed
    on top of the snapshot (what restore cost depends on)."""

    states: dict[str, JobState]
    seq: int
    snapshot_seq: int
    replayed: int


async def restore(bus: Bus, worker: str, batch: int = 1000) -> Restored:
    """Restore the job states of ``worker`` from its last snapshot and the events after it."""
    states, seq = await read_snapshot(bus, worker)
    snapshot_seq = seq
    s = bus.subjects
    name = s.worker_consumer(worker)
    config = ConsumerConfig(
        name=name,
        filter_subject=s.worker_job_events(worker),
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if seq else DeliverPolicy.ALL,
        opt_start_seq=seq + 1 if seq else None,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=120.0,
        mem_storage=True,
    )
    try:
        await bus.js.delete_consumer(s.evt_stream, name)
    except nats.js.errors.NotFoundError:
        pass
    except nats.errors.NoRespondersError:
        raise BusError(f"stream {s.evt_stream} does not exist: is the manager running?") from None
    try:
        info = await bus.js.add_consumer(s.evt_stream, config)
    except nats.js.errors.APIError as exc:
        raise BusError(f"cannot replay events of {worker}: {exc.description}") from None
    pending = int(info.num_pending or 0)
    folded = 0
    if pending:
        sub = await bus.js.pull_subscribe_bind(
            consumer=name,
            stream=s.evt_stream,
            inbox_prefix=(bus.settings.inbox_prefix or "_INBOX").encode() + b".",
        )
        try:
            while pending:
                try:
                    msgs = await sub.fetch(min(batch, pending), timeout=5)
                except nats.errors.TimeoutError:
                    raise BusError(f"replay of {worker} stalled with {pending} left") from None
                for msg in msgs:
                    meta = msg.metadata
                    seq = max(seq, int(meta.sequence.stream))
                    pending = int(meta.num_pending)
                    try:
                        event = decode_event(msg.data)
                    except CodecError as exc:
                        log.warning("skipping undecodable event %s: %s", meta.sequence.stream, exc)
                        continue
                    if isinstance(event, JobEvent) and event.worker == worker:
                        states[event.job] = evolve(states.get(event.job), event)
                        folded += 1
        finally:
            await sub.unsubscribe()
    with contextlib.suppress(nats.errors.Error):  # else it expires by itself (inactive_threshold)
        await bus.js.delete_consumer(s.evt_stream, name)
    log.info("restored %d jobs of %s (%d events after the snapshot)", len(states), worker, folded)
    return Restored(states=states, seq=seq, snapshot_seq=snapshot_seq, replayed=folded)
