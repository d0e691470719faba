"""Identities the server vouches for: one certificate per operator, and revocation.

Against a real nats-server: an operator's own certificate maps to a user of its own (its own
inbox, its role's rights), the ctl records that user as the issuer, and a revoked certificate
is refused as soon as the server reloads its config, a connection it had included.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import nats.errors
import pytest
from conftest import RunningServer, connect, tls_context
from e2e import Site, wait_for
from nats.aio.client import Client
from sqlalchemy import text
from test_e2e_worker import COUNTING_JOB
from test_permissions import _assert_denied, _streams
from test_up import Up, up  # noqa: F401 - the fixture
from typer.testing import CliRunner

from mirrorbus.bus import Bus, settings_from_paths
from mirrorbus.bus import connect as bus_connect
from mirrorbus.cli.certs import app as certs_app
from mirrorbus.clock import new_id
from mirrorbus.control import Control
from mirrorbus.errors import PermissionDenied
from mirrorbus.events import Command, CommandAnswered, CommandSent, DisabledFlushed, encode
from mirrorbus.events.subjects import Subjects
from mirrorbus.host import pki
from mirrorbus.host.instance import Instance
from mirrorbus.host.server import reload_running
from mirrorbus.host.supervisor import write_server_config

pytestmark = pytest.mark.anyio
S = Subjects()


async def _operator_bus(server: RunningServer, role: str, name: str) -> Bus:
    settings = settings_from_paths([server.url], server.pki_dir, f"{role}-{name}")
    return await bus_connect(settings, reconnect=False)


async def _raw(server: RunningServer, stem: str, errors: list[Exception]) -> Client:
    async def error_cb(e: Exception) -> None:
        errors.append(e)

    nc = Client()
    await nc.connect(
        server.url,
        tls=tls_context(server.pki_dir, stem),
        error_cb=error_cb,
        allow_reconnect=False,
        connect_timeout=2,
        inbox_prefix=S.role_inbox(stem),
    )
    return nc


async def test_each_operator_has_a_user_and_an_inbox_of_their_own(
    nats_server: RunningServer,
) -> None:
    alice, bob = f"alice{secrets.token_hex(3)}", f"bob{secrets.token_hex(3)}"
    issued = pki.issue(nats_server.pki_dir, "admin", alice)
    pki.issue(nats_server.pki_dir, "reader", bob)
    assert issued.identity == f"CN=mirrorbus-admin-{alice}"
    nats_server.write_config()
    nats_server.server.reload()
    admin = await _streams(nats_server)
    mine = await _operator_bus(nats_server, "admin", alice)
    errors: list[Exception] = []
    reader = await _raw(nats_server, f"reader-{bob}", errors)
    try:
        # Alice works as an admin, on an inbox of her own, recorded as herself.
        assert mine.settings.inbox_prefix == f"_INBOX_-admin-{alice}"
        assert await mine.last_sequence() == 0
        assert Control(mine).issuer == f"CN=mirrorbus-admin-{alice}"
        # Bob reads with his own certificate and cannot read the admins' replies.
        for inbox in ("_INBOX_-admin.>", f"_INBOX_-admin-{alice}.>", "_INBOX_-reader.>"):
            await reader.subscribe(inbox)
            await reader.flush()
            with pytest.raises(nats.errors.TimeoutError):
                await reader.request("nowhere", b"", timeout=0.2)  # lets the -ERR arrive
            _assert_denied(errors, f'subscription to "{inbox}"')
        # ... nor command (a reader's rights, not an admin's).
        await reader.publish(S.job_command("w1", "job"), b"{}")
        with pytest.raises(nats.errors.TimeoutError):
            await reader.request("nowhere", b"", timeout=0.2)
        _assert_denied(errors, S.job_command("w1", "job"))
    finally:
        await reader.close()
        await mine.close()
        await admin.close()


async def test_a_revoked_certificate_is_refused_at_once(nats_server: RunningServer) -> None:
    carol = f"carol{secrets.token_hex(3)}"
    pki.issue(nats_server.pki_dir, "admin", carol)
    nats_server.write_config()
    nats_server.server.reload()
    errors: list[Exception] = []
    connected = await _raw(nats_server, f"admin-{carol}", errors)
    try:
        assert await connected.request("$JS.API.INFO", b"", timeout=2)

        result = CliRunner().invoke(
            certs_app, ["revoke", "admin", carol, "--dir", str(nats_server.pki_dir)]
        )
        assert result.exit_code == 0, result.output
        assert not (nats_server.pki_dir / f"admin-{carol}.crt").exists()
        assert list((nats_server.pki_dir / "revoked").glob(f"admin-{carol}.*.crt"))
        nats_server.write_config()
        assert f"mirrorbus-admin-{carol}" not in nats_server.config_path.read_text()
        assert reload_running(nats_server.config_path)  # the server found by its command line

        # The open connection is dropped by the reload, a new one refused.
        with anyio.fail_after(10):
            while not connected.is_closed:  # noqa: ASYNC110 - nats-py's state, no event
                await anyio.sleep(0.05)
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await connect(
                nats_server,
                "admin",
                tls=_revoked_tls(nats_server, carol),
            )
    finally:
        await connected.close()


def _revoked_tls(server: RunningServer, name: str):  # type: ignore[no-untyped-def]
    import ssl

    revoked = server.pki_dir / "revoked"
    cert = next(revoked.glob(f"admin-{name}.*.crt"))
    key = next(revoked.glob(f"admin-{name}.*.key"))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(server.pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_a_commands_issuer_is_the_user_the_server_let_send_it(
    site: Site, nats_server: RunningServer
) -> None:
    """Alice's command says it comes from mallory: the worker records alice, whose token the
    server let her use; under anybody else's token, or none, the server refuses it."""
    alice = f"alice{secrets.token_hex(3)}"
    pki.issue(nats_server.pki_dir, "admin", alice)
    nats_server.write_config()
    nats_server.server.reload()
    config = site.worker_config("w1", COUNTING_JOB.format(name="kept", interval=60))
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "kept", lambda j: j.status == "success")
    wait_for(
        lambda: site.ctl("ping", "-w", "w1", "kept").returncode == 0, 20, "the command consumer"
    )

    async def send() -> str:
        bus = await _operator_bus(nats_server, "admin", alice)
        try:
            now = datetime.now(UTC)
            cmd = Command(
                id=new_id(),
                at=now,
                verb="ping",
                worker="w1",
                job="kept",
                expires_at=now + timedelta(seconds=60),
                issuer="CN=mirrorbus-admin-mallory",
            )
            base = S.job_command("w1", "kept")
            for forged in (base, S.issued_by(base, "admin"), S.issued_by(base, "admin-mal")):
                with pytest.raises(PermissionDenied):
                    await bus.append(forged, encode(cmd), f"{cmd.id}-{forged}", timeout=1)
            sent = CommandSent(
                id=new_id(),
                at=now,
                by="CN=mirrorbus-admin-mallory",
                cmd_id=cmd.id,
                worker="w1",
                job="kept",
                verb="ping",
            )
            for forged in (S.admin_events + ".admin", S.admin_events + ".admin-mal"):
                with pytest.raises(PermissionDenied):
                    await bus.append(forged, encode(sent), f"{sent.id}-{forged}", timeout=1)
            await bus.append(S.operator_events(f"admin-{alice}"), encode(sent), sent.id)
            await bus.append(S.issued_by(base, f"admin-{alice}"), encode(cmd), cmd.id)
            return cmd.id
        finally:
            await bus.close()

    cmd_id = anyio.run(send)

    def issuer() -> str | None:
        with site.view.engine.connect() as conn:
            row = conn.execute(
                text("SELECT issuer FROM commands WHERE cmd_id = :id"), {"id": cmd_id}
            ).first()
        return None if row is None else str(row[0])

    assert wait_for(issuer, 20, "the answer in the view") == f"CN=mirrorbus-admin-{alice}"


