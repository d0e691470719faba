"""What the ctl's commands share: their options, the connection to the bus, and formatting.

:func:`with_control` connects with the ctl's settings (files, environment, flags), runs one
call of the control client and remembers the position of the log it wrote at (read your
writes: :mod:`.position`).  The bus and the client are imported there, when a command
connects, so that ``mirrorbus ctl --help`` does not import nats-py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from mirrorbus.cli.common import run_async
from mirrorbus.cli.ctl.position import recall, remember
from mirrorbus.config.ctl import BusFlags, ctl_settings
from mirrorbus.errors import ConfigError

if TYPE_CHECKING:
    from mirrorbus.control import Control

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    """The ctl's global options (``mirrorbus ctl [OPTIONS] COMMAND``), for every command."""

    config: Path | None
    flags: BusFlags
    timeout: float = 15.0
    ttl: float = 60.0
    min_position: int | None = None
    replica: str | None = None


def with_control(ctx: typer.Context, fn: Callable[[Control], Awaitable[T]]) -> T:
    """Connect, run ``fn`` with the control client, note the position it wrote at, close."""
    opts: Options = ctx.obj
    settings = ctl_settings(opts.config, flags=opts.flags)

    if opts.min_position is not None and opts.min_position < 0:
        raise ConfigError("must be 0 or more", key="--min-position")
    min_position = recall(settings) if opts.min_position is None else opts.min_position

    async def main() -> T:
        from mirrorbus.bus import connect
        from mirrorbus.control import Control

        bus = await connect(settings, reconnect=False)
        try:
            control = Control(bus, min_position=min_position, replica=opts.replica, positions=True)
            result = await fn(control)
            remember(settings, control.written)
            return result
        finally:
            await bus.close()

    return run_async(main)


def ago(when: datetime | None, now: datetime) -> str:
    """``5m ago``, ``in 1h02m``, ``never``: a time as people read it in a table."""
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds}s"
    elif seconds < 3600:
        text = f"{seconds // 60}m"
    elif seconds < 86400:
        text = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    else:
        text = f"{seconds // 86400}d{seconds % 86400 // 3600}h"
    return f"in {text}" if future else f"{text} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain columns, two spaces apart, no trailing blanks (easy to ``grep``/``awk``)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)
