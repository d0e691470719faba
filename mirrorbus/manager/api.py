"""The manager's query protocol over request/reply (``<prefix>.api.<query>``).

Requests and replies are JSON msgspec Structs.  Every reply is ``{"ok": true, "data": ...}``
or ``{"ok": false, "error": "..."}``, so a client tells "no such worker" from a broken manager.

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


class Reply(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    ok: bool
    data: T | None = None
    error: str = ""


QUERIES = ("jobs", "workers", "history", "ping", "target")
