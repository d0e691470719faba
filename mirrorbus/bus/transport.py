"""nats-py without aiohttp, unless a websocket URL or an HTTP server needs it.

nats-py imports aiohttp when it is first imported, for its websocket transport (``ws://``,
``wss://``), and treats it as optional.  aiohttp is most of what importing nats-py costs, and
the ctl and the worker never serve or speak HTTP.  This module imports no nats-py itself, so a
program calls :func:`without_websocket_transport` before anything imports nats-py.
"""

from __future__ import annotations

import importlib
import sys

from mirrorbus.errors import ConfigError

__all__ = ["allow_aiohttp", "restore_websocket_transport", "without_websocket_transport"]


def without_websocket_transport() -> None:
    """Keep nats-py from importing aiohttp, in a process that connects over ``tls://`` only.

    Before nats-py is imported aiohttp is marked absent; :func:`mirrorbus.bus.connect` brings
    it back if a server URL is a websocket one.  A process that has already imported either
    is left alone.
    """
    if "nats" not in sys.modules and "aiohttp" not in sys.modules:
        sys.modules["aiohttp"] = None  # type: ignore[assignment]


def allow_aiohttp() -> None:
    """Undo :func:`without_websocket_transport` for a process that serves HTTP after all (a
    manager with ``[http]`` or the tunasync gateway): its own aiohttp import then works, and
    nats-py keeps going without its websocket transport."""
    if "aiohttp" in sys.modules and sys.modules["aiohttp"] is None:
        del sys.modules["aiohttp"]


def restore_websocket_transport() -> None:
    """Give nats-py its aiohttp back if :func:`without_websocket_transport` kept it out,
    because a server URL is a websocket one after all."""
    import nats.aio.transport as transport

    if getattr(transport, "aiohttp", None) is None:
        allow_aiohttp()
        try:
            setattr(transport, "aiohttp", importlib.import_module("aiohttp"))  # noqa: B010
        except ImportError:
            raise ConfigError("a ws:// or wss:// NATS URL needs aiohttp installed") from None
