"""The SQL status view: the fold of the event log into jobs, runs, workers and commands.

Rules (docs/design.md, "Projection rules"):

* A batch of events is applied in one transaction together with the new stream position, so
  a crash leaves either all of the batch or none of it.  Events at or below the stored
  position are skipped: at-least-once delivery gives exactly-once effect.
* Job rows are computed with the shared ``evolve``, never with rules of their own.
* An event that cannot be decoded, or whose subject does not match the worker and job it
  claims, goes to ``dead_letters`` with the reason and sequence; the batch goes on.

The view is synchronous (SQLAlchemy Core); the manager calls it from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mirrorbus.errors import ProjectionError
from mirrorbus.events import JobState, Subjects, WorkerSnapshot
from mirrorbus.events.wire import RunRow, WorkerRow
from projections import statements as q
from projections import tables as t
from projections.batch import Batch
from projections.rows import (
    ApplyResult,
    Entry,
    from_us,
    row_state,
    state_row,
    to_us,
)

__all__ = [
    "ApplyResult",
    "Entry",
    "StatusView",
    "from_us",
    "to_us",
]


HEARTBEAT_TIMEOUT = timedelta(seconds=20)
"""A worker whose heartbeat (every 5 s) was not heard for this long is shown offline."""


def _sqlite_setup(engine: Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so that two writers serialise cleanly."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" hook emit BEGIN
        cur = dbapi_conn.cursor()
        # The busy timeout first: turning a new file to WAL waits for a writer of another
        # process (a manager and a tool opening the same new view) under it, not under
        # sqlite3's default 5 s ("database is locked" at a loaded manager's start).
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _run_row(r: Any) -> RunRow:
    return RunRow(
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


def _add_missing_columns(conn: Connection) -> None:
    """Add the columns of :data:`tables.ADDED_COLUMNS` that a view made earlier lacks (as
    empty texts, on SQLite and PostgreSQL alike)."""
    for table, names in t.ADDED_COLUMNS:
        have = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for name in names:
            if name not in have:
                column = table.c[name]
                kind = column.type.compile(conn.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {table.name} ADD COLUMN {name} {kind} NOT NULL DEFAULT ''"
                )


class StatusView:
    """The status view in one SQL database (``sqlite:///path`` or ``postgresql+psycopg://``)."""

    def __init__(
        self,
        url: str,
        subjects: Subjects | None = None,
        *,
        heartbeat_timeout: timedelta = HEARTBEAT_TIMEOUT,
    ) -> None:
        self.url = url
        self.heartbeat_timeout = heartbeat_timeout
        self.subjects = subjects or Subjects()
        try:
            parsed = make_url(url)
            # A pre-ping finds a server connection that died (PostgreSQL restarted); a
            # SQLite file has none, and the ping would cost a statement per transaction.
            sqlite = parsed.get_backend_name() == "sqlite"
            self.engine = create_engine(url, pool_pre_ping=not sqlite)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise ProjectionError(f"cannot open the status view at {url}: {exc}") from None
        self._sqlite = sqlite
        if self._sqlite:
            _sqlite_setup(self.engine)
        try:
            t.metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                self._check_schema(conn)
                for index in t.ADDED_INDEXES:
                    index.create(conn, checkfirst=True)
                _add_missing_columns(conn)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise ProjectionError(f"cannot prepare the status view at {url}: {exc}") from None
        except ProjectionError:
            self.engine.dispose()
            raise

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

    @property
    def in_process(self) -> bool:
        """True when the database runs inside this process (SQLite): its work is CPU here,
        with no server to wait for."""
        return self._sqlite

    def close(self) -> None:
        self.engine.dispose()

    def claim(self, replica: str) -> None:
        """Make this the view of manager replica ``replica``, or raise ProjectionError if it
        is another replica's: two replicas writing into one view would each apply every
        event.  A rebuild (:meth:`reset`) leaves the view to whichever replica starts on it."""
        with self.engine.begin() as conn:
            owner = conn.execute(select(t.owner.c.replica)).scalar()
            if owner is None:
                conn.execute(insert(t.owner).values(replica=replica))
            elif owner != replica:
                where = make_url(self.url).render_as_string(hide_password=True)
                raise ProjectionError(
                    f"the status view at {where} belongs to manager replica {owner!r}: "
                    f"give replica {replica!r} a view of its own (another [database] url, "
                    "or --db)"
                )

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

    def apply(
        self, entries: Sequence[Entry], refused: Mapping[int, str] | None = None
    ) -> ApplyResult:
        """Apply a batch of stored events in one transaction with the new position.

        ``refused`` names entries (by sequence) that the reader already knows are no events
        of a worker, with the reason: they are set aside as dead letters, not applied.
        """
        try:
            with self.engine.begin() as conn:
                return Batch(conn, self.subjects, self._sqlite).apply(entries, refused or {})
        except SQLAlchemyError as exc:
            raise ProjectionError(f"cannot write the status view: {exc}") from None

    def seed(self, snapshots: Sequence[WorkerSnapshot], position: int) -> None:
        """Start from the workers' snapshots when the log's first events are gone.

        A log with a maximum age drops its oldest events; a view that had not applied them
        (a new or rebuilt view, or a manager down for longer) takes each worker's jobs from
        its last snapshot instead, and skips that worker's job events the snapshot already
        holds.  Runs and commands older than the log are not recovered.
        """
        with self.engine.begin() as conn:
            floors = dict(conn.execute(select(t.seed_floors.c.worker, t.seed_floors.c.seq)).all())
            for snap in snapshots:
                if snap.seq <= floors.get(snap.worker, 0):
                    continue
                for state in snap.jobs:
                    key = (t.jobs.c.worker == state.worker, t.jobs.c.name == state.name)
                    stored = conn.execute(select(t.jobs.c.seq).where(*key)).scalar()
                    if stored is None:
                        conn.execute(insert(t.jobs).values(**state_row(state, snap.seq)))
                    elif stored < snap.seq:
                        conn.execute(
                            update(t.jobs).where(*key).values(**state_row(state, snap.seq))
                        )
                known = conn.execute(
                    select(t.workers.c.name).where(t.workers.c.name == snap.worker)
                ).scalar()
                if known is None:
                    conn.execute(
                        insert(t.workers).values(
                            name=snap.worker,
                            online=False,
                            started_at=None,
                            stopped_at=None,
                            last_seen=to_us(snap.at),
                            version="",
                            hostname="",
                            pid=0,
                            jobs=len(snap.jobs),
                            concurrent=0,
                            seq=snap.seq,
                        )
                    )
                conn.execute(delete(t.seed_floors).where(t.seed_floors.c.worker == snap.worker))
                conn.execute(insert(t.seed_floors).values(worker=snap.worker, seq=snap.seq))
            current = int(
                conn.execute(select(t.meta.c.value).where(t.meta.c.key == "position")).scalar() or 0
            )
            if position > current:
                conn.execute(
                    update(t.meta).where(t.meta.c.key == "position").values(value=position)
                )

    # -- reading -------------------------------------------------------------------------
    def jobs(self, worker: str | None = None, *, include_removed: bool = False) -> list[JobState]:
        query = select(t.jobs).order_by(t.jobs.c.name, t.jobs.c.worker)
        if worker is not None:
            query = query.where(t.jobs.c.worker == worker)
        if not include_removed:
            query = query.where(t.jobs.c.removed.is_(False))
        with self.engine.connect() as conn:
            return [row_state(row) for row in conn.execute(query)]

    def target(self, worker: str, job: str | None) -> tuple[bool, bool, list[str]]:
        """Whether ``worker`` is known (its record or any job of it), whether ``job`` is one
        of its jobs (flushed ones included), and, if the worker is unknown, every known
        worker's name: what a command's target check needs, in one or two indexed lookups
        rather than a list of every job of the worker."""
        with self.engine.connect() as conn:
            if (
                job is not None
                and conn.execute(q.JOB_EXISTS, {"worker": worker, "name": job}).first()
            ):
                return True, True, []
            known = (
                conn.execute(q.JOB_OF_WORKER, {"worker": worker}).first() is not None
                or conn.execute(q.WORKER_EXISTS, {"name": worker}).first() is not None
            )
            names = [] if known else list(conn.execute(q.WORKER_NAMES).scalars())
        return known, False, names

    def workers(self, now: datetime | None = None) -> list[WorkerRow]:
        """Workers with their liveness: ``online`` when the log says it runs and, if its
        heartbeat was ever heard, the last beat is at most ``heartbeat_timeout`` old at
        ``now`` (default: the current time).  A worker killed without a trace (no
        ``WorkerStopped`` in the log) thus goes offline within that bound."""
        now = now or datetime.now(UTC)
        query = (
            select(t.workers, t.heartbeats.c.last_beat)
            .outerjoin(t.heartbeats, t.heartbeats.c.worker == t.workers.c.name)
            .order_by(t.workers.c.name)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        result = []
        for r in rows:
            beat = from_us(r.last_beat)
            fresh = beat is None or now - beat <= self.heartbeat_timeout
            last_seen = from_us(r.last_seen)
            if beat is not None and (last_seen is None or beat > last_seen):
                last_seen = beat
            result.append(
                WorkerRow(
                    name=r.name,
                    online=bool(r.online) and fresh,
                    started_at=from_us(r.started_at),
                    stopped_at=from_us(r.stopped_at),
                    last_seen=last_seen,
                    version=r.version,
                    hostname=r.hostname,
                    pid=r.pid,
                    jobs=r.jobs,
                    concurrent=r.concurrent,
                    last_heartbeat=beat,
                    url=r.url,
                )
            )
        return result

    def record_heartbeats(self, beats: dict[str, datetime]) -> None:
        """Store when each worker's heartbeat was last heard (outside the log's fold)."""
        if not beats:
            return
        with self.engine.begin() as conn:
            known = set(
                conn.execute(
                    select(t.heartbeats.c.worker).where(t.heartbeats.c.worker.in_(list(beats)))
                ).scalars()
            )
            fresh = [
                {"worker": w, "last_beat": to_us(at)} for w, at in beats.items() if w not in known
            ]
            if fresh:
                conn.execute(insert(t.heartbeats), fresh)
            for worker, at in beats.items():
                if worker in known:
                    conn.execute(
                        update(t.heartbeats)
                        .where(t.heartbeats.c.worker == worker)
                        .values(last_beat=to_us(at))
                    )

    def history(self, worker: str, job: str, limit: int = 20) -> list[RunRow]:
        query = (
            select(t.runs)
            .where(t.runs.c.worker == worker, t.runs.c.job == job)
            .order_by(t.runs.c.started_at.desc(), t.runs.c.seq.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_run_row(r) for r in rows]

    def recent_runs(self, limit: int) -> list[RunRow]:
        """The last ``limit`` runs of every job (newest first within a job), in one query:
        the status page's strip of marks per job."""
        r = t.runs
        rank = (
            func.row_number()
            .over(
                partition_by=(r.c.worker, r.c.job),
                order_by=(r.c.started_at.desc(), r.c.seq.desc()),
            )
            .label("rank")
        )
        ranked = select(r, rank).subquery()
        query = (
            select(ranked)
            .where(ranked.c.rank <= limit)
            .order_by(ranked.c.worker, ranked.c.job, ranked.c.rank)
        )
        with self.engine.connect() as conn:
            return [_run_row(row) for row in conn.execute(query).all()]

    def size_bytes(self) -> int | None:
        """Bytes the view takes: the SQLite file with its write-ahead log, or the PostgreSQL
        tables with their indexes and TOAST (None for another backend or an in-memory one)."""
        url = make_url(self.url)
        if self._sqlite:
            if not url.database or url.database == ":memory:":
                return None
            total = 0
            for suffix in ("", "-wal"):
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(url.database + suffix).st_size
            return total
        if url.get_backend_name() != "postgresql":
            return None
        names = [table.name for table in t.metadata.sorted_tables]
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(q.PG_SIZE, {"names": names}).scalar() or 0)
        except SQLAlchemyError as exc:
            raise ProjectionError(f"cannot read the size of the status view: {exc}") from None

    def dead_letters(self, limit: int = 100) -> list[tuple[int, str, str]]:
        query = select(t.dead_letters.c.seq, t.dead_letters.c.subject, t.dead_letters.c.reason)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.dead_letters.c.seq).limit(limit)).all()
        return [(r.seq, r.subject, r.reason) for r in rows]

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, to compare two views of the same log.

        Left out: ``dead_letters.at``, which records when *this* projector set the event
        aside (wall clock), not anything of the log, so a rebuild legitimately differs there.
        """
        result: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for table in t.metadata.sorted_tables:
                if table.name in t.NOT_FROM_THE_LOG:
                    continue
                pk = list(table.primary_key.columns)
                columns = [
                    c for c in table.columns if not (table is t.dead_letters and c.name == "at")
                ]
                rows = conn.execute(select(*columns).order_by(*pk)).all()
                result[table.name] = [tuple(r) for r in rows]
        return result
