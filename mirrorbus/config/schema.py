"""The one mechanism every config file is read with: which keys each section may hold, their
TOML types, and checking them.

tunasync decodes into Go structs: a wrong type is a load error, an unknown key is silently
dropped.  We keep the first and soften the second into a warning that names the file, the
section or job and the key, because a misspelt key (``intervall = 5``) otherwise silently
falls back to a default.  The ctl's, manager's and project's files get the same: the same
warning line (:func:`unknown_key`) and the same checks.  The worker's keys are declared here,
with the units and limits :func:`read_table` applies by key name; the other files' sections
next to the code that reads them (``BUS_KEYS`` in :mod:`mirrorbus.config.bus`, ``HTTP_KEYS``
in :mod:`mirrorbus.config.outputs`, ...).

:func:`read_toml` reads a file; :func:`read_table` turns one raw TOML table into a dict of
checked values (lists become tuples); :class:`Checked` reads them back with their tunasync
defaults; :func:`section` and :func:`settings_table` do both for a top-level table.  Nothing
here knows about inheritance or derived values; that is
:mod:`mirrorbus.config.worker_mirrors`.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import cast

from mirrorbus.errors import ConfigError


class Kind(Enum):
    """The TOML shape a key must have; the value is how errors describe it."""

    STR = "a string"
    INT = "an integer"
    NUMBER = "a number"
    BOOL = "true or false"
    STRS = "a list of strings"
    INTS = "a list of integers"
    ENV = "a table of strings"
    TABLE = "a table"
    ANY = "a value its reader checks"
    """A key whose form the code reading it checks, with a message saying what it may be
    (``allow = "10.0.0.0/8"`` or a list of networks)."""


_STR, _INT, _BOOL = Kind.STR, Kind.INT, Kind.BOOL

GLOBAL_KEYS: Mapping[str, Kind] = {
    "name": _STR,
    "log_dir": _STR,
    "mirror_dir": _STR,
    "concurrent": _INT,
    "interval": Kind.NUMBER,
    "retry": _INT,
    "timeout": _INT,
    "rsync_options": Kind.STRS,
    "exec_on_success": Kind.STRS,
    "exec_on_failure": Kind.STRS,
    "dangerous_global_success_exit_codes": Kind.INTS,
    "dangerous_global_rsync_success_exit_codes": Kind.INTS,
    # mirrorbus only:
    "jitter": Kind.NUMBER,
    "retry_backoff": Kind.NUMBER,
    "keep_logs": _INT,
    "upstream_limit": _INT,
}

MIRROR_KEYS: Mapping[str, Kind] = {
    "jitter": Kind.NUMBER,  # mirrorbus only
    "retry_backoff": Kind.NUMBER,  # mirrorbus only
    "keep_logs": _INT,  # mirrorbus only
    "desc": _STR,  # mirrorbus only: mirrorz.json's desc
    "help": _STR,  # mirrorbus only: mirrorz.json's help (a URL)
    "name": _STR,
    "provider": _STR,
    "upstream": _STR,
    "interval": Kind.NUMBER,
    "retry": _INT,
    "timeout": _INT,
    "mirror_dir": _STR,
    "mirror_subdir": _STR,
    "log_dir": _STR,
    "env": Kind.ENV,
    "role": _STR,
    "exec_on_success": Kind.STRS,
    "exec_on_failure": Kind.STRS,
    "exec_on_success_extra": Kind.STRS,
    "exec_on_failure_extra": Kind.STRS,
    "success_exit_codes": Kind.INTS,
    "rsync_success_exit_codes": Kind.INTS,
    "command": _STR,
    "fail_on_match": _STR,
    "size_pattern": _STR,
    "use_ipv6": _BOOL,
    "use_ipv4": _BOOL,
    "exclude_file": _STR,
    "username": _STR,
    "password": _STR,
    "rsync_no_timeout": _BOOL,
    "rsync_timeout": _INT,
    "rsync_options": Kind.STRS,
    "rsync_override": Kind.STRS,
    "rsync_override_only": _BOOL,
    "stage1_profile": _STR,
    "memory_limit": _STR,
    "docker_image": _STR,
    "docker_volumes": Kind.STRS,
    "docker_options": Kind.STRS,
    "snapshot_path": _STR,
}
"""Every ``[[mirrors]]`` key of docs/tunasync.md §3.1 except ``mirrors`` (the children)."""

CGROUP_KEYS: Mapping[str, Kind] = {
    "enable": _BOOL,
    "group": _STR,
    "base_path": _STR,
    "subsystem": _STR,
}
ZFS_KEYS: Mapping[str, Kind] = {"enable": _BOOL, "zpool": _STR}
BTRFS_KEYS: Mapping[str, Kind] = {"enable": _BOOL, "snapshot_path": _STR}
DOCKER_KEYS: Mapping[str, Kind] = {"enable": _BOOL, "volumes": Kind.STRS, "options": Kind.STRS}
INCLUDE_KEYS: Mapping[str, Kind] = {"include_mirrors": _STR}

UNITS: Mapping[str, str] = {
    "interval": "minutes",
    "timeout": "seconds",
    "rsync_timeout": "seconds",
    "retry": "attempts per run",
    "concurrent": "jobs",
    "jitter": "minutes",
    "retry_backoff": "seconds",
    "upstream_limit": "connections per upstream host",
    "keep_logs": "log files per job",
}
NON_NEGATIVE = frozenset(UNITS)
_TEN_YEARS_MIN = 10 * 365 * 24 * 60
MAXIMUM: Mapping[str, float] = {
    # Past these a value is a typo, and would overflow a timedelta or a database column.
    "interval": _TEN_YEARS_MIN,
    "jitter": _TEN_YEARS_MIN,
    "timeout": _TEN_YEARS_MIN * 60,
    "rsync_timeout": _TEN_YEARS_MIN * 60,
    "retry_backoff": 24 * 3600,
    "retry": 1000,
    "keep_logs": 100_000,
    "concurrent": 100_000,
    "upstream_limit": 100_000,
}


@dataclass(frozen=True, slots=True)
class Where:
    """The file and the section or job a value came from, for messages that locate it."""

    file: Path | str
    job: str | None
    table: str | None = None
    """A top-level table of a ctl, manager or project file (``http``).  Its errors name the
    key as those files' settings are written in messages and docs, ``key 'http.enable'``;
    warnings about unknown keys read like everywhere else, ``[http]: key 'enabel'``."""

    def error(self, key: str | None, problem: str) -> ConfigError:
        if self.table is not None:
            return ConfigError(problem, file=self.file, key=_dotted(self.table, key))
        return ConfigError(problem, file=self.file, job=self.job, key=key)

    def warning(self, key: str | None, problem: str) -> str:
        # Same shape as a ConfigError message, so that both read alike on stderr.
        job = self.job if self.table is None else f"[{self.table}]"
        return str(ConfigError(problem, file=self.file, job=job, key=key))


def resolve(base: Path, text: str) -> Path:
    """``text`` as a path, relative ones taken from ``base`` (the config file's directory)."""
    return Path(os.path.normpath(base / text))


def _dotted(table: str, key: str | None) -> str:
    return table if key is None else f"{table}.{key}"


def read_toml(path: Path) -> dict[str, object]:
    """The document of a TOML file; a ConfigError naming the file if it cannot be read."""
    try:
        with path.open("rb") as fp:
            return tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}", file=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=path) from None


