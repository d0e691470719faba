"""The manager's query protocol over request/reply (``<prefix>.api.<query>``).

Requests and replies are JSON msgspec Structs.  Every reply is ``{"ok": true, "data": ...}``
or ``{"ok": false, "error": "..."}``, so a client tells "no such worker" from a broken manager.
Every reply also names the manager replica that answered and the position of its view (the
last event applied when the answer was read, at least): any replica that is alive answers
(a queue group), and a client that needs its own write asks with a ``Min-Position`` header
(:data:`MIN_POSITION`); a replica behind it answers ``ok: false`` with its lower position, and
the client asks again.

    jobs      JobsQuery    -> list[JobState]
    workers   (empty)      -> list[WorkerRow]
    history   HistoryQuery -> list[RunRow]
    ping      (empty)      -> PingInfo
    target    TargetQuery  -> Target       (may a command go to this worker and job?)
"""

from __future__ import annotations

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
