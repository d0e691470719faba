"""The SQL status view: the fold of the event log into jobs, runs, workers and commands.

Rules (DESIGN.md, "Projection rules"):

* A batch of events is applied in one transaction together with the new stream position, so
  a crash leaves either all of the batch or none of it.  Events at or below the stored
  position are skipped: at-least-once delivery gives exactly-once effect.
* Job rows are computed with the shared ``evolve``, never with rules of their own.
* An event that cannot be decoded, or whose subject does not match the worker and job it
  claims, goes to ``dead_letters`` with the reason and sequence; the batch goes on.

The view is synchronous (SQLAlchemy Core); the manager calls it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mirrorbus.errors import CodecError, ProjectionError
from mirrorbus.events import (
    AttemptFailed,
    AttemptStarted,
    CommandAnswered,
    JobEvent,
    JobState,
    RunStarted,
    RunSucceeded,
    Subjects,
    WorkerAnswered,
    WorkerEvent,
    WorkerStarted,
    WorkerStopped,
    decode_event,
    evolve,
)
from projections import tables as t

Entry = tuple[int, str, bytes]
"""(stream sequence, subject, payload) of one stored event."""


class WorkerRow(msgspec.Struct, frozen=True, kw_only=True):
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


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
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


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int
    skipped: int
    dead: int
    position: int


def to_us(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() * 1_000_000) if value.tzinfo else None


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def _state_row(state: JobState, seq: int) -> dict[str, Any]:
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
        "seq": seq,
    }


def _row_state(row: Any) -> JobState:
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
    )


def _sqlite_setup(engine: Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so that two writers serialise cleanly."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" hook emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class StatusView:
    """The status view in one SQL database (``sqlite:///path`` or ``postgresql+psycopg://``)."""

    def __init__(self, url: str, subjects: Subjects | None = None) -> None:
        self.url = url
        self.subjects = subjects or Subjects()
        try:
            parsed = make_url(url)
            self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise ProjectionError(f"cannot open the status view at {url}: {exc}") from None
        self._sqlite = parsed.get_backend_name() == "sqlite"
        if self._sqlite:
            _sqlite_setup(self.engine)
        try:
            t.metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                self._check_schema(conn)
        except SQLAlchemyError as exc:
            raise ProjectionError(f"cannot prepare the status view at {url}: {exc}") from None

    def _check_schema(self, conn: Connection) -> None:
        version = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "schema")).scalar()
        if version is None:
            conn.execute(insert(t.meta).values(key="schema", value=t.SCHEMA_VERSION))
            conn.execute(insert(t.meta).values(key="position", value=0))
        elif version != t.SCHEMA_VERSION:
            raise ProjectionError(
                f"the status view at {self.url} has schema {version}, this release needs "
                f"{t.SCHEMA_VERSION}: run `mirrorbus manager rebuild`"
            )

    def close(self) -> None:
        self.engine.dispose()

    def reset(self) -> None:
        """Empty every table (position 0): the start of a rebuild."""
        with self.engine.begin() as conn:
            for table in reversed(t.metadata.sorted_tables):
                conn.execute(delete(table))
            self._check_schema(conn)

    # -- writing -------------------------------------------------------------------------
    def position(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(t.meta.c.value).where(t.meta.c.key == "position")).scalar() or 0
            )

    def apply(self, entries: Sequence[Entry]) -> ApplyResult:
        """Apply a batch of stored events in one transaction with the new position."""
        try:
            with self.engine.begin() as conn:
                return _Batch(conn, self.subjects, self._sqlite).apply(entries)
        except SQLAlchemyError as exc:
            raise ProjectionError(f"cannot write the status view: {exc}") from None

    # -- reading -------------------------------------------------------------------------
    def jobs(self, worker: str | None = None, *, include_removed: bool = False) -> list[JobState]:
        query = select(t.jobs).order_by(t.jobs.c.name, t.jobs.c.worker)
        if worker is not None:
            query = query.where(t.jobs.c.worker == worker)
        if not include_removed:
            query = query.where(t.jobs.c.removed.is_(False))
        with self.engine.connect() as conn:
            return [_row_state(row) for row in conn.execute(query)]

    def workers(self) -> list[WorkerRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.workers).order_by(t.workers.c.name)).all()
        return [
            WorkerRow(
                name=r.name,
                online=r.online,
                started_at=from_us(r.started_at),
                stopped_at=from_us(r.stopped_at),
                last_seen=from_us(r.last_seen),
                version=r.version,
                hostname=r.hostname,
                pid=r.pid,
                jobs=r.jobs,
                concurrent=r.concurrent,
            )
            for r in rows
        ]

    def history(self, worker: str, job: str, limit: int = 20) -> list[RunRow]:
        query = (
            select(t.runs)
            .where(t.runs.c.worker == worker, t.runs.c.job == job)
            .order_by(t.runs.c.started_at.desc(), t.runs.c.seq.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            RunRow(
                worker=r.worker,
                job=r.job,
                run_id=r.run_id,
                reason=r.reason,
                forced=r.forced,
                started_at=from_us(r.started_at) or datetime.min.replace(tzinfo=UTC),
                ended_at=from_us(r.ended_at),
                result=r.result,
                attempts=r.attempts,
                size=r.size,
                error=r.error,
                exit_code=r.exit_code,
            )
            for r in rows
        ]

    def dead_letters(self, limit: int = 100) -> list[tuple[int, str, str]]:
        query = select(t.dead_letters.c.seq, t.dead_letters.c.subject, t.dead_letters.c.reason)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.dead_letters.c.seq).limit(limit)).all()
        return [(r.seq, r.subject, r.reason) for r in rows]

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but ``meta``'s bookkeeping: for comparing two views."""
        result: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for table in t.metadata.sorted_tables:
                pk = list(table.primary_key.columns)
                rows = conn.execute(select(table).order_by(*pk)).all()
                result[table.name] = [tuple(r) for r in rows]
        return result