def unknown_key(where: Where, key: str, known: Iterable[str], what: str = "key") -> str:
    """The one warning for a key (or section) no schema knows, in any config file: where it
    is, the key, that it is ignored, and what is known there (the close name, if one is)::

        worker.toml: [global]: key 'intervall': unknown key, ignored (did you mean 'interval'?)
        manager.toml: key 'databse': unknown section or key, ignored (known: bus, database, ...)
    """
    names = sorted(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(names) or 'none'}"
    return where.warning(key, f"unknown {what}, ignored ({hint})")


def unknown_keys(
    doc: Mapping[str, object],
    sections: Mapping[str, Collection[str] | None],
    file: Path | str,
    warnings: list[str],
) -> None:
    """Add a :func:`unknown_key` warning for every top-level key of ``doc`` that is not one of
    ``sections``, and every key of a section that is not among its keys.  ``None``: a section
    whose keys are checked where it is read (by :func:`section`), or are free-form.  A
    section of the wrong type is left to its reader's error."""
    top = Where(file, None)
    for name, value in doc.items():
        if name not in sections:
            warnings.append(unknown_key(top, name, sections, "section or key"))
            continue
        keys = sections[name]
        if keys is None or not isinstance(value, dict):
            continue
        where = Where(file, f"[{name}]")
        warnings.extend(unknown_key(where, key, keys) for key in value if key not in keys)


def describe(value: object) -> str:
    """How a wrong value is shown in an error: its TOML type and, if short, the value."""
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string"}
    name = kinds.get(type(value))
    if name is None:
        name = "table" if isinstance(value, dict) else "list" if isinstance(value, list) else "date"
        return name
    shown = repr(value) if not isinstance(value, bool) else str(value).lower()
    return f"{name} {shown}" if len(shown) <= 40 else name


