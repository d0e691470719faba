"""Wire contracts beside the events: what the manager's queries and the workers' job logs
carry over request/reply, and the rows the answers hold.

The client (:mod:`mirrorbus.control`) and the services that answer it (the manager's
queries, the worker's log server) share these types, so they live here, with the events,
and not inside either service: the client imports no service, and a service changes what it
answers only by changing a contract both sides see.  Plain msgspec Structs: no NATS, no SQL.

**Queries** to the manager (``<prefix>.api.<query>``).  Requests and replies are JSON
msgspec Structs.  Every reply is ``{"ok": true, "data": ...}`` or ``{"ok": false, "error":
"..."}``, so a client tells "no such worker" from a broken manager.  Every reply also names the
manager replica that answered and the position of its view (the last event applied when the
answer was read, at least): any replica that is alive answers (a queue group), and a client
that needs its own write asks with a ``Min-Position`` header (:data:`MIN_POSITION`); a replica
behind it answers ``ok: false`` with its lower position, and the client asks again.

    jobs      JobsQuery    -> list[JobState]
    workers   (empty)      -> list[WorkerRow]
    history   HistoryQuery -> list[RunRow]
    ping      (empty)      -> PingInfo
    target    TargetQuery  -> Target       (may a command go to this worker and job?)

**Job logs** from a worker (``<prefix>.logs.<worker>``): a :class:`LogRequest` names a job and
a byte offset (negative: the last that many bytes); the :class:`LogChunk` carries the text
from there, the file it came from, where to continue, and whether the job is still running,
which is all ``ctl logs -f`` needs to follow a sync.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class JobsQuery(msgspec.Struct, frozen=True, kw_only=True):
    worker: str | None = None
    include_removed: bool = False


class HistoryQuery(msgspec.Struct, frozen=True, kw_only=True):
    worker: str
    job: str
    limit: int = 20


class TargetQuery(msgspec.Struct, frozen=True, kw_only=True):
    worker: str
    job: str | None = None


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """What the view knows of a command's target: the worker (by its record or its jobs),
    the job (flushed ones included: a start brings them back), and, when the worker is
    unknown, the names of those it knows."""

    worker: bool
    job: bool
    workers: list[str] = []


class PingInfo(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    version: str
    replica: str = ""
    instance: str = ""
    """A random id of the running process: two processes with one replica name differ."""
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    """Wall-clock time the process started (seconds since the epoch)."""
    view_bytes: int | None = None
    """Bytes the replica's status view takes (None: not known); ``ctl status`` shows it."""


class Reply(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    ok: bool
    data: T | None = None
    error: str = ""
    replica: str = ""
    """The manager replica that answered."""
    position: int = 0
    """The answering view's position: every event up to it is in the answer."""


MIN_POSITION = "Min-Position"
"""Request header: answer only from a view at or past this event (read your own writes)."""


QUERIES = ("jobs", "workers", "history", "ping", "target")


# -- rows the answers carry ----------------------------------------------------------------


class WorkerRow(msgspec.Struct, frozen=True, kw_only=True):
    """A worker as the status view knows it (``workers``)."""

    name: str
    online: bool
    started_at: datetime | None
    stopped_at: datetime | None
    last_seen: datetime | None
    version: str
    hostname: str
    pid: int
    jobs: int
    concurrent: int
    last_heartbeat: datetime | None = None
    url: str = ""  # where an old tunasync worker takes commands (through the gateway)


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
    """One run of a job as the status view recorded it (``history``)."""

    worker: str
    job: str
    run_id: str
    reason: str
    forced: bool
    started_at: datetime
    ended_at: datetime | None
    result: str
    attempts: int
    size: str
    error: str
    exit_code: int | None


# -- job logs ------------------------------------------------------------------------------


class LogRequest(msgspec.Struct, frozen=True, kw_only=True):
    job: str
    offset: int = -16384
    max_bytes: int = 65536
    file: str = ""  # the file the caller followed so far ("" = the latest)


class LogChunk(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    error: str = ""
    file: str = ""
    data: str = ""
    offset: int = 0  # where the next request continues
    size: int = 0
    running: bool = False
    latest: str = ""  # the newest log file now (differs from file when a new attempt began)
