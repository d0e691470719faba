"""systemd's service notifications (``sd_notify``), without libsystemd.

A unit of ``Type=notify`` starts the program with ``NOTIFY_SOCKET`` (a datagram socket: a
path, or ``@name`` in the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``.
The program sends newline-separated ``KEY=VALUE`` lines:

* ``READY=1`` once it really serves: for the worker and the manager, once connected to the bus
  with their subscriptions in place, so units ordered ``After=`` them (and ``systemctl start``)
  wait for that rather than for the process to exist;
* ``WATCHDOG=1`` at half the watchdog interval while healthy, so that systemd restarts a
  program whose event loop hangs;
* ``RELOADING=1`` ... ``READY=1`` around a reload, ``STOPPING=1`` when it stops, ``STATUS=``
  a line for ``systemctl status``.

Without ``NOTIFY_SOCKET`` every call does nothing.  The variables are taken out of the
environment when read, so the job processes a worker starts neither inherit nor misuse them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

import anyio

log = logging.getLogger(__name__)

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Where to send notifications, and how often the watchdog wants a ping (None: never)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_interval = (
            watchdog_usec / 2_000_000 if watchdog_usec is not None and watchdog_usec > 0 else None
        )

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read (and remove) ``NOTIFY_SOCKET`` and the watchdog variables.  A watchdog meant
        for another process (``WATCHDOG_PID``) is ignored."""
        env = os.environ if environ is None else environ
        values = {name: env.pop(name, None) for name in _VARIABLES}
        usec: int | None = None
        text = values["WATCHDOG_USEC"]
        pid = values["WATCHDOG_PID"]
        if text and text.isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(text)
        return cls(values["NOTIFY_SOCKET"], usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):  # abstract namespace: a leading NUL byte
            return b"\0" + self.address[1:].encode()
        return self.address

    def notify(self, *lines: str) -> bool:
        """Send one datagram of ``lines``; False if not under systemd or it failed (a
        notification is never worth stopping or blocking the service for: it is logged)."""
        if self.address is None:
            return False
        data = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait: a receiver that does not read (its queue holds a few
                # datagrams) must not stop the event loop; the message is dropped instead.
                sock.setblocking(False)
                sock.connect(self._target())
                sock.send(data)
        except BlockingIOError:
            log.debug("systemd's notify socket is full: %s dropped", lines[0])
            return False
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    async def watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping at half the watchdog interval while ``healthy()``; forever (cancel it).

        Running on the service's event loop, each ping also says the loop still turns; a
        service found unhealthy gets no ping and systemd restarts it at the interval's end.
        """
        if self.watchdog_interval is None or self.address is None:
            return
        warned = False
        while True:
            if healthy():
                self.notify("WATCHDOG=1")
                warned = False
            elif not warned:
                log.warning("unhealthy: no watchdog ping for systemd until it recovers")
                warned = True
            await anyio.sleep(self.watchdog_interval)
