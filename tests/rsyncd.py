"""A real rsync daemon on loopback, for the rsync provider tests.

``rsync --daemon --no-detach`` on a free 127.0.0.1 port with a generated ``rsyncd.conf``; one
module per :class:`Module`.  The daemon is started and stopped by :func:`rsync_daemon` (a
context manager; waits are bounded).  Used by ``tests/test_rsync.py``.

Why the base directory lives outside pytest's ``tmp_path``: pytest creates its directories
``0700``, and a module served as ``uid = nobody`` (the way to make a root test run meet a file
it cannot read, hence rsync exit 23) must be able to walk down to its files.  The base is a
fresh ``0755`` directory in the system temp dir, removed afterwards.

``munge symlinks = no``: without chroot the daemon would otherwise rewrite every symlink it
sends (``/rsyncd-munged/...``), and the tests compare link targets.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mirrorbus.host.server import free_port

START_WITHIN = 5.0
STOP_WITHIN = 5.0


@dataclass(frozen=True)
class Module:
    """One ``[name]`` section.

    ``options`` are extra ``key = value`` lines (``uid``, ...); ``secrets`` (user → password)
    turns on ``auth users`` with a ``secrets file`` written ``0600`` (rsyncd's strict modes).
    """

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RsyncDaemon:
    port: int
    base: Path  # module ``m`` serves ``base / m``
    log: Path

    def path(self, module: str) -> Path:
        return self.base / module

    def url(self, module: str) -> str:
        return f"rsync://127.0.0.1:{self.port}/{module}/"


def _config(daemon: RsyncDaemon, modules: list[Module]) -> str:
    lines = [
        "use chroot = no",
        "munge symlinks = no",
        "reverse lookup = no",
        "read only = yes",
        "address = 127.0.0.1",
        f"log file = {daemon.log}",
    ]
    for module in modules:
        settings = {"path": str(daemon.path(module.name)), "uid": "root", "gid": "root"}
        if module.secrets:
            secrets = daemon.log.with_name(f"{module.name}.secrets")
            secrets.write_text("".join(f"{u}:{p}\n" for u, p in module.secrets.items()))
            secrets.chmod(0o600)
            settings["auth users"] = ", ".join(module.secrets)
            settings["secrets file"] = str(secrets)
        settings.update(module.options)
        lines.append(f"[{module.name}]")
        lines += [f"    {key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def rsync_daemon(modules: list[Module]) -> Iterator[RsyncDaemon]:
    """Serve ``modules`` (directories created empty under ``daemon.base``) until exit."""
    rsync = shutil.which("rsync")
    if rsync is None:
        raise RuntimeError("rsync is not installed (the test command installs it)")
    base = Path(tempfile.mkdtemp(prefix="mirrorbus-rsyncd-"))
    try:
        base.chmod(0o755)
        daemon = RsyncDaemon(port=free_port(), base=base / "modules", log=base / "rsyncd.log")
        for module in modules:
            daemon.path(module.name).mkdir(parents=True, mode=0o755)
        daemon.base.chmod(0o755)
        conf = base / "rsyncd.conf"
        conf.write_text(_config(daemon, modules))
        argv = [rsync, "--daemon", "--no-detach", f"--config={conf}", f"--port={daemon.port}"]
        with subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ) as process:
            try:
                deadline = time.monotonic() + START_WITHIN
                while not _listening(daemon.port):
                    if process.poll() is not None or time.monotonic() > deadline:
                        log = daemon.log.read_text() if daemon.log.exists() else ""
                        raise RuntimeError(f"rsync daemon did not start: {log}")
                    time.sleep(0.02)
                yield daemon
            finally:
                process.terminate()
                try:
                    process.wait(STOP_WITHIN)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    finally:
        # chmod 000 files and directories must be removable: we are root, rmtree copes.
        shutil.rmtree(base, ignore_errors=True)
