"""tunasync's JSON shapes, built from job states (docs/tunasync.md §2.2, §2.4).

``web_mirror_status`` is an item of tunasync's ``GET /jobs`` (what status pages, mirror-web,
mirrorz converters and tunasync-monitor read): exactly 13 fields in tunasync's order, text
times in Go's ``2006-01-02 15:04:05 -0700`` layout in the manager's local offset, ``*_ts``
Unix seconds, and tunasync's zero time (``0001-01-01 00:00:00 +0000``, -62135596800) for
"never".  ``mirror_status`` is tunasync's ``MirrorStatus`` (``GET /workers/<id>/jobs``), and
``worker_status`` its ``WorkerStatus`` (``GET /workers``).  A job whose size was never known
shows ``"unknown"``, as tunasync's worker reports it.

``go_json`` encodes like Go's ``json.Marshal`` (what gin's ``c.JSON`` writes): compact, UTF-8,
with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, so that a file or response is byte for
byte what tunasync would have served.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mirrorbus.events import JobState
from mirrorbus.events.wire import WorkerRow

ZERO_TEXT = "0001-01-01 00:00:00 +0000"
ZERO_TS = -62135596800
ZERO_RFC3339 = "0001-01-01T00:00:00Z"

WEB_FIELDS = (
    "name",
    "is_master",
    "status",
    "last_update",
    "last_update_ts",
    "last_started",
    "last_started_ts",
    "last_ended",
    "last_ended_ts",
    "next_schedule",
    "next_schedule_ts",
    "upstream",
    "size",
)


def _text(value: datetime | None) -> str:
    if value is None:
        return ZERO_TEXT
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def _ts(value: datetime | None) -> int:
    return ZERO_TS if value is None else int(value.timestamp())


def _rfc3339(value: datetime | None) -> str:
    """Go's ``time.RFC3339Nano``: fraction without trailing zeros, ``Z`` for UTC."""
    if value is None:
        return ZERO_RFC3339
    local = value.astimezone()
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}".rstrip("0")
    offset = local.strftime("%z")
    return text + ("Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}")


def go_time_text(value: datetime | None) -> str:
    """A time as Go's ``encoding/json`` writes a ``time.Time`` (what tunasync's API sends)."""
    return _rfc3339(value)


def size_text(state: JobState) -> str:
    return state.size or "unknown"


def web_mirror_status(state: JobState) -> dict[str, Any]:
    """One item of tunasync's ``GET /jobs``, fields in tunasync's order."""
    return {
        "name": state.name,
        "is_master": state.is_master,
        "status": state.status,
        "last_update": _text(state.last_update),
        "last_update_ts": _ts(state.last_update),
        "last_started": _text(state.last_started),
        "last_started_ts": _ts(state.last_started),
        "last_ended": _text(state.last_ended),
        "last_ended_ts": _ts(state.last_ended),
        "next_schedule": _text(state.next_schedule),
        "next_schedule_ts": _ts(state.next_schedule),
        "upstream": state.upstream,
        "size": size_text(state),
    }


def mirror_status(state: JobState) -> dict[str, Any]:
    """tunasync's ``MirrorStatus`` (11 fields, RFC 3339 times), as ``GET /workers/<id>/jobs``."""
    return {
        "name": state.name,
        "worker": state.worker,
        "is_master": state.is_master,
        "status": state.status,
        "last_update": _rfc3339(state.last_update),
        "last_started": _rfc3339(state.last_started),
        "last_ended": _rfc3339(state.last_ended),
        "next_schedule": _rfc3339(state.next_schedule),
        "upstream": state.upstream,
        "size": size_text(state),
        "error_msg": state.error_msg,
    }


def worker_status(row: WorkerRow) -> dict[str, Any]:
    """tunasync's ``WorkerStatus`` as ``GET /workers`` shows it.

    mirrorbus workers have no HTTP endpoint and no token (commands travel over the bus), so
    ``url`` is ``""`` but for an old tunasync worker behind the gateway (the URL it registered),
    and ``token`` is tunasync's constant ``"REDACTED"``.  ``last_online`` is the last event of
    the worker, ``last_register`` its last start.
    """
    return {
        "id": row.name,
        "url": row.url,
        "token": "REDACTED",
        "last_online": _rfc3339(row.last_seen),
        "last_register": _rfc3339(row.started_at),
    }


_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def go_json(value: Any) -> bytes:
    """``value`` encoded as Go's ``json.Marshal`` does: ``[{"name":"a\\u0026b"}]``.

    Key order is the dict's.  NaN and infinities are refused (Go refuses them too).
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_GO_ESCAPES).encode()


def jobs_json(states: Iterable[JobState]) -> bytes:
    """The body of tunasync's ``GET /jobs`` (and of ``tunasync.json``): ``[]`` when empty."""
    return go_json([web_mirror_status(s) for s in states])
