"""The name a manager replica takes when given none.

A setting's default, so it lives with the settings and not with the replica machinery (which
needs the view): ``[manager] name`` falls back to it, and the state directory's layout, and
so the ``up`` supervisor, needs it too.
"""

from __future__ import annotations

import re
import socket

_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_-]+")


def default_name(hostname: str | None = None) -> str:
    """The replica name a manager takes when given none: its host's name (the first label,
    made a valid name), else ``manager``."""
    label = (hostname if hostname is not None else socket.gethostname()).split(".", 1)[0]
    name = _NOT_TOKEN.sub("-", label).lstrip("-")[:64]
    return name or "manager"
