"""tunasync's request bodies, as its worker and ``tunasynctl`` send them, read strictly.

tunasync's manager speaks JSON over HTTP with Go's encoding rules: times are RFC 3339 with up
to nine fraction digits (``2024-01-02T03:04:05.123456789+08:00``), the zero time
``0001-01-01T00:00:00Z`` means "never", statuses are the seven strings of the status enum,
and an absent list is ``null``.  Bodies are decoded into the Structs below; anything that does
not fit is a :class:`~mirrorbus.errors.CodecError` whose text becomes the 400 answer.

What goes the other way (to an old worker) is tunasync's ``WorkerCmd``, built by
:func:`worker_cmd` byte for byte as tunasync's manager forwards it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from mirrorbus.errors import CodecError
from mirrorbus.events import Command, Status
from projections.tunasync import go_json

T = TypeVar("T")


class MirrorStatusIn(msgspec.Struct, kw_only=True):
    """A status update (``POST /workers/<id>/jobs/<job>``): tunasync's ``MirrorStatus``.

    ``next_schedule`` is read but not used: tunasync's worker never fills it (the schedules
    come separately), so taking it would clear every job's next run on every update.
    """

    name: str = ""
    worker: str = ""
    is_master: bool = True
    status: Status = "none"
    last_update: str = ""
    last_started: str = ""
    last_ended: str = ""
    next_schedule: str = ""
    upstream: str = ""
    size: str = ""
    error_msg: str = ""


class WorkerStatusIn(msgspec.Struct, kw_only=True):
    """A registration (``POST /workers``): tunasync's ``WorkerStatus``."""

    id: str = ""
    url: str = ""
    token: str = ""
    last_online: str = ""
    last_register: str = ""


class ScheduleIn(msgspec.Struct, kw_only=True):
    name: str = ""
    next_schedule: str = ""


class SchedulesIn(msgspec.Struct, kw_only=True):
    """``POST /workers/<id>/schedules``; ``null`` when the worker's queue is empty."""

    schedules: list[ScheduleIn] | None = None


class SizeIn(msgspec.Struct, kw_only=True):
    """``POST /workers/<id>/jobs/<job>/size`` (``tunasynctl set-size``)."""

    name: str = ""
    size: str = ""


class ClientCmdIn(msgspec.Struct, kw_only=True):
    """``POST /cmd``: tunasync's ``ClientCmd``.  ``cmd`` stays a string: tunasync turns an
    unknown verb into ``start``, the gateway refuses it."""

    cmd: str = ""
    mirror_id: str = ""
    worker_id: str = ""
    args: list[str] | None = None
    options: dict[str, bool] | None = None


def decode(data: bytes, kind: type[T]) -> T:
    """``data`` as ``kind``; :class:`CodecError` with a one-line reason if it is not."""
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise CodecError(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise CodecError(f"request body is not JSON: {exc}") from None


def go_time(text: str) -> datetime | None:
    """A Go ``time.Time`` in JSON (RFC 3339, any fraction) as UTC; None for the zero time.

    Fractions beyond microseconds are cut (Python's resolution).  Raises CodecError for any
    other text, e.g. a time without offset, which Go would not have written.
    """
    if text in ("", "0001-01-01T00:00:00Z"):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CodecError(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise CodecError(f"time without offset: {text!r}")
    if value.year <= 1:
        return None
    return value.astimezone(UTC)


def worker_cmd(cmd: Command) -> bytes:
    """tunasync's ``WorkerCmd`` for ``cmd``, as its manager POSTs it to a worker.

    Fields in Go's order (``cmd``, ``mirror_id``, ``args``, ``options``).  ``args`` as
    ``tunasynctl`` gave them (``null`` when none, and from ``mirrorbus ctl``).  ``options`` is
    what ``tunasynctl`` sends: ``{"force":true}`` for ``start -f``, ``{}`` for the other job
    verbs and ``null`` for ``reload``.
    """
    options: dict[str, Any] | None = None
    if cmd.verb != "reload":
        options = {"force": True} if cmd.force else {}
    args = None if cmd.args is None else list(cmd.args)
    return go_json({"cmd": cmd.verb, "mirror_id": cmd.job, "args": args, "options": options})
