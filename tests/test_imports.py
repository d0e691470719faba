"""Each program imports only what it runs: the ctl no view, HTTP server, worker or manager;
the worker no view or HTTP stack; a manager without HTTP no HTTP stack; the ``up`` supervisor
none of these.

Measured as a user runs them: a real ``mirrorbus up`` (nats-server with TLS, manager, worker)
started with ``PYTHONPROFILEIMPORTTIME=1``, so that every Python process it starts writes each
import to its stderr (the supervisor's to its output, the worker's to ``logs/worker.log``),
and ``mirrorbus ctl`` run with ``-X importtime`` against it.  The import list is Python's own
record, not something the program reports about itself.

The query, log and row types the ctl sends and decodes are wire contracts beside the events
(``mirrorbus.events.wire``), so the ctl imports no module of the ``mirrorbus.manager`` or
``mirrorbus.worker`` packages at all, not even their ``__init__``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import up_children, wait_for

from mirrorbus.host.server import free_port

pytestmark = pytest.mark.e2e

CONFIG = """
[global]
name = "lean"
mirror_dir = "mirrors"
log_dir = "logs/{{.Name}}"
concurrent = 2
interval = 60

[[mirrors]]
name = "quick"
provider = "command"
command = "/bin/true"
"""

HEAVY = ("sqlalchemy", "aiohttp", "prometheus_client", "psycopg")
"""Stacks only the manager's view and HTTP server need."""

SERVICES = (
    "mirrorbus.worker.service",
    "mirrorbus.worker.run",
    "mirrorbus.manager.service",
    "mirrorbus.manager.projector",
    "mirrorbus.manager.queries",
    "mirrorbus.manager.http",
    "projections.status_view",
    "mirrorbus.host.supervisor",
)

MANAGER = tuple(m for m in SERVICES if m.startswith(("mirrorbus.manager", "projections")))

CLIENT_FORBIDDEN = ("mirrorbus.manager", "mirrorbus.worker")
"""Packages the ctl (the client) imports nothing of: it talks to them over the bus only."""

_IMPORT = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)\s*$")


def imported(text: str) -> set[str]:
    """The modules named by ``-X importtime`` lines in ``text``."""
    return {m.group(1) for line in text.splitlines() if (m := _IMPORT.match(line))}


def offending(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The modules of ``forbidden`` that were loaded.

    A package counts as loaded when one of its submodules was: ``-X importtime`` also lists
    an import that was refused at once, and the ctl refuses nats-py its optional aiohttp
    (see ``without_websocket_transport``), which then shows as a bare ``aiohttp`` line.  Every
    package here loads submodules when it really is imported.
    """
    return sorted(
        m
        for m in modules
        for f in forbidden
        if m.startswith(f + ".") or (m == f and ("." in f or f.startswith("mirrorbus")))
    )


class LeanUp:
    def __init__(self, tmp: Path) -> None:
        self.config = tmp / "worker.toml"
        self.config.write_text(CONFIG)
        self.state = tmp / "state"
        self.out = tmp / "up.out"
        env = dict(os.environ)
        self.env = env
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "mirrorbus", "up", "-c", str(self.config)),
                    *("--state-dir", str(self.state), "--port", str(free_port())),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
            )
        wait_for(lambda: "Ctrl-C stops everything" in self.text(), 60, "the banner")

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "mirrorbus", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, "MIRRORBUS_STATE_DIR": str(self.state)},
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def lean(tmp_path: Path) -> Iterator[LeanUp]:
    u = LeanUp(tmp_path)
    try:
        yield u
    finally:
        if u.proc.poll() is None:
            u.proc.send_signal(signal.SIGTERM)
            try:
                u.proc.wait(60)
            except subprocess.TimeoutExpired:
                u.proc.kill()
                u.proc.wait(10)
        for pid in up_children(u.state).values():
            os.kill(pid, signal.SIGKILL)


def test_ctl_worker_and_supervisor_import_only_what_they_run(lean: LeanUp) -> None:
    def quick_ran() -> subprocess.CompletedProcess[str] | None:
        listed = lean.ctl("ctl", "list", "--all")
        return listed if listed.returncode == 0 and "success" in listed.stdout else None

    listed = wait_for(quick_ran, 60, "job quick to succeed, listed by the ctl")
    started = lean.ctl("ctl", "start", "-w", "lean", "quick")
    assert started.returncode == 0, started.stderr
    assert "accepted" in started.stdout
    top_help = lean.ctl("--help")
    ctl_help = lean.ctl("ctl", "--help")
    assert top_help.returncode == 0 and "ctl" in top_help.stdout
    assert ctl_help.returncode == 0 and "start" in ctl_help.stdout

    # The ctl: no view, no HTTP stack, no service; no X.509 library (a command's issuer is
    # read from its certificate's DER); no rich when the output is not a terminal.
    ctl_list = imported(listed.stderr)
    assert "mirrorbus.control" in ctl_list  # the record is real: it names what did run
    assert "mirrorbus.events.wire" in ctl_list
    client_forbidden = (*HEAVY, *SERVICES, *CLIENT_FORBIDDEN, "rich", "cryptography")
    assert offending(ctl_list, client_forbidden) == []
    assert offending(imported(started.stderr), client_forbidden) == []
    # Help connects to nothing: not even nats-py for the top level.
    assert offending(imported(top_help.stderr), (*HEAVY, *SERVICES, "nats", "rich")) == []
    assert offending(imported(ctl_help.stderr), (*HEAVY, *SERVICES, "nats", "rich")) == []
    assert offending(imported(ctl_help.stderr), CLIENT_FORBIDDEN) == []

    # The supervisor holds no TLS and no certificate library: what it mapped into memory
    # (its certificates are made by a short-lived child, and it never connects).
    maps = Path(f"/proc/{lean.proc.pid}/maps").read_text()
    assert "/cryptography/" not in maps and "_ssl." not in maps

    lean.proc.send_signal(signal.SIGTERM)
    assert lean.proc.wait(60) == 0

    # The worker: its config, the bus and its jobs; nothing of the manager.
    worker = imported((lean.state / "logs" / "worker.log").read_text(errors="replace"))
    assert "mirrorbus.worker.service" in worker
    assert offending(worker, (*HEAVY, *MANAGER, "mirrorbus.gateway.service")) == []
    # The manager: its view, but neither an HTTP stack when it serves no HTTP (no --http
    # here) nor the worker.
    manager = imported((lean.state / "logs" / "manager.log").read_text(errors="replace"))
    assert "mirrorbus.manager.service" in manager
    assert (
        offending(manager, ("aiohttp", "mirrorbus.worker.service", "mirrorbus.gateway.api")) == []
    )
    # The supervisor only starts and watches processes.
    supervisor = imported(lean.text())
    assert "mirrorbus.host.supervisor" in supervisor
    assert (
        offending(supervisor, (*HEAVY, *MANAGER, "mirrorbus.worker.service", "projections")) == []
    )
