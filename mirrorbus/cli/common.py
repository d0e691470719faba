"""What every command of the CLI shares: one-line errors, logging, running async code.

Errors: a :class:`MirrorbusError` becomes one line on stderr (``mirrorbus <cmd>: error: ...``)
and the error's exit code; nothing else is caught, so a bug still shows its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from functools import wraps
from typing import ParamSpec, TypeVar

import anyio
import typer

from mirrorbus.errors import ConfigError, MirrorbusError

P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(prog: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: turn a MirrorbusError into one stderr line and its exit code."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except MirrorbusError as exc:
                for warning in exc.warnings if isinstance(exc, ConfigError) else ():
                    logging.getLogger("mirrorbus.config").warning("%s", warning)  # the cause?
                typer.echo(f"{prog}: error: {exc}", err=True)
                raise typer.Exit(exc.exit_code) from None
            except BaseExceptionGroup as group:  # raised out of a task group
                first = _first_mirrorbus_error(group)
                if first is None:
                    raise
                typer.echo(f"{prog}: error: {first}", err=True)
                raise typer.Exit(first.exit_code) from None

        return wrapper

    return decorate


def _first_mirrorbus_error(group: BaseExceptionGroup[BaseException]) -> MirrorbusError | None:
    """The first MirrorbusError in a group, if every non-cancellation error in it is one."""
    errors: list[MirrorbusError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            inner = _first_mirrorbus_error(exc)
            if inner is None:
                return None
            errors.append(inner)
        elif isinstance(exc, MirrorbusError):
            errors.append(exc)
        else:
            return None
    return errors[0] if errors else None


def _eof_noise(record: logging.LogRecord) -> bool:
    return "eof_received()" not in record.getMessage()


def _quiet_asyncio() -> None:
    """asyncio logs a warning whenever a TLS peer closes; it is noise, not a problem."""
    logger = logging.getLogger("asyncio")
    if _eof_noise not in logger.filters:
        logger.addFilter(_eof_noise)


def run_async(fn: Callable[[], Awaitable[R]]) -> R:
    """Run ``fn`` on anyio's asyncio backend (nats-py is asyncio-only)."""
    _quiet_asyncio()
    return anyio.run(fn, backend="asyncio")


class _Formatter(logging.Formatter):
    """tunasync's line format: ``[YY-MM-DD HH:MM:SS][LEVEL] message``."""

    def __init__(self, with_time: bool) -> None:
        fmt = (
            "[%(asctime)s][%(levelname)s] %(message)s"
            if with_time
            else "[%(levelname)s] %(message)s"
        )
        super().__init__(fmt, datefmt="%y-%m-%d %H:%M:%S")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``time`` RFC 3339 UTC, ``level``, ``logger``, ``message``,
    ``exception`` when there is one), for journald's and log shippers' parsers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(
    verbose: bool = False,
    debug: bool = False,
    with_systemd: bool = False,
    log_format: LogFormat = LogFormat.text,
) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == LogFormat.json else _Formatter(with_time=not with_systemd)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("mirrorbus").setLevel(level if debug else min(level, logging.INFO))
    if not debug:
        logging.getLogger("nats").setLevel(logging.CRITICAL)
    _quiet_asyncio()
