"""``mirrorbus up``, the embedded default, as a newcomer runs it: real processes all the way.

It creates the state directory and certificates on first use and reuses them later, runs
nats-server (TLS), the manager and the worker as supervised processes (a dead one is
restarted, the others carry on), and SIGTERM stops everything, job processes included.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import alive, read_pid, up_children, wait_for

from mirrorbus.host.server import free_port
from mirrorbus.host.supervisor import replica_names
from projections.tunasync import WEB_FIELDS

pytestmark = pytest.mark.e2e  # every test here starts processes

CONFIG = """
[global]
name = "solo"
mirror_dir = "mirrors"
log_dir = "logs/{{.Name}}"
concurrent = 2
interval = 60

[[mirrors]]
name = "quick"
provider = "command"
upstream = "https://example.org/quick/"
command = '''/bin/sh -c 'echo "Total size is 2.0K"' '''
size_pattern = "Total size is ([0-9\\\\.]+[KMGTP]?)"

[[mirrors]]
name = "slow"
provider = "command"
command = '''/bin/sh -c 'echo $$ > "$TUNASYNC_WORKING_DIR/pid"; sleep 300 & wait' '''
"""


class Up:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "worker.toml"
        self.config.write_text(CONFIG)
        self.state = tmp / "state"
        self.port = free_port()
        self.http_port = free_port()
        self.out = tmp / "up.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ)

    def start(self, *extra: str) -> None:
        banners = self.text().count("Ctrl-C stops everything")
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mirrorbus",
                    "up",
                    "-c",
                    str(self.config),
                    "--state-dir",
                    str(self.state),
                    "--port",
                    str(self.port),
                    "--http",
                    f"127.0.0.1:{self.http_port}",
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        wait_for(lambda: self.text().count("Ctrl-C stops everything") > banners, 30, "the banner")

    def text(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.proc = None
        return code

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mirrorbus", "ctl", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, "MIRRORBUS_STATE_DIR": str(self.state)},
            stdin=subprocess.DEVNULL,
        )

    def children(self) -> dict[str, int]:
        """pid of each supervised child, read from /proc."""
        return up_children(self.state)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    u = Up(tmp_path)
    try:
        yield u
    finally:
        if u.proc is not None and u.proc.poll() is None:
            u.proc.kill()
            u.proc.wait(10)
        for pid in u.children().values():
            os.kill(pid, signal.SIGKILL)


def test_up_runs_everything_and_stops_cleanly(up: Up) -> None:
    up.start()
    banner = up.text()
    assert str(up.state) in banner and f"tls://127.0.0.1:{up.port}" in banner
    assert f"export MIRRORBUS_STATE_DIR={up.state}" in banner
    ca = (up.state / "pki" / "ca.crt").read_bytes()
    assert oct((up.state / "pki" / "ca.key").stat().st_mode & 0o777) == "0o600"

    def quick_done() -> list[dict[str, object]] | None:
        result = up.ctl("list", "--all", "--json")
        if result.returncode != 0:
            return None
        items = json.loads(result.stdout)
        return (
            items if any(i["name"] == "quick" and i["status"] == "success" for i in items) else None
        )

    items = wait_for(quick_done, 30, "quick to succeed, seen through ctl")
    assert all(list(i) == list(WEB_FIELDS) for i in items)
    # --http: the same items from tunasync's GET /jobs, and the status page.
    assert f"http://127.0.0.1:{up.http_port}/" in banner
    with urllib.request.urlopen(f"http://127.0.0.1:{up.http_port}/jobs", timeout=10) as r:
        assert json.loads(r.read()) == items
    with urllib.request.urlopen(f"http://127.0.0.1:{up.http_port}/", timeout=10) as r:
        assert r.headers.get_content_type() == "text/html"
    assert next(i for i in items if i["name"] == "quick")["size"] == "2.0K"
    slow_pid = wait_for(lambda: read_pid(up.tmp / "mirrors" / "slow" / "pid"), 30, "slow's pid")

    # A supervised process that dies is restarted; the others carry on.
    before = up.children()
    assert set(before) == {"manager", "worker", "nats-server"}
    os.kill(before["manager"], signal.SIGKILL)
    restarted = wait_for(
        lambda: (c := up.children()).get("manager") not in (None, before["manager"]) and c,
        30,
        "the manager to be restarted",
    )
    assert restarted["worker"] == before["worker"]
    assert restarted["nats-server"] == before["nats-server"]
    assert "manager exited with status -9; restarting" in up.text()
    assert up.ctl("ping", "-w", "solo", "quick").returncode == 0

    # SIGTERM stops everything, the job's processes included.
    assert up.stop() == 0
    assert "stopped; state kept in" in up.text()
    assert not alive(slow_pid)
    assert up.children() == {}

    # Second start: the same CA and the same view, nothing re-created.
    up.start()
    assert (up.state / "pki" / "ca.crt").read_bytes() == ca
    listed = up.ctl("list", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    quick = next(i for i in json.loads(listed.stdout) if i["name"] == "quick")
    assert quick["status"] == "success"
    assert up.stop() == 0


def test_up_on_a_taken_port_is_a_clear_error(up: Up) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", up.port))
        taken.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mirrorbus",
                "up",
                "-c",
                str(up.config),
                "--state-dir",
                str(up.state),
                "--port",
                str(up.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=up.env,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode != 0
    assert f"127.0.0.1:{up.port} is already in use" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def free_ports(n: int) -> int:
    """A port ``p`` with ``p`` .. ``p + n - 1`` all free (now) on loopback."""
    for _ in range(50):
        base = free_port()
        try:
            for port in range(base, base + n):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError(f"no {n} consecutive free ports")


def test_up_with_three_manager_replicas(up: Up) -> None:
    """``up --managers 3``: three named replicas, each with its own view and HTTP port; one
    SIGKILLed leaves ``ctl`` and the others' /jobs answering while it is restarted."""
    up.http_port = free_ports(3)
    up.start("--managers", "3")
    banner = up.text()
    names = replica_names(3)  # HOST, HOST-2, HOST-3
    for i, name in enumerate(names):
        assert f"{up.state / f'manager-{name}.db'} (SQLite, manager replica {name})" in banner
        assert f"http://127.0.0.1:{up.http_port + i}/" in banner
    wait_for(
        lambda: set(up.children()) == {*(f"manager-{n}" for n in names), "worker", "nats-server"},
        30,
        "three replicas",
    )

    def quick_done() -> bool:
        result = up.ctl("list", "--all", "--json")
        items = json.loads(result.stdout) if result.returncode == 0 else []
        return any(i["name"] == "quick" and i["status"] == "success" for i in items)

    wait_for(quick_done, 30, "quick to succeed, seen through ctl")
    before = up.children()
    os.kill(before[f"manager-{names[0]}"], signal.SIGKILL)
    listed = up.ctl("list", "--all", "--json")  # at once: the others answer
    assert listed.returncode == 0, listed.stderr
    assert any(i["name"] == "quick" and i["status"] == "success" for i in json.loads(listed.stdout))
    for port in (up.http_port + 1, up.http_port + 2):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs", timeout=10) as r:
            assert {i["name"] for i in json.loads(r.read())} == {"quick", "slow"}
    wait_for(
        lambda: (
            up.children().get(f"manager-{names[0]}") not in (None, before[f"manager-{names[0]}"])
        ),
        30,
        "the killed replica to be restarted",
    )
    assert f"manager {names[0]} exited with status -9; restarting" in up.text()
    assert up.stop() == 0
    assert up.children() == {}
    for name in names:
        assert (up.state / f"manager-{name}.db").exists()