def test_revoke_on_an_up_site_reloads_its_server_and_the_certificate_is_refused(
    up: Up,  # noqa: F811 - the fixture of test_up
    tmp_path: Path,
) -> None:
    up.start()
    pki_dir = up.state / "pki"
    issued = CliRunner().invoke(certs_app, ["issue", "admin", "dave", "--dir", str(pki_dir)])
    assert issued.exit_code == 0, issued.output
    instance = Instance(up.state)
    write_server_config(instance)
    assert reload_running(instance.nats_conf)

    def as_dave(where: Path | None = None) -> subprocess.CompletedProcess[str]:
        d = where or pki_dir
        return up.ctl(
            "--cert", str(d / "admin-dave.crt"), "--key", str(d / "admin-dave.key"),
            "list", "--all",
        )  # fmt: skip

    wait_for(lambda: as_dave().returncode == 0, 20, "dave's certificate accepted")
    kept = tmp_path / "dave"  # a copy: what someone holding it would still have
    kept.mkdir()
    for suffix in (".crt", ".key"):
        shutil.copy2(pki_dir / f"admin-dave{suffix}", kept / f"admin-dave{suffix}")

    revoked = CliRunner().invoke(
        certs_app, ["revoke", "admin", "dave", "--state-dir", str(up.state)]
    )
    assert revoked.exit_code == 0, revoked.output
    assert "nats-server reloaded" in revoked.output
    shut_out = wait_for(
        lambda: (r := as_dave(kept)).returncode != 0 and r, 20, "dave's certificate refused"
    )
    # The server refuses it at connect: "Authorization Violation", or the connection closed
    # before nats-py read that ("Broken pipe").
    assert f"cannot connect to tls://127.0.0.1:{up.port} as admin-dave.crt" in shut_out.stderr
    assert up.ctl("list", "--all").returncode == 0  # the site's own admin goes on
    assert up.stop() == 0


