"""Read your own writes across ``ctl`` runs: the event your last command was stored at.

Any manager replica may answer a query, and one may lag behind the others.  So ``ctl start``
(and every other command) notes the position of the command's effect in the log, per bus
(its servers and prefix), in ``$XDG_STATE_HOME/mirrorbus/ctl-positions.json`` (by default
``~/.local/state/...``), and the next queries of the same user ask for a view at or past it:
``ctl start`` then ``ctl list`` shows the start, whichever replica answers.  ``--min-position``
(or ``MIRRORBUS_MIN_POSITION``) overrides it; 0 takes any replica.

The note is a hint, never a reason to fail: a file that cannot be read or written is ignored
(the answer may then be a moment old), and a position past the end of the log (a note from
an older log on the same address) is answered at once by the replicas.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from mirrorbus.config.bus import BusSettings

KEEP = 32
"""Buses remembered (the oldest notes go first)."""


def positions_file() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "mirrorbus" / "ctl-positions.json"


def _key(settings: BusSettings) -> str:
    return f"{settings.prefix} {','.join(sorted(settings.servers))}"


def _read(path: Path) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, int)}


def recall(settings: BusSettings) -> int:
    """The position of this user's last command on this bus (0: none noted)."""
    return _read(positions_file()).get(_key(settings), 0)


def remember(settings: BusSettings, position: int) -> None:
    """Note ``position`` for this bus (the last command's, even if lower: a new log)."""
    if position <= 0:
        return
    path = positions_file()
    notes = _read(path)
    key = _key(settings)
    notes.pop(key, None)
    notes[key] = position  # the latest last, so that the oldest go first
    notes = dict(list(notes.items())[-KEEP:])
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(notes))
        tmp.replace(path)
