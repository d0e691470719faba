"""``mirrorz.json`` (format v1.7) built from job states, for the mirrorz federation.

The ``site`` block is the site's own (from configuration: ``url`` and ``abbr`` are required by
mirrorz); ``mirrors[]`` is one entry per job name.  ``status`` is mirrorz's string of pieces
``[A-Z](\\d+)?`` (docs/tunasync.md §10.2, mirrorz README): one main piece and auxiliary ones.
``desc`` and ``help`` are the job's own (``desc``/``help`` of its ``[[mirrors]]`` entry in the
worker config), "" when not set.

======================  ============================================================
job status              status string
======================  ============================================================
success                 ``S<last success>`` then ``X<next run>``
pre-syncing, syncing    ``Y<started>`` then ``O<last success>``
failed                  ``F<last attempt ended>`` then ``O<last success>``, ``X<next>``
paused                  ``P<last ended>`` (the stopped run's end)
none (never ran)        ``D`` (pending) then ``X<next run>``
disabled                ``U`` and ``"disable": true``
======================  ============================================================

Timestamps are Unix seconds and are left out when unknown, as mirrorz-parser does.  Where the
same job name runs on several workers (a master and its slaves), a master's entry wins, and
among equals the one with the latest success (mirror-web de-duplicates by latest success).
This is richer than mirrorz-parser's tunasync converter, which maps pre-syncing to ``U`` and
drops ``O``; both are valid v1.7.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from mirrorbus.events import JobState

MIRRORZ_VERSION = 1.7


def _ts(value: datetime | None) -> str:
    return str(int(value.timestamp())) if value is not None else ""


def status_string(state: JobState) -> str:
    """mirrorz's status pieces for one job (see the module table)."""
    last_ok = f"O{_ts(state.last_update)}" if state.last_update else ""
    next_run = f"X{_ts(state.next_schedule)}" if state.next_schedule else ""
    match state.status:
        case "success":
            return f"S{_ts(state.last_update)}{next_run}"
        case "pre-syncing" | "syncing":
            return f"Y{_ts(state.last_started)}{last_ok}"
        case "failed":
            return f"F{_ts(state.last_ended)}{last_ok}{next_run}"
        case "paused":
            return f"P{_ts(state.last_ended)}"
        case "none":
            return f"D{next_run}"
    return "U"


def mirror_entry(state: JobState) -> dict[str, Any]:
    return {
        "cname": state.name,
        "desc": state.desc,
        # The name as written is the directory; a link to it needs a space or an é escaped.
        "url": "/" + quote(state.name),
        "status": status_string(state),
        "help": state.help,
        "upstream": state.upstream,
        "size": "" if state.size in ("", "unknown") else state.size,
        "disable": state.status == "disabled",
    }


def mirrorz(states: Iterable[JobState], site: Mapping[str, Any]) -> dict[str, Any]:
    """The whole ``mirrorz.json`` document."""
    best: dict[str, JobState] = {}
    for state in states:
        if state.removed:
            continue
        seen = best.get(state.name)
        if seen is None or _newer(state, seen):
            best[state.name] = state
    return {
        "version": MIRRORZ_VERSION,
        "site": dict(site),
        "info": [],
        "mirrors": [mirror_entry(best[name]) for name in sorted(best)],
    }


def _newer(a: JobState, b: JobState) -> bool:
    ta = a.last_update.timestamp() if a.last_update else float("-inf")
    tb = b.last_update.timestamp() if b.last_update else float("-inf")
    return (a.is_master, ta) > (b.is_master, tb)
