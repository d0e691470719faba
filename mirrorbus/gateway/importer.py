"""``mirrorbus import tunasync``: a tunasync manager's job statuses, recorded as events.

For a site that switches all at once: the history its status page shows (last success, last
start and end, size, paused and disabled jobs, next run) must not start from zero.  The source
is what tunasync's manager serves, read from a running manager or from a saved copy:

* ``GET /jobs`` items (13 fields, no worker: ``--worker`` names it; times from the ``*_ts``
  seconds, which carry no offset to get wrong);
* ``GET /workers/<id>/jobs`` items (tunasync's ``MirrorStatus``, with ``worker`` and RFC 3339
  times);
* a manager's base URL (``http://host:14242``): every worker of ``GET /workers``, each read
  through ``GET /workers/<id>/jobs``.

Each job becomes the events a worker would have emitted for that history, at the historical
times (:func:`history_events`), so that the fold gives the same status, times and size, and a
native worker that takes the job over restores it like any other: a paused job stays paused,
a recent success does not run again before its interval.  Runs recorded this way have the
reason ``import``.

The events are appended with the gateway's certificate, which the server allows only for
workers without a certificate of their own; import before issuing the workers' certificates
(or with ``--as-worker``, each worker's own).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import quote, urlsplit

from mirrorbus.bus import Bus
from mirrorbus.clock import Clock, SystemClock, new_id
from mirrorbus.errors import (
    CodecError,
    ConfigError,
    MirrorbusError,
    PermissionDenied,
    SourceError,
)
from mirrorbus.events import (
    STATUSES,
    AttemptFailed,
    AttemptStarted,
    JobConfigured,
    JobDisabled,
    JobEvent,
    JobPaused,
    JobScheduled,
    RunStarted,
    RunSucceeded,
    SizeSet,
    Status,
    check_name,
    encode,
)
from mirrorbus.gateway.translate import PROVIDER, UNKNOWN_SIZES
from mirrorbus.gateway.wire import go_time

ZERO_TS = -62135596800
REASON = "import"
HTTP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class TunasyncJob:
    """One job as tunasync's manager showed it; times None when tunasync's zero time."""

    worker: str
    name: str
    status: Status
    is_master: bool = True
    upstream: str = ""
    size: str = ""
    error_msg: str = ""
    last_update: datetime | None = None
    last_started: datetime | None = None
    last_ended: datetime | None = None
    next_schedule: datetime | None = None


# -- reading -------------------------------------------------------------------------------


def _fetch(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"{url}: cannot read: {exc}") from None
    except ValueError as exc:
        raise SourceError(f"{url}: not JSON: {exc}") from None


def read_items(source: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, item) for every job item of ``source`` (URL or file)."""
    if source.startswith(("http://", "https://")):
        parts = urlsplit(source)
        if parts.path in ("", "/"):
            base = source.rstrip("/")
            workers = _fetch(f"{base}/workers") or []
            items = []
            for w in workers:
                wid = str(w.get("id", "")) if isinstance(w, dict) else ""
                url = f"{base}/workers/{quote(wid, safe='')}/jobs"
                items += [(url, i) for i in _items(_fetch(url), url)]
            return items
        return [(source, i) for i in _items(_fetch(source), source)]
    path = Path(source)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SourceError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SourceError(f"{source}: not JSON: {exc}") from None
    return [(source, i) for i in _items(data, source)]


def _items(data: Any, where: str) -> list[dict[str, Any]]:
    if data is None:  # tunasync's empty list
        return []
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise SourceError(f"{where}: not a list of tunasync job statuses")
    return data


def _time(item: dict[str, Any], key: str, where: str) -> datetime | None:
    ts = item.get(f"{key}_ts")
    if isinstance(ts, int) and not isinstance(ts, bool):
        return None if ts <= ZERO_TS else datetime.fromtimestamp(ts, UTC)
    text = item.get(key, "")
    if not isinstance(text, str):
        raise SourceError(f"{where}: job {item.get('name')!r}: {key} is not a time")
    try:
        return go_time(text)
    except CodecError as exc:
        raise SourceError(f"{where}: job {item.get('name')!r}: {key}: {exc}") from None