class _Batch:
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
        self.workers: dict[str, dict[str, Any]] = {}
        self.known_workers: set[str] = set()
        self.commands: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []

    def _position(self) -> int:
        query = select(t.meta.c.value).where(t.meta.c.key == "position")
        if not self.sqlite:
            query = query.with_for_update()  # serialise concurrent projectors (rebuild + run)
        return int(self.conn.execute(query).scalar() or 0)

    def apply(self, entries: Sequence[Entry]) -> ApplyResult:
        position = self._position()
        applied = skipped = 0
        for seq, subject, data in entries:
            if seq <= position:
                skipped += 1
                continue
            position = seq
            try:
                ev = decode_event(data)
                self._check_subject(subject, ev)
            except CodecError as exc:
                self.dead.append(
                    {
                        "seq": seq,
                        "subject": subject,
                        "reason": exc.reason,
                        "data": bytes(data),
                        "at": to_us(datetime.now(UTC)),
                    }
                )
                continue
            applied += 1
            if isinstance(ev, JobEvent):
                self._job_event(seq, ev)
            else:
                self._worker_event(seq, ev)
        self._flush(position)
        return ApplyResult(applied=applied, skipped=skipped, dead=len(self.dead), position=position)

    def _check_subject(self, subject: str, ev: JobEvent | WorkerEvent) -> None:
        try:
            expected = (
                self.subjects.job_events(ev.worker, ev.job)
                if isinstance(ev, JobEvent)
                else self.subjects.worker_events(ev.worker)
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
        if key not in self.states:
            row = self.conn.execute(
                select(t.jobs).where(t.jobs.c.worker == key[0], t.jobs.c.name == key[1])
            ).first()
            if row is None:
                return None
            self.states[key] = _row_state(row)
            self.known_jobs.add(key)
        return self.states[key]

    def _job_event(self, seq: int, ev: JobEvent) -> None:
        key = (ev.worker, ev.job)
        self.states[key] = evolve(self._state(key), ev)
        self.state_seq[key] = seq
        self._touch_worker(seq, ev.worker, ev.at)
        match ev:
            case RunStarted():
                self.runs[(ev.worker, ev.job, ev.run_id)] = {
                    "worker": ev.worker,
                    "job": ev.job,
                    "run_id": ev.run_id,
                    "reason": ev.reason,
                    "forced": ev.force,
                    "started_at": to_us(ev.at),
                    "ended_at": None,
                    "result": "running",
                    "attempts": 0,
                    "size": "",
                    "error": "",
                    "exit_code": None,
                    "seq": seq,
                }
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
            row = self.conn.execute(
                select(t.runs).where(
                    t.runs.c.worker == worker,
                    t.runs.c.job == job,
                    t.runs.c.run_id == run_id,
                )
            ).first()
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
        self.commands.append(
            {
                "cmd_id": ev.cmd_id,
                "worker": ev.worker,
                "job": ev.job,
                "verb": ev.verb,
                "accepted": ev.accepted,
                "message": ev.message,
                "issuer": ev.issuer,
                "at": to_us(ev.at),
                "seq": seq,
            }
        )

    # -- worker events -----------------------------------------------------------------------
    def _worker(self, name: str, seq: int) -> dict[str, Any]:
        if name not in self.workers:
            row = self.conn.execute(select(t.workers).where(t.workers.c.name == name)).first()
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
                )
            case WorkerStopped():
                w.update(online=False, stopped_at=to_us(ev.at))
            case WorkerAnswered():
                self._command(seq, ev)

    # -- writing -----------------------------------------------------------------------------
    def _flush(self, position: int) -> None:
        conn = self.conn
        _upsert(
            conn,
            t.jobs,
            ("worker", "name"),
            [
                (_state_row(s, self.state_seq.get(k, 0)), k in self.known_jobs)
                for k, s in self.states.items()
                if k in self.state_seq
            ],
        )
        _upsert(
            conn,
            t.runs,
            ("worker", "job", "run_id"),
            [(r, k in self.known_runs) for k, r in self.runs.items()],
        )
        _upsert(
            conn,
            t.workers,
            ("name",),
            [(w, k in self.known_workers) for k, w in self.workers.items()],
        )
        if self.commands:
            ids = [c["cmd_id"] for c in self.commands]
            seen = set(
                conn.execute(
                    select(t.commands.c.cmd_id).where(t.commands.c.cmd_id.in_(ids))
                ).scalars()
            )
            fresh: dict[str, dict[str, Any]] = {}
            for c in self.commands:
                if c["cmd_id"] not in seen:
                    fresh.setdefault(c["cmd_id"], c)
            if fresh:
                conn.execute(insert(t.commands), list(fresh.values()))
        if self.dead:
            conn.execute(insert(t.dead_letters), self.dead)
        conn.execute(update(t.meta).where(t.meta.c.key == "position").values(value=position))


def _upsert(
    conn: Connection, table: Any, keys: tuple[str, ...], rows: Iterable[tuple[dict[str, Any], bool]]
) -> None:
    new: list[dict[str, Any]] = []
    old: list[dict[str, Any]] = []
    for row, exists in rows:
        (old if exists else new).append(row)
    if new:
        conn.execute(insert(table), new)
    if old:
        where = [table.c[k] == bindparam(f"k_{k}") for k in keys]
        cols = [c.name for c in table.columns if c.name not in keys]
        values: dict[str, Any] = {c: bindparam(f"v_{c}") for c in cols}
        params = [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in cols}} for r in old]
        conn.execute(update(table).where(*where).values(values), params)
