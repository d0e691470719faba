"""A mirrorbus site spread over the hosts of a :class:`~netdrills.hosts.Net`.

::

    host   address        runs
    n1     198.18.0.11    nats-server (JetStream cluster node, client 4222, routes 6222)
    n2     198.18.0.12    nats-server
    n3     198.18.0.13    nats-server
    mgr    198.18.0.21    mirrorbus manager -c manager.toml
    w1     198.18.0.31    mirrorbus worker -c w1.toml
    w2     198.18.0.32    mirrorbus worker -c w2.toml
    ops    198.18.0.41    the operator: mirrorbus ctl -c admin.toml / reader.toml, probes

Set up the way an operator would across real machines: one CA, a server certificate naming
the three nodes' addresses, a route certificate, one client certificate per role, and a
``[bus]`` section listing all three nodes in every config (streams of three replicas).
Everything is driven through the CLI; the drill reads the manager's SQLite view (a file) and
the log through ``mirrorbus ctl events --json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from mirrorbus.events.subjects import Subjects
from mirrorbus.events.wire import RunRow
from mirrorbus.host import pki
from mirrorbus.host.natsconf import ClusterBlock, render_server_config
from mirrorbus.host.server import find_nats_server
from netdrills.hosts import Host, Net
from projections.status_view import StatusView

T = TypeVar("T")

NODES = {"n1": 11, "n2": 12, "n3": 13}
CLIENT_PORT = 4222
ROUTE_PORT = 6222
RELAY_PORT = 15000
WORKERS = {"w1": 31, "w2": 32}
TICK = "tick"
"""The short-interval job every worker runs (one run every 0.6 s)."""
CMD_JOBS = ("cmd-expired", "cmd-valid")
"""w1's long-interval jobs, run by hand with ``ctl start`` in the command drill."""

COUNTING = """
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "https://example.org/{name}/"
interval = {interval}
command = '''/bin/sh -c 'echo "$MIRRORBUS_RUN" >> "$TUNASYNC_WORKING_DIR/runs"' '''
"""


