"""Reading the event log as it grows: what ``ctl watch`` and ``ctl events`` are made of.

:func:`follow_events` reads the event stream by sequence, without a consumer (batched direct
gets, woken by a core subscription while it follows; see :mod:`mirrorbus.bus.logread`), from a
stream sequence, a time or "now", optionally only for some workers.  It yields every message,
decodable or not: an undecodable one comes with its reason instead of an event, so a tool
shows it and goes on.  A reader certificate is enough: it may read the log, nothing else.

:class:`LiveTable` folds job events into rows with the one ``evolve``; :func:`describe` says in
a few words what an event did (``syncing attempt 1``), for line-per-event output.

    >>> async for entry in follow_events(bus, start=1, until=await bus.last_sequence()):
    ...     print(entry.seq, entry.subject, entry.event or entry.error)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec

from mirrorbus.bus import REPLAYED, Bus, LogReader, Stored, Wakeup
from mirrorbus.errors import CodecError, ConfigError, InvalidName
from mirrorbus.events import (
    AttemptFailed,
    AttemptStarted,
    CommandAnswered,
    CommandSent,
    Event,
    JobConfigured,
    JobDisabled,
    JobEvent,
    JobPaused,
    JobRemoved,
    JobScheduled,
    JobState,
    RunStarted,
    RunSucceeded,
    WorkerAnswered,
    WorkerStarted,
    WorkerStopped,
    check_name,
    decode_event,
    evolve,
)
from mirrorbus.events.subjects import ADMIN_TOKEN, Subjects

__all__ = [
    "LiveTable",
    "LogEntry",
    "describe",
    "event_fields",
    "follow_events",
    "parse_since",
    "utc_text",
]

_PLAIN = frozenset({"id", "at", "v", "worker", "job"})
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime) -> int | datetime:
    """A stream sequence (``1234``), an ISO 8601 time or a time ``10m``/``2h``/``1d`` ago.

    A time without an offset is local time.  Raises ConfigError (key ``--since``)::

        >>> parse_since("2h", datetime(2026, 1, 1, 12, tzinfo=UTC))
        datetime.datetime(2026, 1, 1, 10, 0, tzinfo=datetime.timezone.utc)
    """
    value = text.strip()
    if value.isdigit():
        return int(value)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2)]
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(
            value.replace("Z", "+00:00") if value.endswith("Z") else value
        )
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r}: give a sequence (1234), a time (2026-11-28T15:04:05Z) "
            "or an age (30s, 10m, 2h, 1d, 1w)",
            key="--since",
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.astimezone(UTC)


def utc_text(when: datetime) -> str:
    """``2026-11-28T15:04:05Z``: whole seconds, UTC, as a script wants it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One message of the event stream; ``event`` None when it could not be decoded."""

    seq: int
    subject: str
    time: datetime  # when the stream stored it
    event: Event | None
    error: str = ""
    data: bytes = b""

    @property
    def worker(self) -> str:
        """The worker the event is about (from its subject: ``<prefix>.evt.<worker>...``)."""
        worker = getattr(self.event, "worker", None)
        if isinstance(worker, str) and worker:
            return worker
        return _subject_names(self.subject)[0]

    @property
    def job(self) -> str:
        """The job the event is about, ``-`` for an event about a worker (or the site)."""
        if isinstance(self.event, JobEvent):
            return self.event.job
        return _subject_names(self.subject)[1] if self.event is None else "-"


def _subject_names(subject: str) -> tuple[str, str]:
    """(worker, job) of an event subject, names as written; ``-`` for what it does not name
    (the operators' events, a foreign subject).  The prefix is whatever the subject has."""
    prefix, _, rest = subject.partition(".")
    if rest == f"evt.{ADMIN_TOKEN}":
        return ADMIN_TOKEN, "-"
    try:
        _, worker, job = Subjects(prefix).names_in(subject)
    except InvalidName:
        return "-", "-"
    return worker, job or "-"


def _entry(msg: Stored) -> LogEntry:
    try:
        if msg.replayed:  # shown as what it is, like any message that is no event
            raise CodecError(REPLAYED)
        event: Event | None = decode_event(msg.data)
        error = ""
    except CodecError as exc:
        event, error = None, str(exc)
    return LogEntry(
        seq=msg.seq,
        subject=msg.subject,
        time=msg.time,
        event=event,
        error=error,
        data=msg.data if event is None else b"",
    )


async def follow_events(
    bus: Bus,
    *,
    start: int | datetime | None = None,
    workers: Sequence[str] = (),
    until: int | None = None,
    batch: int = 256,
    poll: float = 1.0,
) -> AsyncIterator[LogEntry]:
    """Yield the events of the log in order, from ``start`` on.

    ``start``: a stream sequence (1 = the beginning), a time (the first event stored at or
    after it), or None for only the events appended from now on.  ``workers``: only their
    events (filtered by the server).  ``until``: stop after that sequence (e.g. the last
    sequence when the caller started); None follows the log until the caller stops iterating.
    """
    s = bus.subjects
    if until is not None and until < 1:
        return
    if isinstance(start, int) and until is not None and start > until:
        return
    prefixes = [s.worker_events(w) for w in workers]

    def wanted(subject: str) -> bool:
        return not prefixes or any(subject == p or subject.startswith(f"{p}.") for p in prefixes)

    reader = LogReader(bus, s.evt_stream, batch=batch)
    wakeup = Wakeup(bus, [x for p in prefixes for x in (p, f"{p}.>")] or [s.all_events])
    try:
        if until is None:
            await wakeup.start()
        position: int | datetime
        if start is None:
            position = await bus.last_sequence() + 1
        elif isinstance(start, datetime):
            position = start
        else:
            position = max(1, start)
        while True:
            wakeup.clear()
            got = await reader.read(position)
            for msg in got.messages:
                if until is not None and msg.seq > until:
                    return
                if wanted(msg.subject):
                    yield _entry(msg)
                if until is not None and msg.seq >= until:
                    return
            if got.messages:
                position = got.last + 1
            if not got.pending:
                if until is not None:
                    return  # nothing more was there when we asked: the log ends here
                await wakeup.wait(poll)
    finally:
        with anyio.CancelScope(shield=True):
            await wakeup.close()
            await reader.close()


# -- describing events ---------------------------------------------------------------------


def _short(when: datetime | None) -> str:
    return "never" if when is None else utc_text(when)


def describe(event: Event) -> str:
    """What an event did, in a few words: ``syncing attempt 1``, ``failed: timeout after 7s``."""
    match event:
        case RunStarted():
            why = "forced" if event.force else event.reason
            return f"pre-syncing ({why})"
        case AttemptStarted():
            return f"syncing attempt {event.attempt}"
        case RunSucceeded():
            size = f" size {event.size}" if event.size else ""
            return f"success attempt {event.attempt}{size}"
        case AttemptFailed():
            code = "" if event.exit_code is None else f" (exit {event.exit_code})"
            more = "" if event.final else ", will retry"
            return f"failed attempt {event.attempt}{more}: {event.error}{code}"
        case JobScheduled():
            return "unscheduled" if event.next_at is None else f"next run {_short(event.next_at)}"
        case JobPaused():
            return "paused"
        case JobDisabled():
            return "disabled"
        case JobConfigured():
            return f"configured ({event.provider}, every {event.interval}s) {event.upstream}"
        case JobRemoved():
            return "removed from the configuration"
        case CommandAnswered() | WorkerAnswered():
            verdict = "accepted" if event.accepted else "rejected"
            text = f": {event.message}" if event.message else ""
            return f"{event.verb} {verdict}{text}"
        case CommandSent():
            target = f"{event.worker}/{event.job}" if event.job else event.worker
            return f"{event.verb} sent to {target}"
        case WorkerStarted():
            return f"worker started ({len(event.jobs)} jobs, {event.hostname} pid {event.pid})"
        case WorkerStopped():
            return f"worker stopped: {event.reason}" if event.reason else "worker stopped"
    # A type this reader has no words for: its tag and fields, so nothing is hidden.
    fields = event_fields(event)
    kind = fields.pop("type", type(event).__name__)
    extra = " ".join(
        f"{k}={v}" for k, v in fields.items() if k not in _PLAIN and v not in ("", None)
    )
    return f"{kind} {extra}".rstrip()


def event_fields(event: Event) -> dict[str, Any]:
    """An event's fields as plain data, with its ``type``; for one-line and JSON output."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return data


# -- the live table ------------------------------------------------------------------------


@dataclass
class LiveTable:
    """Rows of job states, kept current by folding events with ``evolve``.

    Start it from the manager's view (``Control.jobs()``), then :meth:`apply` every event
    after the view's position.  Applying an event the view already contained is harmless:
    every field ``evolve`` sets is set from the latest event that sets it, so replaying an
    overlap of events ends in the same state.
    """

    workers: frozenset[str] = frozenset()
    rows: dict[tuple[str, str], JobState] = field(default_factory=dict)
    last_seq: int = 0
    last_time: datetime | None = None
    events: int = 0

    def load(self, jobs: Iterable[JobState]) -> None:
        for job in jobs:
            if self._wanted(job.worker) and not job.removed:
                self.rows[(job.worker, job.name)] = job

    def _wanted(self, worker: str) -> bool:
        return not self.workers or worker in self.workers

    def apply(self, entry: LogEntry) -> bool:
        """Fold one entry; True if a row changed (appeared, changed or went away)."""
        self.last_seq = max(self.last_seq, entry.seq)
        self.last_time = entry.time
        self.events += 1
        event = entry.event
        if not isinstance(event, JobEvent) or not self._wanted(event.worker):
            return False
        key = (event.worker, event.job)
        before = self.rows.get(key)
        if isinstance(event, JobRemoved):
            return self.rows.pop(key, None) is not None
        after = evolve(before, event)
        self.rows[key] = after
        return after != before

    def jobs(self) -> list[JobState]:
        return [self.rows[k] for k in sorted(self.rows)]


def checked_workers(workers: Iterable[str]) -> list[str]:
    return [check_name(w, "worker name") for w in workers]
