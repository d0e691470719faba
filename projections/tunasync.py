"""tunasync's JSON shapes, built from job states (TUNASYNC.md §2.2, §2.4).

``web_mirror_status`` is an item of tunasync's ``GET /jobs`` (what status pages, mirror-web,
mirrorz converters and tunasync-monitor read): exactly 13 fields in tunasync's order, text
times in Go's ``2006-01-02 15:04:05 -0700`` layout in the manager's local offset, ``*_ts``
Unix seconds, and tunasync's zero time (``0001-01-01 00:00:00 +0000``, -62135596800) for
"never".  ``mirror_status`` is tunasync's ``MirrorStatus`` (``GET /workers/<id>/jobs``).
A job whose size was never known shows ``"unknown"``, as tunasync's worker reports it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mirrorbus.events import JobState

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
    if value is None:
        return ZERO_RFC3339
    local = value.astimezone()
    text = local.isoformat()
    return text.replace("+00:00", "Z") if local.utcoffset() == UTC.utcoffset(None) else text


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
