"""Row types of the status view and conversions between rows, states and times.

The rows the view answers queries with (``WorkerRow``, ``RunRow``) are wire contracts, shared
with the client: they live in :mod:`mirrorbus.events.wire`.

Times are integer microseconds since the Unix epoch in the database (see ``tables``), and
timezone-aware UTC ``datetime`` everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mirrorbus.events import JobState

Entry = tuple[int, str, bytes]
"""(stream sequence, subject, payload) of one stored event."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    skipped: int
    dead: int
    position: int


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(value: datetime | None) -> int | None:
    """Microseconds since the epoch, exactly (integer arithmetic: no float rounding)."""
    if value is None or value.tzinfo is None:
        return None
    return (value - _EPOCH) // _US


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _EPOCH + value * _US


def state_row(state: JobState, seq: int) -> dict[str, Any]:
    return {
        "worker": state.worker,
        "name": state.name,
        "status": state.status,
        "is_master": state.is_master,
        "upstream": state.upstream,
        "provider": state.provider,
        "interval": state.interval,
        "last_update": to_us(state.last_update),
        "last_started": to_us(state.last_started),
        "last_ended": to_us(state.last_ended),
        "next_schedule": to_us(state.next_schedule),
        "size": state.size,
        "error_msg": state.error_msg,
        "run_id": state.run_id,
        "attempt": state.attempt,
        "exit_code": state.exit_code,
        "removed": state.removed,
        "description": state.desc,
        "help": state.help,
        "seq": seq,
    }


def row_state(row: Any) -> JobState:
    m = row._mapping
    return JobState(
        worker=m["worker"],
        name=m["name"],
        status=m["status"],
        is_master=m["is_master"],
        upstream=m["upstream"],
        provider=m["provider"],
        interval=m["interval"],
        last_update=from_us(m["last_update"]),
        last_started=from_us(m["last_started"]),
        last_ended=from_us(m["last_ended"]),
        next_schedule=from_us(m["next_schedule"]),
        size=m["size"],
        error_msg=m["error_msg"],
        run_id=m["run_id"],
        attempt=m["attempt"],
        exit_code=m["exit_code"],
        removed=m["removed"],
        desc=m["description"],
        help=m["help"],
    )
