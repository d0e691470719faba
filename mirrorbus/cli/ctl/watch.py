"""``ctl watch`` and ``ctl events``: what is happening now, and what happened, from the log.

Both read the event stream themselves (see :mod:`.live`), so a reader certificate is enough
and the manager is not in the path of every event: ``watch`` asks the manager once for
the current view and its position, then folds the events after that position into the table;
``events`` needs no manager at all.

Both stop cleanly (exit 0) on Ctrl-C, SIGTERM, ``--count N`` or ``--timeout S``, so scripts and
tests can bound them.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

if TYPE_CHECKING:
    # rich is imported by the live table only (``watch`` on a terminal), never by a
    # command that prints plain lines.
    from rich.console import RenderableType
    from rich.text import Text

    from mirrorbus.bus import Bus
    from mirrorbus.cli.ctl.live import LiveTable, LogEntry
    from mirrorbus.control import Control
from mirrorbus.cli.common import one_line_errors
from mirrorbus.cli.ctl.base import ago, with_control

# The bus, the control client and the event reader are imported when a command runs, so
# that `mirrorbus ctl --help` (which imports this module) does not import nats-py.

STATUS_STYLES = {
    "success": "green",
    "failed": "bold red",
    "syncing": "cyan",
    "pre-syncing": "blue",
    "paused": "yellow",
    "disabled": "dim",
    "none": "dim",
}

WorkersOpt = Annotated[
    list[str] | None,
    typer.Option("--worker", "-w", help="Only this worker (repeatable).", show_default=False),
]
CountOpt = Annotated[
    int | None,
    typer.Option("--count", "-n", help="Stop after N events.", min=1, show_default=False),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", help="Stop after S seconds.", min=0, show_default=False),
]


class _Stop(Exception):
    """Enough events were shown (``--count``), or stdout went away."""


async def _bounded(body: Callable[[], Awaitable[None]], timeout: float | None) -> None:
    """Run ``body`` until it returns, ``timeout`` passes, or SIGINT/SIGTERM arrives."""
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_signal)
        with anyio.move_on_after(timeout), contextlib.suppress(_Stop):
            await body()
        tg.cancel_scope.cancel()


def _run(ctx: typer.Context, fn: Callable[[Control], Awaitable[None]]) -> None:
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before our handler was in place
        with_control(ctx, fn)


def _emit(line: str) -> None:
    """Write one line and flush it, for a script reading as we go."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head -3`: the reader has had enough
        with contextlib.suppress(OSError):
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - keep interpreter exit quiet
        raise _Stop() from None


@contextlib.asynccontextmanager
async def _entries(bus: Bus, **kwargs: Any) -> AsyncIterator[AsyncIterator[LogEntry]]:
    """``follow_events`` closed on exit, so that its subscriptions end at once."""
    from mirrorbus.cli.ctl.live import follow_events

    events = follow_events(bus, **kwargs)
    try:
        yield events
    finally:
        await events.aclose()  # type: ignore[attr-defined]


# -- watch -----------------------------------------------------------------------------------


def plain_line(entry: LogEntry) -> str:
    """``2026-11-28T15:04:05Z w1 debian syncing attempt 1``: time, worker, job, what."""
    from mirrorbus.cli.ctl.live import describe, utc_text

    if entry.event is None:
        return (
            f"{utc_text(entry.time)} {entry.worker} {entry.job} "
            f"undecodable event (seq {entry.seq}): {entry.error}"
        )
    return f"{utc_text(entry.event.at)} {entry.worker} {entry.job} {describe(entry.event)}"


def _status(status: str) -> Text:
    from rich.text import Text

    return Text(status, style=STATUS_STYLES.get(status, ""))


