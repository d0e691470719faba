"""The tunasync gateway: tunasync's manager HTTP API for a fleet moving to mirrorbus.

Unmodified tunasync workers register and report through it and become workers on the bus
(their reports are appended as their events); ``tunasynctl`` talks to it as to its manager;
commands for the old workers are forwarded to the URL each registered.  It may speak only for
workers that have no mirrorbus certificate: the server enforces that.

Uses ``events``, ``bus``, ``control`` and the status view; nothing imports it but the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from mirrorbus.gateway.api import TunasyncApi
    from mirrorbus.gateway.fleet import Fleet, OldWorker
    from mirrorbus.gateway.relay import Relay
    from mirrorbus.gateway.service import Gateway

__all__ = [
    "Fleet",
    "Gateway",
    "OldWorker",
    "Relay",
    "TunasyncApi",
]

# Loaded on first use: the server (aiohttp) only by a manager that serves tunasync's API.
# Its settings ([tunasync_api]) are read by mirrorbus.config.gateway.
_WHERE = {
    "Fleet": "mirrorbus.gateway.fleet",
    "Gateway": "mirrorbus.gateway.service",
    "OldWorker": "mirrorbus.gateway.fleet",
    "Relay": "mirrorbus.gateway.relay",
    "TunasyncApi": "mirrorbus.gateway.api",
}

__getattr__ = lazy(__name__, _WHERE)
