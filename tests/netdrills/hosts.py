"""Hosts on one machine: network namespaces on a bridge, and the faults between them.

Layout of one run (``RUN`` is ``mbdrill<pid>``, so two runs never share a name)::

    RUN-br      a namespace holding only the bridge br0 and one veth end per host
    RUN-<host>  one namespace per host: lo, and eth0 (the other veth end) with 198.18.0.N/24

Nothing is added to the machine's own network namespace: every ``ip`` call names a namespace
(``ip -n``/``ip netns exec``), and the veth pairs are made inside the bridge's namespace.

Faults, all undone by :meth:`Net.heal`:

* :meth:`Net.cut` a host off (its bridge port down: all directions, like a pulled cable);
* :meth:`Net.block` the path between two hosts only (iptables DROP in one of them, both
  directions, silently, like a partition);
* :meth:`Net.split` two groups (``block`` for every pair across);
* :meth:`Net.lose` a share of the packets between a host and some peers (iptables
  ``statistic --mode random``).

This kernel has no ``netem`` qdisc, so delay is not made here: see :mod:`netdrills.relay`.

:meth:`Net.close` stops every process it started (SIGTERM, then SIGKILL), kills whatever else
still runs in its namespaces, and deletes them (which removes their veths and firewall rules).
It runs from ``with Net() as net:``, so an error or Ctrl-C cleans up too; :func:`sweep_stale`
removes what a run killed with SIGKILL left behind, on the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

PREFIX = "mbdrill"
SUBNET = "198.18.0"
"""The hosts' /24, from 198.18.0.0/15 (RFC 2544: set aside for network tests)."""


class NetError(Exception):
    """A host or a fault could not be made (the command and its error in the message)."""