def render_table(live: LiveTable, last: str) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    """The table of ``watch``: like ``list``'s, with coloured statuses and ages kept fresh."""
    now = datetime.now(UTC)
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    for name in ("WORKER", "JOB", "STATUS", "LAST SUCCESS", "LAST END", "NEXT", "SIZE", "ERROR"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")  # one line per job
    for j in live.jobs():
        table.add_row(
            j.worker,
            j.name,
            _status(j.status),
            ago(j.last_update, now),
            ago(j.last_ended, now),
            ago(j.next_schedule, now) if j.next_schedule else "-",
            j.size or "unknown",
            Text(j.error_msg[:60], style="red"),
        )
    when = f"{live.last_time.astimezone():%H:%M:%S}" if live.last_time else "-"
    header = Text.assemble(
        ("mirrorbus watch", "bold"),
        f"  {len(live.rows)} jobs  ·  seq {live.last_seq}  ·  last event {when}  ·  Ctrl-C quits",
    )
    footer = Text(last, style="dim", no_wrap=True, overflow="ellipsis")
    return Group(header, table, footer)


@one_line_errors("mirrorbus ctl watch")
def watch(
    ctx: typer.Context,
    worker: WorkersOpt = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="One line per event, no screen control (scripts).")
    ] = False,
    count: CountOpt = None,
    timeout: TimeoutOpt = None,
) -> None:
    """A live table of jobs, updated from the event stream as jobs change.

    Starts from the manager's view, then folds every event after it.  --plain prints one
    line per event instead (time, worker, job, what happened), flushed at once.

    Example: mirrorbus ctl watch -w worker1 --plain
    """
    from mirrorbus.cli.ctl.live import LiveTable, checked_workers

    workers = checked_workers(worker or [])

    async def plain_mode(control: Control) -> None:
        bus = control.bus
        start = await bus.last_sequence() + 1
        typer.echo(f"# watching events from sequence {start} (Ctrl-C to stop)", err=True)
        shown = 0

        async def body() -> None:
            nonlocal shown
            async with _entries(bus, start=start, workers=workers) as entries:
                async for entry in entries:
                    _emit(plain_line(entry))
                    shown += 1
                    if count is not None and shown >= count:
                        return

        await _bounded(body, timeout)

    async def table_mode(control: Control) -> None:
        from rich.console import Console
        from rich.live import Live

        bus = control.bus
        position = (await control.ping()).position
        live = LiveTable(workers=frozenset(workers), last_seq=position)
        live.load(await control.jobs())
        last = ""
        console = Console()
        seen = 0

        async def body() -> None:
            nonlocal last, seen
            with Live(
                get_renderable=lambda: render_table(live, last),
                console=console,
                refresh_per_second=1,
                redirect_stderr=False,
            ) as screen:
                async with _entries(bus, start=position + 1, workers=workers) as entries:
                    async for entry in entries:
                        changed = live.apply(entry)
                        last = f"last: {plain_line(entry)}"
                        seen += 1
                        if changed or entry.event is None:
                            screen.refresh()
                        if count is not None and seen >= count:
                            screen.refresh()
                            return

        await _bounded(body, timeout)

    _run(ctx, plain_mode if plain else table_mode)


# -- events ----------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def event_line(entry: LogEntry) -> str:
    """``SEQ TIME SUBJECT TYPE key=value...`` (TIME: when the stream stored it)."""
    from mirrorbus.cli.ctl.live import event_fields, utc_text

    head = f"{entry.seq} {utc_text(entry.time)} {entry.subject}"
    if entry.event is None:
        return f"{head} undecodable reason={_value(entry.error)}"
    fields = event_fields(entry.event)
    kind = fields.pop("type")
    for key in ("id", "v", "worker", "job"):
        fields.pop(key, None)
    at = entry.event.at
    if abs((at - entry.time).total_seconds()) < 1:
        fields.pop("at")  # the same as TIME; shown only for an event stored late
    else:
        fields["at"] = utc_text(at)
    pairs = " ".join(f"{k}={_value(v)}" for k, v in fields.items() if v not in (None, "", []))
    return f"{head} {kind} {pairs}".rstrip()


def event_json(entry: LogEntry) -> str:
    """``{"seq", "subject", "time", "event"}``; an undecodable event has ``event`` null, its
    ``error`` and its ``data`` (as text, cut at 1000 characters)."""
    from mirrorbus.cli.ctl.live import event_fields

    item: dict[str, Any] = {
        "seq": entry.seq,
        "subject": entry.subject,
        "time": entry.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "event": None if entry.event is None else event_fields(entry.event),
    }
    if entry.event is None:
        item["error"] = entry.error
        item["data"] = entry.data[:1000].decode("utf-8", errors="replace")
    return json.dumps(item, ensure_ascii=False)


@one_line_errors("mirrorbus ctl events")
def events(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="From a stream sequence (1234), a time (2026-11-28T15:04:05Z) or an age "
            "(30s, 10m, 2h, 1d). Default: the beginning of the log.",
            show_default=False,
        ),
    ] = None,
    worker: WorkersOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following new events.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    count: CountOpt = None,
    timeout: TimeoutOpt = None,
) -> None:
    """The raw event log, one event per line, for tools.

    Lines are SEQ TIME SUBJECT TYPE key=value...; an event that cannot be decoded is shown
    with its reason.  Without --follow it stops at the last event there was when it started.

    Example: mirrorbus ctl events --since 1h -w worker1 --json
    """
    from mirrorbus.cli.ctl.live import checked_workers, parse_since

    workers = checked_workers(worker or [])
    start: int | datetime = 1 if since is None else parse_since(since, datetime.now(UTC))
    show = event_json if as_json else event_line

    async def main(control: Control) -> None:
        bus = control.bus
        until = None if follow else await bus.last_sequence()
        shown = 0

        async def body() -> None:
            nonlocal shown
            async with _entries(bus, start=start, workers=workers, until=until) as entries:
                async for entry in entries:
                    _emit(show(entry))
                    shown += 1
                    if count is not None and shown >= count:
                        return

        await _bounded(body, timeout)

    _run(ctx, main)
