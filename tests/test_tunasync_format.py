"""tunasync's JSON shapes (docs/tunasync.md §2.2 MirrorStatus, §2.4 WebMirrorStatus), byte for byte.

Status pages, mirror-web, mirrorz converters and tunasync-monitor parse these with fixed
layouts, so field names, order, types and time formats are checked exactly, in several local
time zones (the text times are in the manager's local offset).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mirrorbus.events import STATUSES, JobState
from projections.tunasync import mirror_status, web_mirror_status

WEB_FIELDS = [
    ("name", str),
    ("is_master", bool),
    ("status", str),
    ("last_update", str),
    ("last_update_ts", int),
    ("last_started", str),
    ("last_started_ts", int),
    ("last_ended", str),
    ("last_ended_ts", int),
    ("next_schedule", str),
    ("next_schedule_ts", int),
    ("upstream", str),
    ("size", str),
]
MIRROR_FIELDS = [
    ("name", str),
    ("worker", str),
    ("is_master", bool),
    ("status", str),
    ("last_update", str),
    ("last_started", str),
    ("last_ended", str),
    ("next_schedule", str),
    ("upstream", str),
    ("size", str),
    ("error_msg", str),
]
TIMES = ("last_update", "last_started", "last_ended", "next_schedule")
TEXT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$")
TEXT_LAYOUT = "%Y-%m-%d %H:%M:%S %z"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
ZERO_TEXT = "0001-01-01 00:00:00 +0000"
ZERO_TS = -62135596800
ZERO_RFC3339 = "0001-01-01T00:00:00Z"

T_UPDATE = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T_STARTED = datetime(2024, 7, 1, 23, 59, 59, 999999, tzinfo=UTC)
T_ENDED = datetime(2024, 7, 2, 0, 30, 0, tzinfo=UTC)
T_NEXT = datetime(2024, 12, 31, 23, 0, 1, tzinfo=UTC)


@pytest.fixture(
    params=["UTC0", "Asia/Shanghai", "America/St_Johns", "Europe/London"],
    ids=["utc", "plus0800", "minus0330", "london"],
)
def local_tz(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the process's local time zone set to ``TZ`` (restored afterwards)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def state_in(status: str) -> JobState:
    """A plausible state for each status (which times are set depends on the status)."""
    base: dict[str, Any] = {"worker": "w1", "name": "debian", "upstream": "rsync://u/debian/"}
    times: dict[str, Any] = {
        "none": {"next_schedule": T_NEXT},
        "pre-syncing": {"last_update": T_UPDATE, "last_started": T_STARTED},
        "syncing": {"last_update": T_UPDATE, "last_started": T_STARTED, "size": "1.33T"},
        "success": {
            "last_update": T_ENDED,
            "last_started": T_STARTED,
            "last_ended": T_ENDED,
            "next_schedule": T_NEXT,
            "size": "5GB",
        },
        "failed": {
            "last_started": T_STARTED,
            "last_ended": T_ENDED,
            "next_schedule": T_NEXT,
            "error_msg": "exit status 23",
        },
        "paused": {"last_update": T_UPDATE, "last_ended": T_ENDED},
        "disabled": {"is_master": False},
    }[status]
    return JobState(**base, status=status, **times)


def check_web_item(item: dict[str, Any], state: JobState) -> None:
    assert [(k, type(v)) for k, v in item.items()] == WEB_FIELDS
    assert item["name"] == state.name
    assert item["is_master"] is state.is_master
    assert item["status"] == state.status
    assert item["upstream"] == state.upstream
    assert item["size"] == (state.size or "unknown")
    for field in TIMES:
        value: datetime | None = getattr(state, field)
        text, ts = item[field], item[f"{field}_ts"]
        assert TEXT_TIME.fullmatch(text), text
        if value is None:
            assert (text, ts) == (ZERO_TEXT, ZERO_TS)
            continue
        parsed = datetime.strptime(text, TEXT_LAYOUT)
        assert parsed.timestamp() == ts  # the text and the _ts are the same instant
        assert ts == int(value.timestamp())  # whole seconds of the state's time
        # in the manager's local offset
        assert parsed.utcoffset() == value.astimezone().utcoffset()


@pytest.mark.parametrize("status", STATUSES)
def test_web_mirror_status_of_every_status(status: str, local_tz: str) -> None:
    state = state_in(status)
    check_web_item(web_mirror_status(state), state)


def test_web_mirror_status_example(local_tz: str) -> None:
    state = state_in("success")
    item = web_mirror_status(state)
    assert item["last_update_ts"] == 1719880200
    assert item["next_schedule_ts"] == 1735686001
    if local_tz == "UTC0":
        assert item["last_update"] == "2024-07-02 00:30:00 +0000"
        assert item["last_started"] == "2024-07-01 23:59:59 +0000"  # truncated, not rounded
    if local_tz == "Asia/Shanghai":
        assert item["last_update"] == "2024-07-02 08:30:00 +0800"
        assert item["next_schedule"] == "2025-01-01 07:00:01 +0800"
    if local_tz == "America/St_Johns":
        assert item["last_update"] == "2024-07-01 22:00:00 -0230"  # summer time
        assert item["next_schedule"] == "2024-12-31 19:30:01 -0330"


def test_zero_times_and_unknown_size() -> None:
    never = JobState(worker="w1", name="new-job")
    item = web_mirror_status(never)
    for field in TIMES:
        assert item[field] == ZERO_TEXT
        assert item[f"{field}_ts"] == ZERO_TS
    assert item["size"] == "unknown"
    assert item["status"] == "none"
    assert "worker" not in item
    assert "error_msg" not in item


def test_json_keeps_field_order() -> None:
    item = web_mirror_status(state_in("failed"))
    text = json.dumps(item)
    positions = [text.index(f'"{name}":') for name, _ in WEB_FIELDS]
    assert positions == sorted(positions)
    assert list(json.loads(text)) == [name for name, _ in WEB_FIELDS]
    ms = json.dumps(mirror_status(state_in("failed")))
    assert list(json.loads(ms)) == [name for name, _ in MIRROR_FIELDS]


@pytest.mark.parametrize("status", STATUSES)
def test_mirror_status_of_every_status(status: str, local_tz: str) -> None:
    state = state_in(status)
    item = mirror_status(state)
    assert [(k, type(v)) for k, v in item.items()] == MIRROR_FIELDS
    assert item["worker"] == "w1"
    assert item["error_msg"] == state.error_msg
    assert item["size"] == (state.size or "unknown")
    for field in TIMES:
        value: datetime | None = getattr(state, field)
        text = item[field]
        assert RFC3339.fullmatch(text), text
        if value is None:
            assert text == ZERO_RFC3339
        else:
            assert datetime.fromisoformat(text) == value  # same instant, microseconds kept


def test_mirror_status_utc_uses_z(local_tz: str) -> None:
    item = mirror_status(state_in("success"))
    if local_tz == "UTC0":
        assert item["last_update"] == "2024-07-02T00:30:00Z"
    if local_tz == "Asia/Shanghai":
        assert item["last_update"] == "2024-07-02T08:30:00+08:00"


def test_the_error_message_is_in_mirror_status_only() -> None:
    state = state_in("failed")
    assert mirror_status(state)["error_msg"] == "exit status 23"
    assert "exit status 23" not in json.dumps(web_mirror_status(state))


def test_times_from_other_offsets_are_shown_in_local_time(local_tz: str) -> None:
    """An event time written with another offset is the same instant in the view."""
    elsewhere = T_ENDED.astimezone(timezone(timedelta(hours=-7)))
    state = JobState(worker="w", name="j", last_update=elsewhere)
    item = web_mirror_status(state)
    assert item["last_update_ts"] == int(T_ENDED.timestamp())
    assert datetime.strptime(item["last_update"], TEXT_LAYOUT) == T_ENDED