def parse_job(item: dict[str, Any], where: str, worker: str | None) -> TunasyncJob:
    """One item of tunasync's ``/jobs`` or ``/workers/<id>/jobs``."""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise SourceError(f"{where}: an item has no name")
    owner = item.get("worker") or worker
    if not isinstance(owner, str) or not owner:
        raise SourceError(
            f"{where}: job {name!r} names no worker (GET /jobs does not): pass --worker NAME"
        )
    status = item.get("status", "none")
    if status not in STATUSES:
        raise SourceError(f"{where}: job {name!r}: unknown status {status!r}")
    try:
        check_name(owner, "worker name")
        check_name(name, "job name")
    except MirrorbusError as exc:
        raise SourceError(f"{where}: {exc}") from None
    size = item.get("size", "")
    return TunasyncJob(
        worker=owner,
        name=name,
        status=status,
        is_master=bool(item.get("is_master", True)),
        upstream=str(item.get("upstream", "")),
        size="" if size in UNKNOWN_SIZES else str(size),
        error_msg=str(item.get("error_msg", "")),
        last_update=_time(item, "last_update", where),
        last_started=_time(item, "last_started", where),
        last_ended=_time(item, "last_ended", where),
        next_schedule=_time(item, "next_schedule", where),
    )


# -- as events -------------------------------------------------------------------------------


class _Meta(TypedDict):
    worker: str
    job: str


def history_events(job: TunasyncJob, now: datetime, new_id: Callable[[], str]) -> list[JobEvent]:
    """Events whose fold is ``job``: runs at their historical times, then its status.

    The last success is a run started at ``last_started`` (when that is not later) and
    succeeded at ``last_update``; a failure after it, a run that failed at ``last_ended``; a
    start after both, a run still open (closed as interrupted by the worker that takes the
    job over, like any run a crash cut off).
    """
    m: _Meta = {"worker": job.worker, "job": job.name}
    lu, ls, le = job.last_update, job.last_started, job.last_ended
    events: list[JobEvent] = [
        JobConfigured(
            id=new_id(),
            at=now,
            **m,
            upstream=job.upstream,
            is_master=job.is_master,
            provider=PROVIDER,
        )
    ]
    size_told = False
    if lu is not None:
        run = new_id()
        start = ls if ls is not None and ls <= lu and (le is None or le <= lu) else lu
        events.append(RunStarted(id=new_id(), at=start, **m, run_id=run, reason=REASON))
        events.append(
            RunSucceeded(
                id=new_id(), at=lu, **m, run_id=run, attempt=1, size=job.size, exit_code=None
            )
        )
        size_told = bool(job.size)
    if le is not None and (lu is None or le > lu):
        run = new_id()
        start = ls if ls is not None and ls <= le and (lu is None or ls > lu) else le
        events.append(RunStarted(id=new_id(), at=start, **m, run_id=run, reason=REASON))
        error = job.error_msg or "failed (imported from tunasync)"
        events.append(AttemptFailed(id=new_id(), at=le, **m, run_id=run, attempt=1, error=error))
    latest = max((t for t in (lu, le) if t is not None), default=None)
    if ls is not None and (latest is None or ls > latest):
        run = new_id()
        events.append(RunStarted(id=new_id(), at=ls, **m, run_id=run, reason=REASON))
        if job.status == "syncing":
            events.append(AttemptStarted(id=new_id(), at=ls, **m, run_id=run, attempt=1))
    if job.size and not size_told:
        events.append(SizeSet(id=new_id(), at=now, **m, size=job.size))
    if job.status == "paused":
        events.append(JobPaused(id=new_id(), at=now, **m))
    elif job.status == "disabled":
        events.append(JobDisabled(id=new_id(), at=now, **m))
    elif job.next_schedule is not None and job.status not in ("pre-syncing", "syncing"):
        events.append(JobScheduled(id=new_id(), at=now, **m, next_at=job.next_schedule))
    return events


def check_source(source: str) -> None:
    if not source.startswith(("http://", "https://")) and not Path(source).exists():
        raise ConfigError("neither an http(s) URL nor an existing file", file=source)


async def record(bus: Bus, jobs: Sequence[TunasyncJob], clock: Clock | None = None) -> int:
    """Append the history of every job (acknowledged, in order); return how many events."""
    now = (clock or SystemClock()).now()
    s = bus.subjects
    count = 0
    for job in jobs:
        subject = s.job_events(job.worker, job.name)
        for event in history_events(job, now, new_id):
            try:
                await bus.append(subject, encode(event), event.id)
            except PermissionDenied:
                raise PermissionDenied(
                    f"the server refused {bus.settings.cert.name} the events of worker "
                    f"{job.worker}: it has a mirrorbus certificate of its own, so only it may "
                    f"write them; import before issuing it, or with --as-worker"
                ) from None
            count += 1
    return count
