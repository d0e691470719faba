"""``mirrorbus up``: the embedded default, everything a single mirror host needs.

First use creates the state directory, the CA and certificates, and a ``nats.conf``; later
uses reuse them.  Then it starts nats-server (JetStream, mutual TLS), creates the streams, and
runs the manager (SQLite) and the worker as separate supervised processes: one that dies is
restarted with a growing delay while the others carry on.  SIGINT/SIGTERM stops everything in
order (worker first, so it records its killed runs while the bus is still up; nats-server
last), job processes included.

With ``--cluster`` the one nats-server becomes a three-node cluster on loopback (see
:mod:`mirrorbus.host.cluster`) with streams of three replicas, and the manager and the worker get
every node's URL: a node that dies is restarted like any other child, and meanwhile the
clients carry on through the other two.

With ``--managers N`` the manager runs as N replicas named after the host (``HOST``,
``HOST-2`` ...), each with its own consumer and SQLite view (``manager-NAME.db``) and, with
``--http``, its own port; queries go to whichever replica is alive, so one that dies or hangs
leaves ``ctl`` answering while it is restarted.

Children run in their own sessions so that a Ctrl-C on the terminal reaches only this
process, which then stops them in that order.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from mirrorbus.config.listen import parse_listen
from mirrorbus.config.names import default_name
from mirrorbus.config.worker import WorkerConfig
from mirrorbus.dirs import make_dirs
from mirrorbus.errors import ConfigError, MirrorbusError, ServerError
from mirrorbus.host import cluster
from mirrorbus.host.instance import Instance, InstanceInfo
from mirrorbus.host.server import DEFAULT_PORT, NatsServer, find_nats_server

log = logging.getLogger("mirrorbus.up")

HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0
READY_TIMEOUT = 60.0
"""Seconds ``up`` waits for a manager, then the worker, to say it is ready before it goes on."""


@dataclass
class Child:
    """One supervised process and its restart bookkeeping."""

    name: str
    argv: list[str]
    log_file: Path
    stop_timeout: float
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 1.0
    restart_at: float | None = None
    restarts: int = field(default=0)
    ready: bool = False
    """The process said ``READY=1`` since it was (re)started."""
    _notify: socket.socket | None = None

    def _notify_socket(self) -> str:
        """The child's ``NOTIFY_SOCKET``: a datagram socket in the abstract namespace that
        this process reads, as systemd would (see :mod:`mirrorbus.sdnotify`).  Readiness thus
        comes from the child itself, once it really serves, without a connection of ours."""
        address = f"mirrorbus-up-{os.getpid()}-{id(self):x}"
        if self._notify is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.bind(b"\0" + address.encode())
            sock.setblocking(False)
            self._notify = sock
        return "@" + address

    def drain(self) -> None:
        """Read what the child said; note ``READY=1``."""
        while self._notify is not None:
            try:
                data = self._notify.recv(4096)
            except BlockingIOError:
                return
            if b"READY=1" in data.split(b"\n") and not self.ready:
                self.ready = True
                log.info("%s ready", self.name)

    def start(self) -> None:
        make_dirs(self.log_file.parent, 0o700)
        env = {**os.environ, "NOTIFY_SOCKET": self._notify_socket()}
        env.pop("WATCHDOG_USEC", None)
        self.drain()  # what a previous process said
        self.ready = False
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("%s started (pid %d), log %s", self.name, self.proc.pid, self.log_file)

    def check(self, now: float) -> None:
        """Restart the process if it died, after a delay that doubles while it keeps dying."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            if now - self.started_at > STABLE_AFTER:
                self.backoff = 1.0
            log.warning(
                "%s exited with status %s; restarting in %.0fs (log %s)",
                self.name,
                code,
                self.backoff,
                self.log_file,
            )
            self.proc = None
            self.restart_at = now + self.backoff
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        if self.proc is None and self.restart_at is not None and now >= self.restart_at:
            self.restarts += 1
            self.start()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        self.restart_at = None
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, self.stop_timeout)
            proc.kill()
            proc.wait()


def prepare(
    instance: Instance, cfg: WorkerConfig, port: int | None, clustered: bool = False
) -> InstanceInfo:
    """Create or reuse the state directory, certificates and server config(s).

    An instance started with ``--cluster`` stays a cluster on later starts.  A single
    server's log cannot become a cluster's (the nodes have stores of their own), so
    ``--cluster`` on a state directory that holds one is an error.
    """
    from mirrorbus.host import pki

    previous = instance.read() if instance.info_file.exists() else None
    if previous is not None and previous.clustered:
        clustered = True
    elif clustered and instance.store_dir.exists():
        raise ConfigError(
            f"holds the log of a single nats-server ({instance.store_dir}); a cluster cannot "
            "take it over: use another --state-dir for `up --cluster`",
            file=instance.root,
        )
    base = port or (previous.port if previous else DEFAULT_PORT)
    info = InstanceInfo(
        host="127.0.0.1",
        port=base,
        prefix=cfg.bus.prefix,
        ports=cluster.cluster_ports(base) if clustered else (),
    )
    make_dirs(instance.root, 0o700)
    instance.write(info)
    pki.ensure_pki(instance.pki_dir, HOSTS, [cfg.name])
    make_dirs(instance.nats_dir, 0o700)
    write_server_config(instance, info)
    return info


