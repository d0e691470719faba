"""Restore a worker's job states from its snapshot and the events after it.

(Not a replay: in the worker that word is kept for the outbox resending what a previous run
left unacknowledged, :func:`mirrorbus.worker.outbox.journal.replay`, which runs first.)

Cost: one direct get of the last snapshot, then only the events appended since (at most
``snapshot_every`` of them plus those of an unclean stop), read by sequence with batched direct
gets filtered to this worker's subjects (no consumer: a worker may not make one, see
:mod:`mirrorbus.bus.logread`).  It does not grow with the length of history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mirrorbus.bus import REPLAYED, Bus, LogReader
from mirrorbus.errors import BusError, BusTimeout, CodecError, NoResponders, NotFound
from mirrorbus.events import JobEvent, JobState, decode_event, decode_snapshot, evolve

log = logging.getLogger(__name__)


async def read_snapshot(bus: Bus, worker: str) -> tuple[dict[str, JobState], int]:
    s = bus.subjects
    try:
        raw = await bus.get_message(s.snap_stream, last_on=s.snapshot(worker))
    except NotFound:
        return {}, 0
    except NoResponders:
        raise BusError(f"stream {s.snap_stream} does not exist: is the manager running?") from None
    except BusTimeout:
        raise BusError(f"no answer reading the snapshot from {s.snap_stream}") from None
    if raw.replayed:
        log.warning("ignoring the snapshot of %s: it is %s", worker, REPLAYED)
        return {}, 0
    try:
        snap = decode_snapshot(raw.data)
    except CodecError as exc:
        log.warning("ignoring unreadable snapshot of %s: %s", worker, exc)
        return {}, 0
    return {job.name: job for job in snap.jobs}, snap.seq


@dataclass(frozen=True, slots=True)
class Restored:
    """A worker's job states, the last sequence folded in, and how many events were folded
    on top of the snapshot (what restore cost depends on)."""

    states: dict[str, JobState]
    seq: int
    snapshot_seq: int
    folded: int


async def restore(bus: Bus, worker: str, batch: int = 1000) -> Restored:
    """Restore the job states of ``worker`` from its last snapshot and the events after it."""
    states, seq = await read_snapshot(bus, worker)
    snapshot_seq = seq
    s = bus.subjects
    reader = LogReader(bus, s.evt_stream, subject=s.worker_job_events(worker), batch=batch)
    folded = 0
    position = seq + 1
    try:
        while True:
            got = await reader.read(position)
            for msg in got.messages:
                seq = max(seq, msg.seq)
                if msg.replayed:
                    log.warning("skipping event %d: it is %s", msg.seq, REPLAYED)
                    continue
                try:
                    event = decode_event(msg.data)
                except CodecError as exc:
                    log.warning("skipping undecodable event %s: %s", msg.seq, exc)
                    continue
                if isinstance(event, JobEvent) and event.worker == worker:
                    states[event.job] = evolve(states.get(event.job), event)
                    folded += 1
            if got.messages:
                position = got.last + 1
            if not got.pending:
                break
    except BusError as exc:
        raise BusError(f"cannot read the events of {worker} after its snapshot: {exc}") from None
    finally:
        await reader.close()
    log.info("restored %d jobs of %s (%d events after the snapshot)", len(states), worker, folded)
    return Restored(states=states, seq=seq, snapshot_seq=snapshot_seq, folded=folded)