def test_a_worker_cannot_answer_a_command_nobody_sent(
    site: Site, nats_server: RunningServer
) -> None:
    """w1 appends an answer, in alice's name, to a command nobody sent (and cannot append
    the record of one being sent): the view keeps the honest command's answer only."""
    config = site.worker_config("w1", COUNTING_JOB.format(name="kept", interval=60))
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "kept", lambda j: j.status == "success")
    wait_for(lambda: site.ctl("ping", "-w", "w1", "kept").returncode == 0, 20, "an honest command")

    async def forge() -> int:
        bus = await bus_connect(
            settings_from_paths(
                [nats_server.url],
                nats_server.pki_dir,
                "worker-w1",
                inbox_prefix=S.worker_inbox("w1"),
            ),
            reconnect=False,
        )
        try:
            now = datetime.now(UTC)
            sent = CommandSent(id=new_id(), at=now, by="x", cmd_id="forged", worker="w1")
            for subject in (S.admin_events, S.operator_events("admin")):
                with pytest.raises(PermissionDenied):
                    await bus.append(subject, encode(sent), f"{sent.id}{subject}", timeout=1)
            answer = CommandAnswered(
                id=new_id(),
                at=now,
                worker="w1",
                job="kept",
                cmd_id="forged",
                verb="disable",
                accepted=True,
                message="disabled",
                issuer="CN=mirrorbus-admin-alice",
            )
            return await bus.append(S.job_events("w1", "kept"), encode(answer), answer.id)
        finally:
            await bus.close()

    seq = anyio.run(forge)
    wait_for(lambda: site.view.position() >= seq, 20, "the forged answer projected")
    with site.view.engine.connect() as conn:
        rows = conn.execute(text("SELECT cmd_id, verb, issuer FROM commands")).all()
    assert [(verb, issuer) for _, verb, issuer in rows] == [("ping", "CN=mirrorbus-admin")]
    assert "forged" not in {cmd_id for cmd_id, _, _ in rows}


def test_an_operators_view_change_is_on_its_own_subject_not_a_name_it_claims(
    site: Site, nats_server: RunningServer
) -> None:
    """``flush`` by alice is stored on alice's own subject, saying alice, whatever the ctl's
    event claimed; alice may not write the bare operators' subject (the gateway's) nor another
    operator's, so an operator's view change always names who made it."""
    alice = f"alice{secrets.token_hex(3)}"
    pki.issue(nats_server.pki_dir, "admin", alice)
    nats_server.write_config()
    nats_server.server.reload()
    site.start_manager()
    wait_for(lambda: site.ctl("list", "--all").returncode == 0, 30, "the manager's streams")

    async def flush_and_forge() -> int:
        bus = await _operator_bus(nats_server, "admin", alice)
        try:
            control = Control(bus)
            control.__dict__["issuer"] = "CN=mirrorbus-admin-mallory"  # what it claims
            await control.flush_disabled()
            forged = DisabledFlushed(id=new_id(), at=datetime.now(UTC), by="CN=mirrorbus-x")
            for subject in (S.admin_events, S.operator_events("admin")):
                with pytest.raises(PermissionDenied):
                    await bus.append(subject, encode(forged), f"{forged.id}{subject}", timeout=1)
            return control.written
        finally:
            await bus.close()

    seq = anyio.run(flush_and_forge)

    async def stored() -> tuple[str, bytes]:
        bus = await _operator_bus(nats_server, "admin", alice)
        try:
            msg = await bus.js.get_msg(S.evt_stream, seq, direct=True)
            return msg.subject, msg.data or b""
        finally:
            await bus.close()

    subject, data = anyio.run(stored)
    assert subject == S.operator_events(f"admin-{alice}")
    assert f'"by":"CN=mirrorbus-admin-{alice}"' in data.decode()
    wait_for(lambda: site.view.position() >= seq, 20, "the flush projected")
    assert site.view.dead_letters(10) == []