def write_server_config(instance: Instance, info: InstanceInfo | None = None) -> None:
    """Write the instance's nats-server config(s) again from the certificates in its PKI
    directory (after a certificate was issued or revoked; reload the server after)."""
    from mirrorbus.events.subjects import Subjects
    from mirrorbus.host import pki
    from mirrorbus.host.natsconf import render_server_config

    info = info or instance.read()
    if info.clustered:
        cluster.write_configs(instance, info, pki.issued_workers(instance.pki_dir))
        return
    text = render_server_config(
        pki_dir=instance.pki_dir.resolve(),
        store_dir=instance.store_dir.resolve(),
        host=info.host,
        port=info.port,
        subjects=Subjects(info.prefix),
        workers=pki.issued_workers(instance.pki_dir),
    )
    tmp = instance.nats_conf.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(instance.nats_conf)


def _prepare_in_child(
    config_path: Path, state_dir: Path, port: int | None, clustered: bool
) -> None:
    """Run :func:`prepare` in a short-lived process of its own: certificates need the
    cryptography library, which this long-running supervisor would otherwise hold in memory
    for the rest of its life.  A problem is reported by the child on stderr (one line) and
    ends ``up`` with the child's exit status."""
    argv = [sys.executable, "-m", "mirrorbus.host.supervisor", "prepare", str(config_path)]
    argv += [str(state_dir), str(port or 0), "cluster" if clustered else "single"]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(done.returncode)


