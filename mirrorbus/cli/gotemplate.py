"""The part of Go's text/template that ``tunasynctl list -f`` templates use: ``{{.Field}}``.

tunasynctl executes its ``--format`` template once per job, over the job's Go struct, and
prints a newline after each.  Scripts write things like ``'{{.Name}}\\t{{.Status}}'``; that
is what this supports, with Go's field names and the same text as the JSON output gives for
each field (``true``/``false`` for booleans, the JSON's time text for times).  ``{{- ``
and `` -}}`` trim the white space beside an action, as in Go.  The two-character sequences
``\\t``, ``\\n`` and ``\\\\`` in the literal text become a tab, a newline and a backslash,
because a shell passes them typed, not interpreted.

Anything else Go templates can do (pipelines, functions, ``range``, ``if``, ``{{.}}``) is
refused with one line naming what was found, rather than printed wrongly::

    >>> GoTemplate("{{.Name}} {{.Status}}", WEB_FIELDS).render({"name": "a", "status": "x"})
    'a x'
    >>> GoTemplate("{{.Nmae}}", WEB_FIELDS)
    Traceback (most recent call last):
    mirrorbus.errors.ConfigError: key '--format': unknown field .Nmae in the template ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mirrorbus.errors import ConfigError

WEB_FIELDS: Mapping[str, str] = {
    "Name": "name",
    "IsMaster": "is_master",
    "Status": "status",
    "LastUpdate": "last_update",
    "LastUpdateTs": "last_update_ts",
    "LastStarted": "last_started",
    "LastStartedTs": "last_started_ts",
    "LastEnded": "last_ended",
    "LastEndedTs": "last_ended_ts",
    "Scheduled": "next_schedule",
    "ScheduledTs": "next_schedule_ts",
    "Upstream": "upstream",
    "Size": "size",
}
"""Go field name -> JSON key of tunasync's ``WebMirrorStatus`` (``list --all``)."""

MIRROR_FIELDS: Mapping[str, str] = {
    "Name": "name",
    "Worker": "worker",
    "IsMaster": "is_master",
    "Status": "status",
    "LastUpdate": "last_update",
    "LastStarted": "last_started",
    "LastEnded": "last_ended",
    "Scheduled": "next_schedule",
    "Upstream": "upstream",
    "Size": "size",
    "ErrorMsg": "error_msg",
}
"""Go field name -> JSON key of tunasync's ``MirrorStatus`` (``list WORKER``)."""

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_FIELD = re.compile(r"\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*")
_ESCAPES = re.compile(r"\\([tn\\])")
_ESCAPED = {"t": "\t", "n": "\n", "\\": "\\"}
_KEY = "--format"


def _unescape(text: str) -> str:
    return _ESCAPES.sub(lambda m: _ESCAPED[m.group(1)], text)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<no value>"  # what Go prints for a missing value
    return str(value)


@dataclass(frozen=True, slots=True)
class _Literal:
    text: str


@dataclass(frozen=True, slots=True)
class _Field:
    key: str


class GoTemplate:
    """A parsed template; raises ConfigError (key ``--format``) for what it cannot do."""

    def __init__(self, source: str, fields: Mapping[str, str]) -> None:
        self.source = source
        self.parts: list[_Literal | _Field] = []
        pos = 0
        pending = ""
        for match in _ACTION.finditer(source):
            literal = pending + source[pos : match.start()]
            if match.group(1):
                literal = literal.rstrip()
            self._literal(literal)
            pending = ""
            inner = match.group(2)
            if "{{" in inner:
                raise ConfigError(f"unclosed action {_show(inner)} in the template", key=_KEY)
            found = _FIELD.fullmatch(inner)
            if found is None:
                raise ConfigError(
                    f"unsupported template syntax {{{{{inner}}}}}: only {{{{.Field}}}} "
                    f"is supported (fields: {', '.join(fields)})",
                    key=_KEY,
                )
            name = found.group(1)
            if name not in fields:
                raise ConfigError(
                    f"unknown field .{name} in the template (fields: {', '.join(fields)})",
                    key=_KEY,
                )
            self.parts.append(_Field(fields[name]))
            pos = match.end()
            if match.group(3):
                rest = source[pos:]
                pos += len(rest) - len(rest.lstrip())
        tail = source[pos:]
        if "{{" in tail:
            raise ConfigError(
                f"unclosed action {_show(tail[tail.index('{{') :])} in the template", key=_KEY
            )
        self._literal(tail)

    def _literal(self, text: str) -> None:
        if text:
            self.parts.append(_Literal(_unescape(text)))

    def render(self, item: Mapping[str, Any]) -> str:
        """The template executed over one item (a JSON object of the list output)."""
        return "".join(
            p.text if isinstance(p, _Literal) else _text(item.get(p.key)) for p in self.parts
        )


def _show(text: str) -> str:
    return repr(text if len(text) <= 30 else text[:27] + "...")
