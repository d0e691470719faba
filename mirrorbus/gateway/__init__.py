"""The tunasync gateway: tunasync's manager HTTP API for a fleet moving to mirrorbus.

Unmodified tunasync workers register and report through it and become workers on the bus
(their reports are appended as their events); ``tunasynctl`` talks to it as to its manager;
commands for the old workers are forwarded to the URL each registered.  It may speak only for
workers that have no mirrorbus certificate: the server enforces that.

Uses ``events``, ``bus``, ``control`` and the status view; nothing imports it but the CLI.
"""

from mirrorbus.gateway.api import TunasyncApi
from mirrorbus.gateway.fleet import Fleet, OldWorker
from mirrorbus.gateway.relay import Relay
from mirrorbus.gateway.service import Gateway
from mirrorbus.gateway.settings import GatewaySettings, gateway_settings, with_listen

__all__ = [
    "Fleet",
    "Gateway",
    "GatewaySettings",
    "OldWorker",
    "Relay",
    "TunasyncApi",
    "gateway_settings",
    "with_listen",
]
