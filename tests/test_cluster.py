"""``mirrorbus up --cluster``: three nats-server nodes, streams of three replicas, failover.

Real processes all the way: ``mirrorbus up --cluster`` starts the three nodes (routes over
mutual TLS), the manager and the worker.  The drill kills the node that leads the event
stream with SIGKILL while a short-interval job keeps appending: the supervisor restarts the
node, the worker and the manager carry on through the other two, and afterwards the runs the
job's script counted equal the runs in the view, none twice, and the view equals a rebuild
from the log.  SIGTERM then stops all three nodes and every child.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from e2e import count_lines, up_children, wait_for
from test_e2e_worker import COUNTING_JOB

from mirrorbus.bus import connect
from mirrorbus.config.site import manager_config
from mirrorbus.config.worker import load_worker_config
from mirrorbus.errors import ConfigError
from mirrorbus.host.cluster import NODES, cluster_ports, nodes
from mirrorbus.host.instance import Instance, InstanceInfo
from mirrorbus.host.server import find_nats_server, free_port
from mirrorbus.host.supervisor import prepare
from projections.status_view import StatusView

pytestmark = pytest.mark.e2e  # every test here starts processes

WORKER = "solo"


def _free_base() -> int:
    """A port P with P..P+5 free on loopback right now (clients, then routes)."""
    for _ in range(50):
        base = free_port()
        if base + 2 * NODES > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + 2 * NODES):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no six consecutive free ports on 127.0.0.1")


@dataclass
class StreamCluster:
    replicas: int
    leader: str
    peers: dict[str, bool]  # the other replicas: name -> current


async def _stream_cluster(state: Path) -> StreamCluster | None:
    bus = await connect(Instance(state).bus_settings("admin"), reconnect=False)
    try:
        info = await bus.js.stream_info(bus.subjects.evt_stream)
    except Exception:  # no leader yet, a node just died: ask again
        return None
    finally:
        await bus.close()
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return None
    return StreamCluster(
        replicas=info.config.num_replicas or 0,
        leader=cluster.leader,
        peers={p.name: bool(p.current) for p in cluster.replicas or []},
    )


def stream_cluster(state: Path) -> StreamCluster | None:
    return anyio.run(_stream_cluster, state, backend="asyncio")


class ClusterUp:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state"
        self.config = tmp / "worker.toml"
        self.config.write_text(
            "[global]\n"
            f'name = "{WORKER}"\n'
            f'mirror_dir = "{tmp}/mirrors"\n'
            f'log_dir = "{tmp}/logs/{{{{.Name}}}}"\n'
            "concurrent = 2\nretry = 1\ninterval = 60\n"
            + COUNTING_JOB.format(name="tick", interval=0.01)
        )
        self.runs_file = tmp / "mirrors" / "tick" / "runs"
        self.port = _free_base()
        self.out = tmp / "up.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ)
        self._view: StatusView | None = None

    def start(self) -> None:
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "mirrorbus", "up", "--cluster"),
                    *("-c", str(self.config), "--state-dir", str(self.state)),
                    *("--port", str(self.port)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        wait_for(lambda: "Ctrl-C stops everything" in self.text(), 40, "the banner")

    def text(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.proc = None
        return code

    @property
    def view(self) -> StatusView:
        if self._view is None:
            db = Instance(self.state).db_path
            wait_for(db.exists, 20, "the manager's database")
            self._view = StatusView(f"sqlite:///{db}")
        return self._view

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mirrorbus", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def children(self) -> dict[str, int]:
        """pid of each supervised child: manager, worker, node-1 .. node-3 (from /proc)."""
        return up_children(self.state, nodes=True)

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.children().values():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[ClusterUp]:
    u = ClusterUp(tmp_path)
    try:
        yield u
    finally:
        u.close()


def _runs_in_view(up: ClusterUp) -> int:
    return len(up.view.history(WORKER, "tick", limit=10_000))


def test_a_killed_stream_leader_loses_and_doubles_nothing(up: ClusterUp) -> None:
    up.start()
    ports = [up.port, up.port + 1, up.port + 2]
    assert json.loads((up.state / "instance.json").read_text())["ports"] == ports
    assert all(f"tls://127.0.0.1:{p}" in up.text() for p in ports)
    before = up.children()
    assert set(before) == {"manager", "worker", "node-1", "node-2", "node-3"}

    # Three replicas, a leader, the two followers current.
    def healthy() -> StreamCluster | None:
        c = stream_cluster(up.state)
        return c if c and len(c.peers) == NODES - 1 and all(c.peers.values()) else None

    first = wait_for(healthy, 20, "the event stream's three replicas")
    assert first.replicas == 3
    assert first.leader in {f"mirrorbus-{i}" for i in range(1, NODES + 1)}
    wait_for(lambda: _runs_in_view(up) >= 3, 30, "the job's first runs in the view")

    # SIGKILL the stream leader while the job keeps appending.
    leader = "node-" + first.leader.rsplit("-", 1)[1]
    at_kill = count_lines(up.runs_file)
    os.kill(before[leader], signal.SIGKILL)
    restarted = wait_for(
        lambda: (c := up.children()).get(leader) not in (None, before[leader]) and c,
        20,
        f"{leader} to be restarted",
    )
    assert "exited; restarting it" in up.text()
    # The worker and the manager moved to another node; neither was restarted.
    assert restarted["worker"] == before["worker"]
    assert restarted["manager"] == before["manager"]
    after = wait_for(healthy, 30, "the stream's three replicas again")
    assert after.replicas == 3
    print(f"stream leader {first.leader} killed; leader now {after.leader}")
    wait_for(lambda: count_lines(up.runs_file) >= at_kill + 5, 30, "runs after the failover")
    wait_for(lambda: _runs_in_view(up) >= at_kill + 5, 30, "those runs in the view")

    # Stop the job, then count: every run the script made is in the view, once.
    stopped = up.cli("ctl", "--state-dir", str(up.state), "stop", "-w", WORKER, "tick")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(
        lambda: (j := next(iter(up.view.jobs(WORKER)), None)) and j.status == "paused",
        30,
        "the job to be stopped",
    )
    total = count_lines(up.runs_file)
    wait_for(lambda: _runs_in_view(up) == total, 30, f"all {total} runs in the view")
    history = up.view.history(WORKER, "tick", limit=10_000)
    assert len({r.run_id for r in history}) == total
    assert total >= at_kill + 5

    rebuilt = up.tmp / "rebuilt.db"
    out = up.cli(
        "manager", "rebuild", "--state-dir", str(up.state), "--into", f"sqlite:///{rebuilt}"
    )
    assert out.returncode == 0, out.stderr
    other = StatusView(f"sqlite:///{rebuilt}")
    try:
        assert other.dump() == up.view.dump()
    finally:
        other.close()

    # SIGTERM stops all three nodes and every child.
    assert up.stop() == 0
    assert "stopped; state kept in" in up.text()
    assert up.children() == {}


def test_a_client_certificate_cannot_join_the_cluster(up: ClusterUp) -> None:
    """Routes are not subject to the users' permissions, so only route.crt may be a route:
    a node presenting a worker's certificate (same CA) is refused."""
    up.start()
    node = up.state / "nats" / "node-1" / "nats.conf"
    pki = up.state / "pki"
    rogue_port, rogue_route = free_port(), free_port()
    text = (
        node.read_text()
        .replace(str(pki / "route."), str(pki / f"worker-{WORKER}."))
        .replace(f'127.0.0.1:{up.port}"', f'127.0.0.1:{rogue_port}"')
        .replace(f'127.0.0.1:{up.port + NODES}"', f'127.0.0.1:{rogue_route}"')
        .replace('"mirrorbus-1"', '"rogue"')
        .replace(str(up.state / "nats" / "node-1" / "jetstream"), str(up.tmp / "rogue"))
    )
    assert f"worker-{WORKER}.crt" in text and "rogue" in text
    conf = up.tmp / "rogue.conf"
    conf.write_text(text)
    log = up.tmp / "rogue.log"
    with open(log, "wb") as out:
        rogue = subprocess.Popen(
            [str(find_nats_server()), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: "Authorization Violation" in log.read_text(errors="replace"),
            20,
            "the cluster to refuse the rogue node",
        )
    finally:
        rogue.kill()
        rogue.wait(10)
    node_logs = "".join(
        (up.state / "logs" / f"nats-server-{i}.log").read_text() for i in range(1, NODES + 1)
    )
    assert "authentication error" in node_logs
    assert "rogue" not in stream_cluster_names(up.state)
    assert up.stop() == 0


def stream_cluster_names(state: Path) -> set[str]:
    c = wait_for(lambda: stream_cluster(state), 20, "the stream's cluster info")
    return {c.leader, *c.peers}


def test_instance_json_records_every_node_and_old_files_still_read(tmp_path: Path) -> None:
    old = Instance(tmp_path / "old")
    old.root.mkdir()
    old.info_file.write_text('{"host": "127.0.0.1", "port": 14222, "prefix": "mirrorbus"}\n')
    single = old.read()
    assert single == InstanceInfo(host="127.0.0.1", port=14222)
    assert (single.urls, single.replicas, single.clustered) == (
        ("tls://127.0.0.1:14222",),
        1,
        False,
    )
    old.write(single)
    assert "ports" not in json.loads(old.info_file.read_text())  # unchanged for one server

    many = Instance(tmp_path / "many")
    many.write(InstanceInfo(host="127.0.0.1", port=14222, ports=cluster_ports(14222)))
    info = many.read()
    assert info.ports == (14222, 14223, 14224) and info.replicas == 3
    (many.root / "pki").mkdir()
    assert many.bus_settings("worker", "w1").servers == (
        "tls://127.0.0.1:14222",
        "tls://127.0.0.1:14223",
        "tls://127.0.0.1:14224",
    )
    # The manager of an `up --cluster` instance keeps the streams at three replicas.
    assert manager_config(None, many.root, None).streams.replicas == 3
    assert [(n.name, n.port, n.route_port) for n in nodes(info)] == [
        ("mirrorbus-1", 14222, 14225),
        ("mirrorbus-2", 14223, 14226),
        ("mirrorbus-3", 14224, 14227),
    ]


def test_a_single_servers_log_is_not_taken_over_by_a_cluster(tmp_path: Path) -> None:
    config = ClusterUp(tmp_path).config
    instance = Instance(tmp_path / "state")
    instance.write(InstanceInfo(host="127.0.0.1", port=14222))
    instance.store_dir.mkdir(parents=True)
    with pytest.raises(ConfigError, match="use another --state-dir"):
        prepare(instance, load_worker_config(config), None, clustered=True)
