"""The outbox's journal: its events not yet acknowledged by the bus, kept on disk in order.

While NATS is unreachable the worker keeps running its schedule; every event the outbox queues
is written here first (SQLite, WAL) and removed once JetStream acknowledged it.  A worker that
restarts during an outage finds its unacknowledged events here and appends them, in order and
with their original ids (so a re-append is de-duplicated), before it restores its state.

``Journal(None)`` keeps nothing on disk (tests, benchmarks of the in-memory path).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import anyio

from mirrorbus.bus import Bus
from mirrorbus.dirs import make_dirs
from mirrorbus.errors import BusError, ConfigError

log = logging.getLogger(__name__)


class Journal:
    """The outbox's file (``[bus] outbox``): one row per event not yet acknowledged."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            make_dirs(path.parent, 0o700)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, "
                "id TEXT NOT NULL, subject TEXT NOT NULL, data BLOB NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the worker's outbox: {exc}", file=path) from None

    def append(self, subject: str, msg_id: str, data: bytes) -> int:
        """Keep one event; return its place (to :meth:`remove` it once acknowledged)."""
        if self._db is None:
            return 0
        cursor = self._db.execute(
            "INSERT INTO outbox (id, subject, data) VALUES (?, ?, ?)", (msg_id, subject, data)
        )
        return int(cursor.lastrowid or 0)

    def remove(self, n: int) -> None:
        if self._db is not None and n:
            self._db.execute("DELETE FROM outbox WHERE n = ?", (n,))

    def pending(self) -> list[tuple[int, str, str, bytes]]:
        """Every kept event, oldest first: ``(n, id, subject, data)``."""
        if self._db is None:
            return []
        rows = self._db.execute("SELECT n, id, subject, data FROM outbox ORDER BY n")
        return [(int(n), str(i), str(s), bytes(d)) for n, i, s, d in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


async def replay(journal: Journal, bus: Bus) -> int:
    """Append what a previous run of the worker left unacknowledged, in order and with the
    original ids; wait (with back-off) while the bus is away.  Returns how many.

    The outbox's resend, done before the worker restores its job states (so the restore
    reads these events too) and before the new outbox queues anything."""
    done = 0
    for kept, msg_id, subject, data in journal.pending():
        delay = 0.2
        while True:
            try:
                await bus.append(subject, data, msg_id)
                break
            except BusError as exc:
                log.warning("kept event not yet stored (%s); retrying in %.1fs", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 10.0)
        journal.remove(kept)
        done += 1
    return done
