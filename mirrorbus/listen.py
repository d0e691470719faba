"""``HOST:PORT`` listen addresses of the HTTP servers (status API, tunasync gateway).

A module of its own, without the servers, so that a command checking an address given on its
command line (``mirrorbus up --http``) does not import the HTTP stack.
"""

from __future__ import annotations

from mirrorbus.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:14280"


def parse_listen(text: str, source: str = "http", key: str = "http.listen") -> tuple[str, int]:
    """``"127.0.0.1:14280"``, ``"[::1]:14280"`` or ``":14280"`` (all addresses) -> host, port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"listen address {text!r} is not HOST:PORT (e.g. 127.0.0.1:14280)",
            file=source,
            key=key,
        )
    return host.strip("[]") or "0.0.0.0", int(port)
