"""One transaction's worth of events applied to the status view (see ``status_view``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Connection

from mirrorbus.errors import CodecError, InvalidName
from mirrorbus.events import (
    AdminEvent,
    AttemptFailed,
    AttemptStarted,
    CommandAnswered,
    CommandSent,
    DisabledFlushed,
    Event,
    JobEvent,
    JobState,
    RunStarted,
    RunSucceeded,
    Subjects,
    WorkerAnswered,
    WorkerEvent,
    WorkerForgotten,
    WorkerStarted,
    WorkerStopped,
    decode_event,
    evolve,
)
from projections import statements as q
from projections import tables as t
from projections.rows import ApplyResult, Entry, from_us, row_state, state_row, to_us

DEAD_LETTER_EXCERPT = 1024
"""Bytes of a dead letter's message kept in the view (its start; the log keeps it whole)."""

_INTEGER = (-(2**31), 2**31 - 1)
"""Range of the view's ``Integer`` columns on every backend (PostgreSQL's int4)."""

_TEXT_COLUMNS: dict[str, Any] = {
    "run_id": t.runs.c.run_id,
    "size": t.runs.c.size,
    "reason": t.runs.c.reason,
    "verb": t.commands.c.verb,
    "cmd_id": t.commands.c.cmd_id,
    "version": t.workers.c.version,
    "provider": t.jobs.c.provider,
}
_TEXT_LIMITS: dict[str, int] = {name: c.type.length for name, c in _TEXT_COLUMNS.items()}
"""Event fields stored in a column of limited length (``String(n)``), by field name."""