class DrillFailure(AssertionError):
    """An invariant did not hold or a bounded wait ran out (what, and the last state)."""


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DrillFailure(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _says(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def count_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


class Fleet:
    """Three nodes, the manager, two workers and an operator host, on ``net``."""

    def __init__(self, net: Net, root: Path) -> None:
        self.net = net
        self.root = root.resolve()
        self.pki = self.root / "pki"
        self.logs = self.root / "logs"
        self.nodes = {n: net.add_host(n, i) for n, i in NODES.items()}
        self.manager = net.add_host("mgr", 21)
        self.workers = {w: net.add_host(w, i) for w, i in WORKERS.items()}
        self.ops = net.add_host("ops", 41)
        self.db = self.root / "view.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MIRRORBUS_")}
        tests = str(Path(__file__).resolve().parents[1])
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (tests, self.env.get("PYTHONPATH", "")) if p
        )
        self._view: StatusView | None = None

    # -- files ------------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [f"tls://{h.addr}:{CLIENT_PORT}" for h in self.nodes.values()]

    def _bus(self, stem: str) -> str:
        urls = ", ".join(f'"{u}"' for u in self.urls)
        return (
            f"[bus]\nurls = [{urls}]\n"
            f'ca_cert = "{self.pki / "ca.crt"}"\n'
            f'cert = "{self.pki / f"{stem}.crt"}"\nkey = "{self.pki / f"{stem}.key"}"\n'
        )

    def write_files(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        addrs = [h.addr for h in self.nodes.values()]
        pki.ensure_pki(self.pki, addrs, WORKERS)
        pki.ensure_route_cert(self.pki, addrs)
        for name, host in self.nodes.items():
            directory = self.root / "nodes" / name
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "nats.conf").write_text(
                render_server_config(
                    pki_dir=self.pki,
                    store_dir=directory / "jetstream",
                    host=host.addr,
                    port=CLIENT_PORT,
                    subjects=Subjects(),
                    workers=list(WORKERS),
                    server_name=name,
                    cluster=ClusterBlock(
                        name="drills",
                        host=host.addr,
                        port=ROUTE_PORT,
                        routes=tuple(
                            (h.addr, ROUTE_PORT) for n, h in self.nodes.items() if n != name
                        ),
                    ),
                )
            )
        (self.root / "manager.toml").write_text(
            self._bus("manager")
            + f'\n[database]\nurl = "sqlite:///{self.db}"\n\n[streams]\nreplicas = 3\n'
        )
        for role in ("admin", "reader"):
            (self.root / f"{role}.toml").write_text(self._bus(role))
        for worker in WORKERS:
            jobs = COUNTING.format(name=TICK, interval=0.01)
            if worker == "w1":
                jobs += "".join(COUNTING.format(name=j, interval=1440) for j in CMD_JOBS)
            (self.root / f"{worker}.toml").write_text(
                "[global]\n"
                f'name = "{worker}"\n'
                f'mirror_dir = "{self.root}/mirrors/{worker}"\n'
                f'log_dir = "{self.root}/logs/{worker}/{{{{.Name}}}}"\n'
                "concurrent = 4\nretry = 1\ninterval = 60\n\n"
                + self._bus(f"worker-{worker}")
                + f'outbox = "{self.root}/outbox-{worker}.db"\n'
                + jobs
            )

    # -- processes --------------------------------------------------------------------------
    def mirrorbus(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mirrorbus", *args]

    def start_node(self, name: str) -> None:
        conf = self.root / "nodes" / name / "nats.conf"
        self.net.start(
            name,
            self.nodes[name],
            [str(find_nats_server()), "-c", str(conf)],
            self.logs / f"{name}.log",
            self.env,
        )

    def start_manager(self) -> None:
        argv = self.mirrorbus("manager", "-c", str(self.root / "manager.toml"), "-v")
        self.net.start("manager", self.manager, argv, self.logs / "manager.log", self.env)

    def start_worker(self, worker: str) -> None:
        argv = self.mirrorbus("worker", "-c", str(self.root / f"{worker}.toml"), "-v")
        self.net.start(worker, self.workers[worker], argv, self.logs / f"{worker}.log", self.env)

    def start(self) -> None:
        """Start everything and wait until the workers' jobs are in the view."""
        self.write_files()
        for name in self.nodes:
            self.start_node(name)
        wait_for(lambda: self.probe("jetstream").get("ok"), 60, "the cluster's JetStream")
        self.start_manager()
        wait_for(lambda: self.ctl("list", "--all").returncode == 0, 60, "the manager to answer")
        for worker in self.workers:
            self.start_worker(worker)
        for worker in self.workers:
            self.wait_status(worker, TICK, "success", 60)
        for job in CMD_JOBS:
            self.wait_status("w1", job, "success", 60)

    def delay_workers(self, delay: float) -> None:
        """Every worker's connections to the nodes through a relay on its own host that
        holds each chunk ``delay`` seconds (see :mod:`netdrills.relay`)."""
        for worker, host in self.workers.items():
            key = f"relay-{worker}"
            log = self.logs / f"{key}.log"
            argv = [sys.executable, "-m", "netdrills.relay", "--port", str(RELAY_PORT)]
            self.net.start(key, host, [*argv, "--delay", str(delay), "--mark", "7"], log, self.env)
            wait_for(partial(_says, log, "relay on"), 30, f"the relay on {worker}")
            self.net.redirect(host, self.nodes.values(), CLIENT_PORT, RELAY_PORT, mark=7)

    def undelay_workers(self) -> None:
        """Stop the relays (after :meth:`Net.heal` removed the redirection): the workers'
        connections through them break and are made again directly."""
        for worker in self.workers:
            self.net.stop(f"relay-{worker}")

    def connected_nodes(self, host: Host) -> set[str]:
        """The nodes (names) ``host`` has TCP connections to, by ``ss``: a connection to a
        node cut off silently stays ESTABLISHED here until the process gives it up."""
        out = self.net.run_on(host, ["ss", "-tnH", "state", "established"], timeout=10)
        peers = {line.split()[-1].rsplit(":", 1)[0] for line in out.stdout.splitlines()}
        return {name for name, n in self.nodes.items() if n.addr in peers}

    def check_running(self) -> None:
        """Raise if a process of the site exited (its log's tail in the message)."""
        for key, proc in self.net.procs.items():
            if proc.popen.poll() is not None:
                tail = proc.log.read_text(errors="replace").splitlines()[-15:]
                raise DrillFailure(
                    f"{key} exited with status {proc.popen.returncode}:\n" + "\n".join(tail)
                )

    # -- the operator ------------------------------------------------------------------------
    def ctl(
        self, *args: str, host: Host | None = None, role: str = "admin", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``mirrorbus ctl -c ROLE.toml ARGS`` on ``host`` (the operator's by default)."""
        argv = self.mirrorbus("ctl", "-c", str(self.root / f"{role}.toml"), *args)
        return self.net.run_on(host or self.ops, argv, timeout=timeout, env=self.env)

    def probe(self, what: str, timeout: float = 30) -> dict[str, Any]:
        """``python -m netdrills.probe WHAT`` on the operator's host: one JSON object."""
        argv = [sys.executable, "-m", "netdrills.probe", "-c", str(self.root / "admin.toml"), what]
        out = self.net.run_on(self.ops, argv, timeout=timeout, env=self.env)
        if out.returncode != 0:
            return {"error": out.stderr.strip()[-300:]}
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def events(self) -> list[dict[str, Any]]:
        """The whole event log (``ctl events --json`` with a reader's certificate)."""
        out = self.ctl("events", "--json", role="reader", timeout=120)
        if out.returncode != 0:
            raise DrillFailure(f"ctl events failed: {out.stderr.strip()}")
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def rebuild_equals_view(self, name: str) -> bool:
        """``mirrorbus manager rebuild --into`` a fresh file on the manager's host, compared
        row for row with the live view."""
        into = self.root / f"rebuilt-{name}.db"
        into.unlink(missing_ok=True)
        argv = self.mirrorbus(
            "manager",
            "rebuild",
            "-c",
            str(self.root / "manager.toml"),
            "--into",
            f"sqlite:///{into}",
        )
        out = self.net.run_on(self.manager, argv, timeout=120, env=self.env)
        if out.returncode != 0:
            raise DrillFailure(f"manager rebuild failed: {out.stderr.strip()}")
        other = StatusView(f"sqlite:///{into}")
        try:
            same: bool = other.dump() == self.view.dump()
            return same
        finally:
            other.close()

    # -- what a user would look at ------------------------------------------------------------
    @property
    def view(self) -> StatusView:
        if self._view is None:
            wait_for(self.db.exists, 60, "the manager's database")
            self._view = StatusView(f"sqlite:///{self.db}")
        return self._view

    def runs_file(self, worker: str, job: str) -> Path:
        return self.root / "mirrors" / worker / job / "runs"

    def runs_made(self, worker: str, job: str) -> int:
        return count_lines(self.runs_file(worker, job))

    def run_ids_made(self, worker: str, job: str) -> list[str]:
        """The run id of every run whose script ran (each writes ``$MIRRORBUS_RUN``)."""
        try:
            return self.runs_file(worker, job).read_text().split()
        except FileNotFoundError:
            return []

    def runs_in_view(self, worker: str, job: str) -> list[RunRow]:
        return self.view.history(worker, job, limit=1_000_000)

    def status(self, worker: str, job: str) -> str | None:
        return next((j.status for j in self.view.jobs(worker) if j.name == job), None)

    def wait_status(self, worker: str, job: str, status: str, timeout: float) -> None:
        wait_for(
            lambda: self.status(worker, job) == status,
            timeout,
            f"{worker}/{job} to be {status} (last: {self.status(worker, job)})",
        )

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None
