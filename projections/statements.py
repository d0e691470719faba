"""The status view's statements, built once at import with bound parameters.

Building a SQLAlchemy Core statement (``select(...).where(...)``) costs several times more
than executing it: a one-event batch that built its statements afresh spent most of its time
constructing them (cProfile; see BENCHMARKS.md).  Each
statement here is built once and executed with parameters; the ``IN`` lists are expanding
parameters, so one statement serves every list length.

The many-row writes of a batch (:data:`INSERT`, :data:`UPDATE_BY_KEY`) also skip
SQLAlchemy's per-row parameter processing, a large share of a catch-up's time: each is compiled
once per dialect (:func:`driver_statement`) and its rows go to the driver's ``executemany``
as they are, which the view's column types allow (checked when compiling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Dialect,
    Table,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Insert, Update

from projections import tables as t


def _update_by_key(table: Table) -> Update:
    """``UPDATE table SET <every other column> WHERE <primary key>``; parameters
    ``k_<key>`` and ``v_<column>`` (executemany with one dict a row)."""
    keys = [c.name for c in table.primary_key.columns]
    where = [table.c[k] == bindparam(f"k_{k}") for k in keys]
    values: dict[str, Any] = {
        c.name: bindparam(f"v_{c.name}") for c in table.columns if c.name not in keys
    }
    return update(table).where(*where).values(values)


POSITION = select(t.meta.c.value).where(t.meta.c.key == "position")
POSITION_LOCKED = POSITION.with_for_update()
"""The position, locking its row (PostgreSQL): concurrent projectors serialise on it."""
SET_POSITION = update(t.meta).where(t.meta.c.key == "position").values(value=bindparam("position"))
FLOORS = select(t.seed_floors.c.worker, t.seed_floors.c.seq)

JOBS_NAMED = select(t.jobs).where(
    t.jobs.c.worker == bindparam("worker"), t.jobs.c.name.in_(bindparam("names", expanding=True))
)
"""Jobs of one worker by name: the primary key's index (a list of names alone reads every
job of every worker)."""
JOB = select(t.jobs).where(
    t.jobs.c.worker == bindparam("worker"), t.jobs.c.name == bindparam("name")
)
JOB_EXISTS = select(t.jobs.c.seq).where(
    t.jobs.c.worker == bindparam("worker"), t.jobs.c.name == bindparam("name")
)
JOB_OF_WORKER = select(t.jobs.c.seq).where(t.jobs.c.worker == bindparam("worker")).limit(1)
DISABLED_JOBS = select(t.jobs.c.worker, t.jobs.c.name).where(
    t.jobs.c.status == "disabled", t.jobs.c.removed.is_(False)
)

RUNS_WITH_IDS = select(t.runs).where(t.runs.c.run_id.in_(bindparam("run_ids", expanding=True)))
RUN = select(t.runs).where(
    t.runs.c.worker == bindparam("worker"),
    t.runs.c.job == bindparam("job"),
    t.runs.c.run_id == bindparam("run_id"),
)

WORKER = select(t.workers).where(t.workers.c.name == bindparam("name"))
WORKER_EXISTS = select(t.workers.c.seq).where(t.workers.c.name == bindparam("name"))
WORKER_NAMES = select(t.workers.c.name).order_by(t.workers.c.name)
FORGET_WORKERS = delete(t.workers).where(t.workers.c.name.in_(bindparam("names", expanding=True)))

NEW_COMMANDS_SQLITE = sqlite.insert(t.commands).on_conflict_do_nothing(index_elements=["cmd_id"])
NEW_COMMANDS_POSTGRESQL = postgresql.insert(t.commands).on_conflict_do_nothing(
    index_elements=["cmd_id"]
)
"""Insert answers to commands, skipping those already stored (first answer kept)."""
NEW_SENT_SQLITE = sqlite.insert(t.sent_commands).on_conflict_do_nothing(index_elements=["cmd_id"])
NEW_SENT_POSTGRESQL = postgresql.insert(t.sent_commands).on_conflict_do_nothing(
    index_elements=["cmd_id"]
)
"""Record sent commands, the first record of one kept."""
SENT_COMMAND = select(t.sent_commands).where(t.sent_commands.c.cmd_id == bindparam("id"))
ANY_SENT = select(t.sent_commands.c.cmd_id).limit(1)

INSERT: dict[str, Insert] = {
    table.name: insert(table) for table in (t.jobs, t.runs, t.workers, t.commands, t.dead_letters)
}
UPDATE_BY_KEY: dict[str, Update] = {
    table.name: _update_by_key(table) for table in (t.jobs, t.runs, t.workers)
}


def _column_of(bind: str) -> str:
    """The row key a bound parameter takes its value from (``k_``/``v_`` of the updates)."""
    return bind[2:] if bind.startswith(("k_", "v_")) else bind


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled for one dialect, executed with the driver's ``executemany``."""

    sql: str
    binds: tuple[str, ...]
    columns: tuple[str, ...]
    positional: bool

    def executemany(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Execute once per row; ``rows`` are keyed by column name."""
        params: list[Any]
        if self.positional:
            cols = self.columns
            params = [tuple([r[c] for c in cols]) for r in rows]
        else:
            pairs = tuple(zip(self.binds, self.columns, strict=True))
            params = [{b: r[c] for b, c in pairs} for r in rows]
        conn.exec_driver_sql(self.sql, params)


_DRIVER: dict[tuple[int, str], DriverStatement] = {}


def driver_statement(stmt: Insert | Update, dialect: Dialect) -> DriverStatement:
    """``stmt`` compiled for ``dialect`` (once).

    Raises TypeError if a parameter's type needs SQLAlchemy's processing on the way in,
    other than a boolean's (the rows hold real booleans, which every driver binds as
    SQLAlchemy would): such a column must not bypass it.
    """
    key = (id(stmt), dialect.name)
    found = _DRIVER.get(key)
    if found is not None:
        return found
    compiled = stmt.compile(dialect=dialect)
    binds = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
    table_columns = set(stmt.table.c.keys())
    for name in binds:
        kind = compiled.binds[name].type
        if kind._cached_bind_processor(dialect) is not None and not isinstance(kind, Boolean):
            raise TypeError(f"{name}: {kind} needs bind processing; it cannot bypass it")
        if _column_of(name) not in table_columns:
            raise TypeError(f"{name}: no column {_column_of(name)!r} to take its value from")
    made = _DRIVER[key] = DriverStatement(
        sql=compiled.string,
        binds=binds,
        columns=tuple(_column_of(b) for b in binds),
        positional=compiled.positional,
    )
    return made


PG_SIZE = text(
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname IN :names"
).bindparams(bindparam("names", expanding=True))
"""Bytes of the named tables with their indexes and TOAST (PostgreSQL): the view's size."""