def ip_run(*argv: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and out.returncode != 0:
        raise NetError(f"{' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


def missing_tools(*, iptables: bool = True) -> str | None:
    """Why the drills cannot run here, or None if they can.

    Being root is not enough in a container without CAP_NET_ADMIN or netfilter: a namespace,
    a veth pair and (with ``iptables``) a firewall rule are made for real, then removed.
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("ss", "iproute2"), ("iptables", "iptables")):
        if (iptables or tool != "iptables") and shutil.which(tool) is None:
            return f"{package} (`{tool}`) is not installed"
    ns = f"{PREFIX}{os.getpid()}-probe"
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "-n", ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
    ]
    if iptables:
        steps.append(["ip", "netns", "exec", ns, "iptables", "-w", "-A", "OUTPUT", "-j", "ACCEPT"])
    try:
        for argv in steps:
            out = ip_run(*argv, check=False)
            if out.returncode != 0:
                return f"`{' '.join(argv[:4])} ...` fails here: {out.stderr.strip()[:200]}"
    finally:
        ip_run("ip", "netns", "del", ns, check=False)
    return None


def netns_names() -> list[str]:
    out = ip_run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    out = ip_run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_all(ns: str) -> None:
    """SIGKILL every process still in namespace ``ns`` (all of them ours: we made it)."""
    for _ in range(20):
        pids = netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_namespaces(names: Iterable[str]) -> None:
    for ns in names:
        _kill_all(ns)
        ip_run("ip", "netns", "del", ns, check=False)


def sweep_stale() -> list[str]:
    """Delete the namespaces of earlier runs whose process is gone; return their names."""
    stale = []
    for ns in netns_names():
        owner = ns.removeprefix(PREFIX).split("-", 1)[0]
        if ns.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
            stale.append(ns)
    remove_namespaces(stale)
    return stale


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    ns: str
    addr: str
    port: str
    """Its veth end in the bridge's namespace (``down`` cuts the host off)."""


@dataclass
class Proc:
    host: Host
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Net:
    """The hosts of one run, their processes and the faults in force."""

    run: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    _rules: list[tuple[Host, tuple[str, ...]]] = field(default_factory=list)
    _cut: set[str] = field(default_factory=set)
    _made: list[str] = field(default_factory=list)

    @property
    def bridge_ns(self) -> str:
        return f"{self.run}-br"

    def __enter__(self) -> Net:
        sweep_stale()
        self._add_ns(self.bridge_ns)
        self._ip(self.bridge_ns, "link", "add", "br0", "type", "bridge")
        self._ip(self.bridge_ns, "link", "set", "br0", "up")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add_ns(self, ns: str) -> None:
        ip_run("ip", "netns", "add", ns)
        self._made.append(ns)
        self._ip(ns, "link", "set", "lo", "up")

    def _ip(self, ns: str, *args: str) -> None:
        ip_run("ip", "-n", ns, *args)

    def add_host(self, name: str, index: int) -> Host:
        """A host ``name`` with address 198.18.0.``index`` on the bridge."""
        host = Host(name=name, ns=f"{self.run}-{name}", addr=f"{SUBNET}.{index}", port=name)
        self._add_ns(host.ns)
        self._ip(self.bridge_ns, "link", "add", host.port, "type", "veth", "peer", "name",
                 "eth0", "netns", host.ns)  # fmt: skip
        self._ip(self.bridge_ns, "link", "set", host.port, "master", "br0", "up")
        self._ip(host.ns, "addr", "add", f"{host.addr}/24", "dev", "eth0")
        self._ip(host.ns, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def exec_argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", host.ns, *argv]

    def run_on(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on ``host`` to completion (bounded by ``timeout``)."""
        return subprocess.run(
            self.exec_argv(host, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def start(
        self,
        key: str,
        host: Host,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """Start a long-running process on ``host``, its output appended to ``log``.

        It gets a session of its own, so a Ctrl-C in the terminal reaches only the drill,
        which then stops it in order.
        """
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                self.exec_argv(host, argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        proc = Proc(host=host, popen=popen, log=log)
        self.procs[key] = proc
        return proc

    def stop(self, key: str, timeout: float = 15) -> int:
        proc = self.procs.pop(key)
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            return proc.popen.wait(10)

    # -- faults ---------------------------------------------------------------------------
    def cut(self, host: Host) -> None:
        """Cut ``host`` off from every other host (its bridge port down)."""
        self._ip(self.bridge_ns, "link", "set", host.port, "down")
        self._cut.add(host.name)

    def uncut(self, host: Host) -> None:
        self._ip(self.bridge_ns, "link", "set", host.port, "up")
        self._cut.discard(host.name)

    def _iptables(self, host: Host, *rule: str, table: str = "filter") -> None:
        ip_run(*self.exec_argv(host, ["iptables", "-w", "-t", table, "-A", *rule]))
        self._rules.append((host, ("-t", table, *rule)))

    def block(self, a: Host, b: Host) -> None:
        """Drop everything between ``a`` and ``b`` (both directions, silently)."""
        self._iptables(a, "INPUT", "-s", b.addr, "-j", "DROP")
        self._iptables(a, "OUTPUT", "-d", b.addr, "-j", "DROP")

    def split(self, side: Iterable[Host], other: Iterable[Host]) -> None:
        """A partition: no host of ``side`` reaches a host of ``other``; each side whole."""
        others = list(other)
        for a in side:
            for b in others:
                self.block(a, b)

    def lose(self, host: Host, peers: Iterable[Host], share: float) -> None:
        """Drop ``share`` (0..1) of the packets ``host`` sends to each of ``peers``, at random
        (what ``tc netem loss`` on its interface would do)."""
        probability = f"{share:.3f}"
        for peer in peers:
            self._iptables(host, "OUTPUT", "-d", peer.addr, "-m", "statistic", "--mode",
                           "random", "--probability", probability, "-j", "DROP")  # fmt: skip

    def redirect(
        self, host: Host, peers: Iterable[Host], port: int, to_port: int, mark: int
    ) -> None:
        """Send ``host``'s new TCP connections to ``port`` of each of ``peers`` to its own
        ``127.0.0.1:to_port`` instead (a transparent relay there dials on with ``mark``), and
        break its current ones so that they are made again through the relay."""
        for peer in peers:
            self._iptables(host, "OUTPUT", "-p", "tcp", "-d", peer.addr, "--dport", str(port),
                           "-m", "mark", "!", "--mark", str(mark), "-j", "REDIRECT",
                           "--to-ports", str(to_port), table="nat")  # fmt: skip
            ip_run(*self.exec_argv(host, ["ss", "-K", "dst", peer.addr, "dport", "=", str(port)]))

    def heal(self) -> None:
        """Undo every fault: bridge ports up, firewall rules removed."""
        for name in sorted(self._cut):
            self.uncut(self.hosts[name])
        while self._rules:
            host, rule = self._rules.pop()
            table, chain_rule = rule[:2], rule[2:]
            ip_run(*self.exec_argv(host, ["iptables", "-w", *table, "-D", *chain_rule]))

    @property
    def faulty(self) -> bool:
        return bool(self._cut or self._rules)

    # -- teardown -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every process (SIGTERM, 15 s, SIGKILL), then delete every namespace."""
        for key in list(self.procs):
            proc = self.procs[key]
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for key in list(self.procs):
            proc = self.procs.pop(key)
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(10)
        remove_namespaces(reversed(self._made))
        self._made.clear()
        self._rules.clear()
        self._cut.clear()