def _wait_ready(
    children: Sequence[Child], servers: Sequence[NatsServer], timeout: float = READY_TIMEOUT
) -> bool:
    """Watch the processes (restarting what dies) until each of ``children`` said it is
    ready; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        _watch(servers, children)
        if all(child.ready for child in children):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _watch(servers: Sequence[NatsServer], children: Sequence[Child]) -> None:
    """One round of supervision: restart a server or child that died; read what they said."""
    now = time.monotonic()
    for server in servers:
        if not server.running:
            log.warning(
                "nats-server on port %d exited; restarting it (log %s)",
                server.port,
                server.log_file,
            )
            try:
                server.start()
            except ServerError as exc:
                log.error("%s", exc)
    for child in children:
        child.drain()
        child.check(now)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def up(
    config_path: Path,
    cfg: WorkerConfig,
    state_dir: Path,
    port: int | None,
    nats_binary: str | None,
    http: str | None = None,
    clustered: bool = False,
    tunasync_api: str | None = None,
    managers: int = 1,
) -> None:
    """Run the embedded default until SIGINT or SIGTERM (``clustered``: on three nodes;
    ``tunasync_api``: the manager also serves tunasync's API there; ``managers``: that many
    manager replicas, see :func:`replica_names`)."""
    instance = Instance(state_dir)
    _prepare_in_child(config_path, state_dir, port, clustered)
    info = instance.read()
    binary = find_nats_server(nats_binary)
    if info.clustered:
        servers = cluster.servers(instance, info, binary)
    else:
        servers = [
            NatsServer(
                binary,
                instance.nats_conf,
                host=info.host,
                port=info.port,
                log_file=instance.logs_dir / "nats-server.log",
            )
        ]
    root = str(state_dir.resolve())
    python = [sys.executable, "-m", "mirrorbus"]
    names = replica_names(managers)
    https = replica_listens(http, managers)
    children = [
        Child(
            "manager" if managers == 1 else f"manager {name}",
            [
                *python,
                "manager",
                "--state-dir",
                root,
                *(["--name", name] if managers > 1 else []),
                *(["--http", listen] if listen else []),
                # One gateway, on the one address given (tunasync workers have one api_base).
                *(["--tunasync-api", tunasync_api] if tunasync_api and i == 0 else []),
            ],
            instance.logs_dir / ("manager.log" if managers == 1 else f"manager-{name}.log"),
            stop_timeout=15,
        )
        for i, (name, listen) in enumerate(zip(names, https, strict=True))
    ]
    children += [
        Child(
            "worker",
            [*python, "worker", "-c", str(config_path.resolve()), "--state-dir", root],
            instance.logs_dir / "worker.log",
            stop_timeout=30,
        ),
    ]
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for server in servers:
            server.start()
        managers_, workers_ = children[:-1], children[-1:]
        for child in managers_:
            child.start()  # a manager makes (or updates) the streams before it is ready
        if not _wait_ready(managers_[:1], servers):
            log.warning("the manager is not ready yet; see %s", managers_[0].log_file)
        for child in workers_:
            child.start()
        if not _wait_ready(workers_, servers):
            log.warning("the worker is not ready yet; see %s", workers_[0].log_file)
        print(_banner(instance, info, cfg, config_path, https, tunasync_api, names), flush=True)
        while True:
            _watch(servers, children)
            time.sleep(0.5)
    except _Stop as stop:
        print(f"\n{stop.args[0]}: stopping the worker, the manager and nats-server ...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):  # worker first, while the bus still runs
            child.stop()
        _stop_all(servers)
        for s, handler in old.items():
            signal.signal(s, handler)
    print("stopped; state kept in", root, flush=True)


def _stop_all(servers: list[NatsServer]) -> None:
    """Stop the nodes together: one after the other, the last two would each wait for a
    cluster that is going away."""
    if len(servers) == 1:
        servers[0].stop()
        return
    with ThreadPoolExecutor(len(servers)) as pool:
        for done in [pool.submit(s.stop) for s in servers]:
            done.result()


def replica_names(managers: int, base: str | None = None) -> list[str]:
    """The names of ``up --managers N``'s replicas: the host's name (what a manager started
    without ``--name`` takes), then ``HOST-2`` ... ``HOST-N``."""
    first = base or default_name()
    return [first] + [f"{first[:60]}-{i}" for i in range(2, managers + 1)]


def replica_listens(http: str | None, managers: int) -> list[str | None]:
    """Each replica's HTTP address: ``--http HOST:PORT`` for the first, the next ports for
    the others (a load balancer in front of them, see the README, hides which one answers)."""
    if http is None:
        return [None] * managers
    host, port = parse_listen(http, "--http")
    if port + managers - 1 > 65535:
        raise ConfigError(f"{managers} managers need {managers} ports from {port}", key="--http")
    shown = f"[{host}]" if ":" in host else host
    return [f"{shown}:{port + i}" for i in range(managers)]


def _banner(
    instance: Instance,
    info: InstanceInfo,
    cfg: WorkerConfig,
    config: Path,
    https: Sequence[str | None],
    tunasync_api: str | None = None,
    names: Sequence[str] = (),
) -> str:
    root = instance.root.resolve()
    nodes = f"{len(info.urls)}-node cluster, streams R{info.replicas}; " if info.clustered else ""
    names = names or replica_names(1)
    views = [
        f"  view       {instance.view_path(n).resolve()} (SQLite"
        + (f", manager replica {n})" if len(names) > 1 else ")")
        for n in names
    ]
    status = [
        f"  status     http://{listen}/  (page; /jobs is tunasync's JSON; /metrics)"
        + (f" from {n}" if len(names) > 1 else "")
        for n, listen in zip(names, https, strict=True)
        if listen
    ]
    return "\n".join(
        [
            f"mirrorbus is up: worker {cfg.name!r} with {len(cfg.mirrors)} job(s) from {config}",
            f"  state      {root}",
            f"  nats       {', '.join(info.urls)} "
            f"({nodes}mutual TLS; certificates in {root / 'pki'})",
            *views,
            f"  logs       {root / 'logs'}",
            *status,
            *(
                [f"  tunasync   http://{tunasync_api}/  (old workers' api_base, tunasynctl)"]
                if tunasync_api
                else []
            ),
            "",
            "Control it from another terminal:",
            f"  export MIRRORBUS_STATE_DIR={shlex.quote(str(root))}",
            "  mirrorbus ctl list --all",
            f"  mirrorbus ctl start -w {shlex.quote(cfg.name)} {_job_argument(cfg)}",
            "",
            "Ctrl-C stops everything (job processes included).",
        ]
    )


def _job_argument(cfg: WorkerConfig) -> str:
    """The first job's name as a shell argument of ``ctl start`` (``--`` before a leading dash)."""
    if not cfg.mirrors:
        return "JOB"
    name = cfg.mirrors[0].name
    return f"-- {shlex.quote(name)}" if name.startswith("-") else shlex.quote(name)


def _prepare_main(argv: Sequence[str]) -> int:
    """``python -m mirrorbus.host.supervisor prepare CONFIG STATE PORT cluster|single``."""
    from mirrorbus.config.worker import load_worker_config

    config, state, port, mode = argv
    try:
        cfg = load_worker_config(Path(config))
        prepare(Instance(Path(state)), cfg, int(port) or None, mode == "cluster")
    except MirrorbusError as exc:
        print(f"mirrorbus up: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        sys.exit(_prepare_main(sys.argv[2:]))