def _plan(cls: type) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...], tuple[str, ...]]:
    """Which fields of an event class hold integers, length-limited texts and times."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    ints: list[str] = []
    times: list[str] = []
    for field in info.fields:
        kinds = (
            field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        )
        if any(isinstance(k, msgspec.inspect.IntType) for k in kinds):
            ints.append(field.name)
        if any(isinstance(k, msgspec.inspect.DateTimeType) for k in kinds):
            times.append(field.name)
    texts = tuple((f.name, _TEXT_LIMITS[f.name]) for f in info.fields if f.name in _TEXT_LIMITS)
    return tuple(ints), texts, tuple(times)


_SAFE_TIMES = (datetime(2, 1, 1, tzinfo=UTC), datetime(9998, 12, 31, tzinfo=UTC))
"""Times in this range are stored and read back on every backend; only others are tried."""

_PLANS: dict[type, tuple[tuple[str, ...], tuple[tuple[str, int], ...], tuple[str, ...]]] = {}


def _check_storable(ev: Event, data: bytes) -> None:
    """Raise CodecError if a value of ``ev`` does not fit the view's columns.

    The schema lets through values that a table cannot hold (an exit code of 2**64, a run id
    of 100 characters, a NUL in a text, a time whose UTC year is 0); storing one would fail
    its whole batch, again at every retry, and stop the projector at that event for good.
    The limits are PostgreSQL's and apply on SQLite too, so that both backends set aside the
    same events and give the same view.  (Checked per class, on the fields that can break a
    column: this runs for every event of the log.)
    """
    cls = type(ev)
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _plan(cls)
    ints, texts, times = plan
    for name in ints:
        value = getattr(ev, name)
        if isinstance(value, int) and not _INTEGER[0] <= value <= _INTEGER[1]:
            raise CodecError(f"{cls.__name__}: {name} {value} is out of range")
    for name, limit in texts:
        value = getattr(ev, name)
        if len(value) > limit:
            raise CodecError(f"{cls.__name__}: {name} of {len(value)} characters (at most {limit})")
    if b"\\u0000" in data:  # JSON spells a NUL \u0000: only then look at every text
        for name in ev.__struct_fields__:
            value = getattr(ev, name)
            if isinstance(value, str) and "\x00" in value:
                raise CodecError(f"{cls.__name__}: NUL character in {name}")
    for name in times:
        value = getattr(ev, name)
        if value is None or (value.tzinfo and _SAFE_TIMES[0] <= value <= _SAFE_TIMES[1]):
            continue
        try:
            from_us(to_us(value))  # it must read back too, or its job row is unreadable
        except (OverflowError, ValueError, OSError):
            raise CodecError(f"{cls.__name__}: {name} is out of range") from None


@functools.lru_cache(maxsize=1 << 16)
def _expected_subject(subjects: Subjects, worker: str, job: str | None) -> str:
    """The subject an event of ``worker`` (and ``job``) must arrive on; raises InvalidName.
    Remembered: every event is checked, and the names validated are few (refusals are not
    remembered)."""
    if job is None:
        return subjects.worker_events(worker)
    return subjects.job_events(worker, job)


class Batch:
    """One transaction's worth of events, with the rows it touches cached."""

    def __init__(self, conn: Connection, subjects: Subjects, sqlite: bool) -> None:
        self.conn = conn
        self.subjects = subjects
        self.sqlite = sqlite
        self.states: dict[tuple[str, str], JobState] = {}
        self.state_seq: dict[tuple[str, str], int] = {}
        self.known_jobs: set[tuple[str, str]] = set()
        self.runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.known_runs: set[tuple[str, str, str]] = set()
        self.fetched_jobs: set[tuple[str, str]] = set()  # looked up already by _prefetch
        self.fetched_runs: set[str] = set()
        self.workers: dict[str, dict[str, Any]] = {}
        self.known_workers: set[str] = set()
        self.purged_workers: set[str] = set()
        self.commands: list[dict[str, Any]] = []
        self.sent: dict[str, dict[str, Any]] = {}  # CommandSent of this batch, by cmd_id
        self._checking: bool | None = None  # any CommandSent in the log yet (looked up once)
        self.dead: list[dict[str, Any]] = []

    def _position(self) -> int:
        # FOR UPDATE on PostgreSQL serialises concurrent projectors (rebuild + run).
        query = q.POSITION if self.sqlite else q.POSITION_LOCKED
        return int(self.conn.execute(query).scalar() or 0)

    def apply(self, entries: Sequence[Entry], refused: Mapping[int, str]) -> ApplyResult:
        position = self._position()
        floors: dict[str, int] = {worker: seq for worker, seq in self.conn.execute(q.FLOORS)}
        applied = skipped = 0
        sent_on: dict[int, str] = {}  # subject of each CommandSent, by sequence
        decoded: list[tuple[int, Event]] = []
        for seq, subject, data in entries:
            if seq <= position:
                skipped += 1
                continue
            position = seq
            try:
                if seq in refused:
                    raise CodecError(refused[seq])
                ev = decode_event(data)
                self._check_subject(subject, ev)
                _check_storable(ev, data)
                if isinstance(ev, JobEvent) and seq <= floors.get(ev.worker, 0):
                    skipped += 1  # already in the snapshot the view was seeded from
                    continue
            except CodecError as exc:
                self.dead.append(
                    {
                        "seq": seq,
                        "subject": subject,
                        "reason": exc.reason,
                        # An excerpt: the whole message stays in the log, and a flood of big
                        # malformed events must not fill the view's database.
                        "data": bytes(data[:DEAD_LETTER_EXCERPT]),
                        "at": to_us(datetime.now(UTC)),
                    }
                )
                continue
            decoded.append((seq, ev))
            if isinstance(ev, CommandSent):
                sent_on[seq] = subject
        self._prefetch([ev for _, ev in decoded if isinstance(ev, JobEvent)])
        for seq, ev in decoded:
            applied += 1
            if isinstance(ev, JobEvent):
                self._job_event(seq, ev)
            elif isinstance(ev, CommandSent):
                self._command_sent(seq, sent_on[seq], ev)
            elif isinstance(ev, AdminEvent):
                self._admin_event(seq, ev)
            else:
                self._worker_event(seq, ev)
        self._flush(position)
        return ApplyResult(applied=applied, skipped=skipped, dead=len(self.dead), position=position)

    def _prefetch(self, events: Sequence[JobEvent]) -> None:
        """Load the stored rows this batch will touch in a few queries, not one per event."""
        jobs = {(ev.worker, ev.job) for ev in events}
        run_ids = {
            ev.run_id
            for ev in events
            if isinstance(ev, RunStarted | AttemptStarted | RunSucceeded | AttemptFailed)
        }
        by_worker: dict[str, list[str]] = {}
        for worker, name in sorted(jobs):
            by_worker.setdefault(worker, []).append(name)
        for worker, names in by_worker.items():
            for chunk in _chunks(names, 400):
                params = {"worker": worker, "names": list(chunk)}
                for row in self.conn.execute(q.JOBS_NAMED, params):
                    key = (row.worker, row.name)
                    if key not in self.states:
                        self.states[key] = row_state(row)
                        self.known_jobs.add(key)
        for chunk in _chunks(sorted(run_ids), 400):
            for row in self.conn.execute(q.RUNS_WITH_IDS, {"run_ids": list(chunk)}):
                run_key = (row.worker, row.job, row.run_id)
                if run_key not in self.runs:
                    self.runs[run_key] = dict(row._mapping)
                    self.known_runs.add(run_key)
        self.fetched_jobs = jobs
        self.fetched_runs = run_ids

    def _check_subject(self, subject: str, ev: JobEvent | WorkerEvent | AdminEvent) -> None:
        if isinstance(ev, AdminEvent) and _operator_token(self.subjects, subject):
            return  # an operator's own subject (the token names who wrote it)
        if isinstance(ev, AdminEvent):
            if subject != self.subjects.admin_events:
                raise CodecError(
                    f"{type(ev).__name__} arrived on foreign subject {subject} "
                    f"(expected {self.subjects.admin_events})"
                )
            return
        try:
            expected = _expected_subject(
                self.subjects, ev.worker, ev.job if isinstance(ev, JobEvent) else None
            )
        except Exception as exc:  # InvalidName: a name no worker may use
            raise CodecError(f"invalid name in event: {exc}") from None
        if subject != expected:
            raise CodecError(
                f"{type(ev).__name__} of {ev.worker} arrived on foreign subject "
                f"{subject} (expected {expected})"
            )

    # -- job events ------------------------------------------------------------------------
    def _state(self, key: tuple[str, str]) -> JobState | None:
        if key not in self.states and key not in self.fetched_jobs:
            row = self.conn.execute(q.JOB, {"worker": key[0], "name": key[1]}).first()
            if row is None:
                return None
            self.states[key] = row_state(row)
            self.known_jobs.add(key)
        return self.states.get(key)

    def _job_event(self, seq: int, ev: JobEvent) -> None:
        key = (ev.worker, ev.job)
        old = self._state(key)
        new = evolve(old, ev)
        if new is not old:  # the fold left the job as it was (an answer): its row stays
            self.states[key] = new
            self.state_seq[key] = seq
        self._touch_worker(seq, ev.worker, ev.at)
        match ev:
            case RunStarted():
                # Via _run: the same run may be stored already (an append retried after the
                # duplicate window); its start then simply restates the row.
                run = self._run(ev.worker, ev.job, ev.run_id, ev.at, seq)
                run.update(
                    reason=ev.reason,
                    forced=ev.force,
                    started_at=to_us(ev.at),
                    ended_at=None,
                    result="running",
                    attempts=0,
                    size="",
                    error="",
                    exit_code=None,
                    seq=seq,
                )
            case AttemptStarted():
                run = self._run(ev.worker, ev.job, ev.run_id, ev.at, seq)
                run.update(attempts=max(run["attempts"], ev.attempt), seq=seq)
            case RunSucceeded():
                run = self._run(ev.worker, ev.job, ev.run_id, ev.at, seq)
                run.update(
                    ended_at=to_us(ev.at),
                    result="success",
                    attempts=ev.attempt,
                    size=ev.size,
                    error="",
                    exit_code=ev.exit_code,
                    seq=seq,
                )
            case AttemptFailed():
                run = self._run(ev.worker, ev.job, ev.run_id, ev.at, seq)
                run.update(
                    attempts=max(run["attempts"], ev.attempt),
                    error=ev.error,
                    exit_code=ev.exit_code,
                    seq=seq,
                )
                if ev.final:
                    run.update(ended_at=to_us(ev.at), result="failed")
            case CommandAnswered():
                self._command(seq, ev)

    def _run(self, worker: str, job: str, run_id: str, at: datetime, seq: int) -> dict[str, Any]:
        key = (worker, job, run_id)
        if key not in self.runs:
            row = (
                None
                if run_id in self.fetched_runs
                else self.conn.execute(
                    q.RUN, {"worker": worker, "job": job, "run_id": run_id}
                ).first()
            )
            if row is not None:
                self.runs[key] = dict(row._mapping)
                self.known_runs.add(key)
            else:  # its start is not in the log (older than the log's retention)
                self.runs[key] = {
                    "worker": worker,
                    "job": job,
                    "run_id": run_id,
                    "reason": "unknown",
                    "forced": False,
                    "started_at": to_us(at),
                    "ended_at": None,
                    "result": "running",
                    "attempts": 0,
                    "size": "",
                    "error": "",
                    "exit_code": None,
                    "seq": seq,
                }
        return self.runs[key]

    def _command(self, seq: int, ev: CommandAnswered | WorkerAnswered) -> None:
        """Record an answer.  Once the log holds any CommandSent (ctl versions that write one
        before each command), only an answer to a command sent so, by the worker it was sent
        to, is recorded, with the issuer the CommandSent's subject named: a worker cannot
        answer a command nobody sent, nor name its issuer.  Before that, as before."""
        issuer = ev.issuer
        if self._checks_commands():
            sent = self._sent(ev.cmd_id)
            if sent is None or sent["worker"] != ev.worker:
                return
            issuer = sent["issuer"]
        self.commands.append(
            {
                "cmd_id": ev.cmd_id,
                "worker": ev.worker,
                "job": ev.job,
                "verb": ev.verb,
                "accepted": ev.accepted,
                "message": ev.message,
                "issuer": issuer,
                "at": to_us(ev.at),
                "seq": seq,
            }
        )

    def _checks_commands(self) -> bool:
        if self._checking is None:
            self._checking = self.conn.execute(q.ANY_SENT).first() is not None
        return self._checking or bool(self.sent)

    def _sent(self, cmd_id: str) -> dict[str, Any] | None:
        if cmd_id in self.sent:
            return self.sent[cmd_id]
        row = self.conn.execute(q.SENT_COMMAND, {"id": cmd_id}).first()
        return None if row is None else dict(row._mapping)

    def _command_sent(self, seq: int, subject: str, ev: CommandSent) -> None:
        token = _operator_token(self.subjects, subject)
        issuer = f"CN=mirrorbus-{token}" if token else ev.by  # the gateway's, as it says
        if ev.cmd_id not in self.sent and self._sent(ev.cmd_id) is None:
            self.sent[ev.cmd_id] = {
                "cmd_id": ev.cmd_id,
                "worker": ev.worker,
                "job": ev.job,
                "issuer": issuer,
                "seq": seq,
            }

    # -- worker events -----------------------------------------------------------------------
    def _worker(self, name: str, seq: int) -> dict[str, Any]:
        if name not in self.workers:
            row = None
            if name not in self.purged_workers:
                row = self.conn.execute(q.WORKER, {"name": name}).first()
            if row is not None:
                self.workers[name] = dict(row._mapping)
                self.known_workers.add(name)
            else:
                self.workers[name] = {
                    "name": name,
                    "online": True,
                    "started_at": None,
                    "stopped_at": None,
                    "last_seen": None,
                    "version": "",
                    "hostname": "",
                    "pid": 0,
                    "jobs": 0,
                    "concurrent": 0,
                    "seq": seq,
                    "url": "",
                }
        return self.workers[name]

    def _touch_worker(self, seq: int, name: str, at: datetime) -> None:
        w = self._worker(name, seq)
        seen = to_us(at)
        if w["last_seen"] is None or (seen is not None and seen > w["last_seen"]):
            w["last_seen"] = seen
        w["seq"] = seq

    def _worker_event(self, seq: int, ev: WorkerEvent) -> None:
        self._touch_worker(seq, ev.worker, ev.at)
        w = self.workers[ev.worker]
        match ev:
            case WorkerStarted():
                w.update(
                    online=True,
                    started_at=to_us(ev.at),
                    version=ev.version,
                    hostname=ev.hostname,
                    pid=ev.pid,
                    jobs=len(ev.jobs),
                    concurrent=ev.concurrent,
                    url=ev.url,
                )
            case WorkerStopped():
                w.update(online=False, stopped_at=to_us(ev.at))
            case WorkerAnswered():
                self._command(seq, ev)

    # -- writing -----------------------------------------------------------------------------
    # -- admin events -------------------------------------------------------------------------
    def _admin_event(self, seq: int, ev: AdminEvent) -> None:
        match ev:
            case WorkerForgotten():
                self.workers.pop(ev.worker, None)
                self.known_workers.discard(ev.worker)
                self.purged_workers.add(ev.worker)
            case DisabledFlushed():
                stored = self.conn.execute(q.DISABLED_JOBS).all()
                for worker, name in stored:
                    self._state((worker, name))
                for key, state in list(self.states.items()):
                    if state.status == "disabled" and not state.removed:
                        self.states[key] = msgspec.structs.replace(state, removed=True)
                        self.state_seq[key] = seq

    def _flush(self, position: int) -> None:
        conn = self.conn
        if self.purged_workers:
            conn.execute(q.FORGET_WORKERS, {"names": sorted(self.purged_workers)})
        _upsert(
            conn,
            t.jobs,
            [
                (state_row(s, self.state_seq.get(k, 0)), k in self.known_jobs)
                for k, s in self.states.items()
                if k in self.state_seq
            ],
        )
        _upsert(
            conn,
            t.runs,
            [(r, k in self.known_runs) for k, r in self.runs.items()],
        )
        _upsert(
            conn,
            t.workers,
            [(w, k in self.known_workers) for k, w in self.workers.items()],
        )
        if self.sent:
            insert_sent = q.NEW_SENT_SQLITE if self.sqlite else q.NEW_SENT_POSTGRESQL
            conn.execute(insert_sent, list(self.sent.values()))
        if self.commands:
            # The first answer to a command is kept: one appended again after the duplicate
            # window (or twice in this batch) is skipped.
            fresh: dict[str, dict[str, Any]] = {}
            for c in self.commands:
                fresh.setdefault(c["cmd_id"], c)
            insert = q.NEW_COMMANDS_SQLITE if self.sqlite else q.NEW_COMMANDS_POSTGRESQL
            conn.execute(insert, list(fresh.values()))
        if self.dead:
            conn.execute(q.INSERT["dead_letters"], self.dead)
        conn.execute(q.SET_POSITION, {"position": position})


def _operator_token(s: Subjects, subject: str) -> str | None:
    """The operator's token of a subject ``<prefix>.evt.-admin.<token>``, else None."""
    head = f"{s.admin_events}."
    if not subject.startswith(head):
        return None
    token = subject[len(head) :]
    try:
        return (s.operator_events(token) == subject and token) or None
    except InvalidName:
        return None


def _upsert(conn: Connection, table: Any, rows: Iterable[tuple[dict[str, Any], bool]]) -> None:
    """Insert the rows that are new and update the others (each ``(row, exists)``)."""
    new: list[dict[str, Any]] = []
    old: list[dict[str, Any]] = []
    for row, exists in rows:
        (old if exists else new).append(row)
    if new:
        q.driver_statement(q.INSERT[table.name], conn.dialect).executemany(conn, new)
    if old:
        q.driver_statement(q.UPDATE_BY_KEY[table.name], conn.dialect).executemany(conn, old)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
