"""A multi-host cluster's certificates and configs from the CLI: ``mirrorbus certs issue route
NODE`` and ``mirrorbus certs server-config --cluster``, as the README's cluster section says.

Three real nats-server nodes on loopback, each with its own route certificate and the config
the CLI printed for it, form a JetStream cluster: a stream of three replicas gets a leader
and two current peers.  A route certificate from another CA, or a node with a worker's
certificate as its route certificate, is refused by the others.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from e2e import wait_for

from mirrorbus.bus import StreamSettings, connect, settings_from_paths
from mirrorbus.host.server import NatsServer, find_nats_server, free_port

pytestmark = pytest.mark.e2e  # every test here starts processes

NODES = ("nats1.example.org", "nats2.example.org", "nats3.example.org")


def mirrorbus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mirrorbus", *args], capture_output=True, text=True, timeout=60
    )


def ok(*args: str) -> str:
    result = mirrorbus(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, list[NatsServer], list[int]]]:
    pki = tmp_path / "pki"
    ok("certs", "init", "--dir", str(pki), "--host", "127.0.0.1")
    ok("certs", "issue", "manager", "--dir", str(pki))
    ports = [free_port() for _ in NODES]
    route_ports = [free_port() for _ in NODES]
    servers: list[NatsServer] = []
    for i, node in enumerate(NODES):
        ok("certs", "issue", "route", node, "--dir", str(pki), "--host", "127.0.0.1")
        peers = [f"127.0.0.1:{p}" for j, p in enumerate(route_ports) if j != i]
        conf = ok(
            *("certs", "server-config", "--dir", str(pki), "--name", node),
            *("--store-dir", str(tmp_path / node / "jetstream")),
            *("--listen", f"127.0.0.1:{ports[i]}", "--cluster", "mirrorbus"),
            *("--cluster-listen", f"127.0.0.1:{route_ports[i]}"),
            *(arg for peer in peers for arg in ("--route", peer)),
        )
        path = tmp_path / node / "nats.conf"
        path.parent.mkdir()
        path.write_text(conf)
        servers.append(
            NatsServer(
                find_nats_server(),
                path,
                port=ports[i],
                log_file=tmp_path / node / "nats-server.log",
            )
        )
    try:
        for server in servers:
            server.start()
        yield pki, servers, ports
    finally:
        for server in servers:
            server.stop()


async def _three_replicas(pki: Path, port: int) -> tuple[str, list[bool]] | None:
    settings = settings_from_paths([f"tls://127.0.0.1:{port}"], pki, "manager")
    bus = await connect(settings, reconnect=False)
    try:
        try:
            await bus.ensure_streams(StreamSettings(replicas=3))
            info = await bus.js.stream_info(bus.subjects.evt_stream)
        except Exception:  # no JetStream meta leader yet: the cluster is still forming
            return None
    finally:
        await bus.close()
    if info.cluster is None or not info.cluster.leader:
        return None
    return info.cluster.leader, [bool(p.current) for p in info.cluster.replicas or []]


def test_nodes_with_their_own_route_certificates_form_a_cluster(
    cluster: tuple[Path, list[NatsServer], list[int]],
) -> None:
    pki, servers, ports = cluster
    for node in NODES:
        cert = x509.load_pem_x509_certificate((pki / f"route-{node}.crt").read_bytes())
        assert cert.subject.rfc4514_string() == "CN=mirrorbus-route"
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [node]
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert ((pki / f"route-{node}.key").stat().st_mode & 0o777) == 0o600
    conf = servers[0].config.read_text()
    assert f'cert_file: "{pki.resolve()}/route-{NODES[0]}.crt"' in conf
    assert f'server_name: "{NODES[0]}"' in conf
    elsewhere = ok("certs", "server-config", "--dir", str(pki), "--pki-path", "/etc/mirrorbus/pki")
    assert 'ca_file: "/etc/mirrorbus/pki/ca.crt"' in elsewhere  # made for another host

    def formed() -> tuple[str, list[bool]] | None:
        found = anyio.run(_three_replicas, pki, ports[0], backend="asyncio")
        return found if found and found[1] == [True, True] else None

    leader, _ = wait_for(formed, 60, "a stream of three replicas with two current peers")
    assert leader in NODES


def test_a_worker_certificate_cannot_be_a_route(tmp_path: Path) -> None:
    """A node whose route certificate is a worker's (same CA, client usage only, another
    subject) is refused by a real node: the route user is the route certificate's only."""
    pki = tmp_path / "pki"
    ok("certs", "init", "--dir", str(pki), "--host", "127.0.0.1")
    ok("certs", "issue", "route", "good", "--dir", str(pki), "--host", "127.0.0.1")
    ok("certs", "issue", "worker", "sneaky", "--dir", str(pki))
    for suffix in (".crt", ".key"):  # the rogue node presents the worker's pair as a route
        (pki / f"route-rogue{suffix}").write_bytes((pki / f"worker-sneaky{suffix}").read_bytes())
    good_route, rogue_route = free_port(), free_port()
    servers = []
    for node, route, peer in (
        ("good", good_route, rogue_route),
        ("rogue", rogue_route, good_route),
    ):
        path = tmp_path / node / "nats.conf"
        path.parent.mkdir()
        port = free_port()
        path.write_text(
            ok(
                *("certs", "server-config", "--dir", str(pki), "--name", node),
                *("--store-dir", str(tmp_path / node / "js")),
                *("--listen", f"127.0.0.1:{port}", "--cluster", "mirrorbus"),
                *("--cluster-listen", f"127.0.0.1:{route}", "--route", f"127.0.0.1:{peer}"),
            )
        )
        log = tmp_path / node / "nats-server.log"
        servers.append(NatsServer(find_nats_server(), path, port=port, log_file=log))
    try:
        for server in servers:
            server.start()
        good_log = tmp_path / "good" / "nats-server.log"
        wait_for(
            lambda: "authentication error" in good_log.read_text(),
            60,
            "the good node to refuse the rogue route",
        )
    finally:
        for server in servers:
            server.stop()


def test_route_certificate_errors_are_one_line(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ok("certs", "init", "--dir", str(pki))
    for args, text in (
        (("certs", "issue", "route", "--dir", str(pki)), "needs the node's name"),
        (("certs", "issue", "route", "a/b", "--dir", str(pki)), "node name 'a/b' is not allowed"),
        (("certs", "issue", "admin", "--dir", str(pki), "--host", "x"), "--host is for role"),
        (
            ("certs", "server-config", "--dir", str(pki), "--name", "n9", "--cluster", "c"),
            "run `mirrorbus certs issue route n9",
        ),
        (("certs", "server-config", "--dir", str(pki), "--route", "h:1"), "--route needs"),
    ):
        result = mirrorbus(*args)
        assert result.returncode != 0
        assert len(result.stderr.splitlines()) == 1 and text in result.stderr, result.stderr