def _fits(kind: Kind, value: object) -> bool:
    # bool is a subclass of int in Python; in TOML they are different types.
    if kind is Kind.STR:
        return isinstance(value, str)
    if kind is Kind.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is Kind.NUMBER:  # interval: minutes, fractions allowed (tunasync: whole minutes)
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is Kind.BOOL:
        return isinstance(value, bool)
    if kind is Kind.STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is Kind.INTS:
        return isinstance(value, list) and all(_fits(Kind.INT, v) for v in value)
    if kind is Kind.TABLE:
        return isinstance(value, dict)
    if kind is Kind.ANY:
        return True
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def read_table(
    raw: Mapping[str, object],
    keys: Mapping[str, Kind],
    where: Where,
    warnings: list[str] | None,
    *,
    skip: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """Check every key of ``raw`` against ``keys``; return the known ones, converted.

    Unknown keys are reported in ``warnings`` (None: reported for the whole file already,
    see :func:`unknown_keys`) and dropped; keys in ``skip`` are left for the caller.  Raises
    :class:`ConfigError` naming file, job and key on a wrong type or a negative count.
    """
    out: dict[str, object] = {}
    for key, value in raw.items():
        if key in skip:
            continue
        kind = keys.get(key)
        if kind is None:
            if warnings is not None:
                warnings.append(unknown_key(where, key, [*keys, *skip]))
            continue
        if not _fits(kind, value):
            unit = f" ({UNITS[key]})" if key in UNITS else ""
            raise where.error(key, f"expected {kind.value}{unit}, got {describe(value)}")
        if key in NON_NEGATIVE and cast(int, value) < 0:
            raise where.error(key, f"must not be negative, got {value}")
        if key in MAXIMUM and not cast(float, value) <= MAXIMUM[key]:  # also refuses nan
            raise where.error(key, f"must be at most {MAXIMUM[key]:g} ({UNITS[key]}), got {value}")
        if kind is Kind.ANY:
            pass  # left as written, for its reader
        elif isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[key] = value
    return out


class Checked:
    """Typed read access to a table returned by :func:`read_table`, with tunasync defaults.

    Missing keys give the Go zero value, exactly as tunasync sees them.
    """

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, object]) -> None:
        self.values = values

    def text(self, key: str, default: str = "") -> str:
        return cast(str, self.values.get(key, default))

    def integer(self, key: str) -> int:
        return cast(int, self.values.get(key, 0))

    def number(self, key: str) -> float:
        return cast(float, self.values.get(key, 0))

    def flag(self, key: str) -> bool:
        return cast(bool, self.values.get(key, False))

    def texts(self, key: str) -> tuple[str, ...]:
        return cast(tuple[str, ...], self.values.get(key, ()))

    def integers(self, key: str) -> tuple[int, ...]:
        return cast(tuple[int, ...], self.values.get(key, ()))

    def env(self) -> dict[str, str]:
        return dict(cast(Mapping[str, str], self.values.get("env", {})))

    def table(self, key: str) -> dict[str, object]:
        return dict(cast(Mapping[str, object], self.values.get(key, {})))

    def path(self, key: str, source: Path) -> Path | None:
        """A file named in a ctl, manager or project file: ``~`` expanded, a relative path
        taken from the file's directory; None when unset or ``""``."""
        text = self.text(key)
        if not text:
            return None
        path = Path(text).expanduser()
        return path if path.is_absolute() else source.parent / path


def section(
    doc: Mapping[str, object],
    name: str,
    keys: Mapping[str, Kind],
    file: Path | str,
    warnings: list[str],
) -> Checked:
    """Read top-level table ``[name]`` of ``doc`` (absent ⇒ all defaults)."""
    where = Where(file, f"[{name}]")
    raw = doc.get(name, {})
    if not isinstance(raw, dict):
        raise where.error(None, f"expected a table [{name}], got {describe(raw)}")
    return Checked(read_table(raw, keys, where, warnings))


def settings_table(
    doc: Mapping[str, object], name: str, keys: Mapping[str, Kind], file: Path | str
) -> Checked:
    """Top-level table ``[name]`` of a ctl, manager or project file (absent ⇒ defaults), its
    values checked against ``keys``; errors name ``name.key``.  Unknown keys are warned about
    once for the whole file, by :func:`unknown_keys` with the same ``keys``."""
    raw = doc.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", file=file, key=name)
    return Checked(read_table(raw, keys, Where(file, None, name), None))


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgtp])?i?b?", re.IGNORECASE | re.ASCII)
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_memory_limit(text: str, where: Where) -> int | None:
    """Bytes for a ``memory_limit`` string, as docker go-units ``RAMInBytes`` reads it.

    Units are binary whatever the spelling: ``"256M"``, ``"256MiB"``, ``"256mb"`` and
    ``"256 m"`` are all 256 × 1024².  A bare number is bytes.  ``""`` and ``"0"`` mean no
    limit (``None``), which also lets a child mirror drop an inherited limit.

    >>> parse_memory_limit("1.5G", Where("w.toml", None))
    1610612736
    """
    match = _SIZE.fullmatch(text.strip())
    if text.strip() == "":
        return None
    if match is None:
        raise where.error(
            "memory_limit", f'invalid size {text!r} (expected e.g. "256M", "1.5GiB", "512k")'
        )
    size = int(float(match.group(1)) * _BINARY[(match.group(2) or "").lower()])
    return size or None
