"""SQL tables of the status view (SQLAlchemy Core; SQLite and PostgreSQL).

Times are stored as integer microseconds since the Unix epoch (UTC): exact, sortable and the
same on every backend (SQLite has no timezone-aware type).  ``meta`` holds the stream position
and the schema version next to the data they describe.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 1

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("worker", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("is_master", Boolean, nullable=False),
    Column("upstream", Text, nullable=False),
    Column("provider", String(32), nullable=False),
    Column("interval", Integer, nullable=False),
    Column("last_update", BigInteger),
    Column("last_started", BigInteger),
    Column("last_ended", BigInteger),
    Column("next_schedule", BigInteger),
    Column("size", String(64), nullable=False),
    Column("error_msg", Text, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("exit_code", Integer),
    Column("removed", Boolean, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("help", Text, nullable=False, server_default=""),
)

runs = Table(
    "runs",
    metadata,
    Column("worker", String(64), primary_key=True),
    Column("job", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("reason", String(32), nullable=False),
    Column("forced", Boolean, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Column("result", String(16), nullable=False),  # running | success | failed
    Column("attempts", Integer, nullable=False),
    Column("size", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("exit_code", Integer),
    Column("seq", BigInteger, nullable=False),
)

runs_by_id = Index("runs_by_id", runs.c.run_id)
"""A batch looks up the runs its events touch by run id (without it, each lookup read the
whole table: a catch-up slowed down as history grew).  Added after release 1 of the schema,
so a view that predates it gets it when opened (:data:`ADDED_INDEXES`)."""

workers = Table(
    "workers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("online", Boolean, nullable=False),
    Column("started_at", BigInteger),
    Column("stopped_at", BigInteger),
    Column("last_seen", BigInteger),
    Column("version", String(32), nullable=False),
    Column("hostname", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("jobs", Integer, nullable=False),
    Column("concurrent", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("url", Text, nullable=False, server_default=""),
)

commands = Table(
    "commands",
    metadata,
    Column("cmd_id", String(64), primary_key=True),
    Column("worker", String(64), nullable=False),
    Column("job", String(64), nullable=False),
    Column("verb", String(16), nullable=False),
    Column("accepted", Boolean, nullable=False),
    Column("message", Text, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

sent_commands = Table(
    # The commands the log says were sent (CommandSent), with the issuer its subject names.
    "sent_commands",
    metadata,
    Column("cmd_id", String(64), primary_key=True),
    Column("worker", Text, nullable=False),
    Column("job", Text, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("at", BigInteger, nullable=False),
)

heartbeats = Table(
    # Not from the log: when the manager last heard each worker's heartbeat (core NATS).
    "heartbeats",
    metadata,
    Column("worker", String(64), primary_key=True),
    Column("last_beat", BigInteger, nullable=False),
)

seed_floors = Table(
    # When old events were gone from the log (a maximum age), the view was seeded from each
    # worker's snapshot: its job events at or below ``seq`` are already in the rows.
    "seed_floors",
    metadata,
    Column("worker", String(64), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

owner = Table(
    # Not from the log: the manager replica whose view this is (one row); a second replica
    # given the same database is refused instead of writing every event in a second time.
    "owner",
    metadata,
    Column("replica", String(64), primary_key=True),
)

ADDED_INDEXES = (runs_by_id,)
"""Indexes a view made by an earlier release may lack; each is created if missing."""

ADDED_COLUMNS = ((jobs, ("description", "help")), (workers, ("url",)))
"""Columns a view made by an earlier release may lack; each is added (empty) if missing:
a job's ``desc`` and ``help`` for mirrorz.json, filled by its next ``JobConfigured``; an old
tunasync worker's command ``url``, filled by its next registration."""

NOT_FROM_THE_LOG = ("heartbeats", "seed_floors", "owner")
"""Tables a rebuild does not reproduce (and ``dump`` leaves out)."""

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
