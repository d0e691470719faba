"""Job and worker names are data: the name rule, and the one mapping from names to tokens.

What a site needs: every name tunasync accepts (dots, spaces, ``+``, ``@``, Unicode, up to
255 bytes) is accepted, becomes a token that NATS reads as one plain token, and comes back
as written; a plain name stays its own token so nothing made before changes.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import anyio
import nats.errors
import pytest
from conftest import RunningServer, connect, permission_violations
from cryptography import x509
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from mirrorbus import bus
from mirrorbus.bus import ensure_command_consumer
from mirrorbus.bus.logread import LogReader
from mirrorbus.cli.ctl.live import LogEntry
from mirrorbus.config.worker import load_worker_config
from mirrorbus.errors import InvalidName
from mirrorbus.events import JobState, WorkerSnapshot, encode_snapshot
from mirrorbus.events.subjects import (
    ADMIN_TOKEN,
    MAX_CONSUMER_NAME,
    WORKER_TOKEN,
    Subjects,
    check_name,
    file_token,
    fit,
    name_token,
    token_name,
)
from mirrorbus.host import natsconf, pki
from mirrorbus.host.server import find_nats_server
from mirrorbus.manager.projector import seed_if_truncated
from mirrorbus.worker.hooks.cgroup import cgroup_name, job_of_cgroup
from mirrorbus.worker.hooks.docker import container_name, job_of_container
from mirrorbus.worker.hooks.zfs import help_text
from mirrorbus.worker.joblog import file_name_of, new_attempt_log
from projections.mirrorz import mirrorz
from projections.status_view import StatusView

S = Subjects()
TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_%-]+")
LONG = "é" * 127 + "x"  # 255 bytes of UTF-8; its token is 765 characters

# Names a site really has, and the ones a mapping gets wrong first.
TRICKY = [
    "crates.io-index.git",
    "u.sb",
    "binutils-gdb.git",
    "linux stable",
    "é",
    "café",
    "日本語",
    "-x",
    "_y",
    "+",
    "@",
    "~",
    "a.b",
    "a%2Eb",  # what a.b's token looks like, as a name of its own
    "a%b",
    "a b",
    "a*",
    "a.*",
    "*",
    ">",
    "-worker",
    "-admin",
    "x" * 255,
    LONG,
]


def valid(name: str) -> bool:
    try:
        check_name(name)
    except InvalidName:
        return False
    return True


any_names = st.text(min_size=1, max_size=80).filter(valid) | st.sampled_from(TRICKY)


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("debian", "debian"),
        ("crates.io-index.git", "crates%2Eio-index%2Egit"),
        ("u.sb", "u%2Esb"),
        ("linux stable", "linux%20stable"),
        ("café", "caf%C3%A9"),
        ("a%2Eb", "a%252Eb"),
        ("-x", "%2Dx"),
        ("_y", "_y"),
        ("+", "%2B"),
        ("a.*", "a%2E%2A"),
        (">", "%3E"),
    ],
)
def test_documented_examples(name: str, token: str) -> None:
    assert name_token(name) == token
    assert token_name(token) == name


@settings(max_examples=400, deadline=None)
@given(any_names, any_names)
@example("a.b", "a%2Eb")
@example("a b", "a%20b")
@example("-x", "%2Dx")
def test_the_mapping_is_injective_and_round_trips(a: str, b: str) -> None:
    ta, tb = name_token(a), name_token(b)
    assert token_name(ta) == a and token_name(tb) == b
    assert (ta == tb) == (a == b)
    for token in (ta, tb):
        assert TOKEN_ALPHABET.fullmatch(token)  # so no '.', '*', '>', white space, '/'
        assert not token.startswith("-")  # the bus's own words start with '-'
        assert not re.search(r"[.*>\s/\\]", token)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,254}", fullmatch=True))
def test_plain_names_map_to_themselves(name: str) -> None:
    assert name_token(name) == name
    assert S.job_events("w1", name) == f"mirrorbus.evt.w1.{name}"
    assert S.worker_consumer(name) == name


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",  # a separator inside
        "%41",  # 'A' needs no escape: not canonical
        "%2e",  # lower-case hex
        "%2",
        "%",
        "-x",  # a leading '-' is always escaped
        WORKER_TOKEN,
        ADMIN_TOKEN,
        "%FF",  # not UTF-8
        "%2F",  # '/' is no name
        "%2E",  # '.' is no name
        "a b",
        "é",
    ],
)
def test_only_canonical_tokens_read_back(token: str) -> None:
    with pytest.raises(InvalidName):
        token_name(token)


@pytest.mark.parametrize("name", TRICKY)
def test_every_subject_reads_back_as_written(name: str) -> None:
    worker = "mirrors.example.org"
    assert S.names_in(S.job_events(worker, name)) == ("evt", worker, name)
    assert S.names_in(S.worker_events(name)) == ("evt", name, None)
    assert S.names_in(S.job_command(worker, name)) == ("cmd", worker, name)
    assert S.names_in(S.worker_command(name)) == ("cmd", name, None)
    for kind, subject in (("snap", S.snapshot(name)), ("hb", S.heartbeat(name))):
        assert S.names_in(subject) == (kind, name, None)
    assert S.names_in(S.logs(name)) == ("logs", name, None)


@pytest.mark.parametrize(
    "subject",
    [
        "mirrorbus.evt.-admin",
        "other.evt.w1",
        "mirrorbus.evt",
        "mirrorbus.evt.w1.j.x",
        "mirrorbus.evt.a%2e",
        "mirrorbus.api.jobs",
        "mirrorbus.hb.w1.x",
    ],
)
def test_foreign_subjects_name_nobody(subject: str) -> None:
    with pytest.raises(InvalidName):
        S.names_in(subject)


def test_a_long_token_is_cut_to_fit_and_stays_distinct() -> None:
    near = [LONG, LONG[:-1] + "y", "x" * 255, "x" * 254 + ".", "x" * 254 + "%"]
    consumers = [S.worker_consumer(n) for n in near]
    assert len(set(consumers)) == len(near)
    assert all(len(c.encode()) <= MAX_CONSUMER_NAME for c in consumers)
    assert consumers[2] == "x" * 255  # a plain name that fits is untouched
    assert "~" in consumers[0] and "~" not in name_token(LONG)  # a cut one never equals a token
    assert S.worker_consumer(LONG) == consumers[0]  # stable
    files = {file_token(n) for n in near}
    assert len(files) == len(near) and all(len(f) <= 200 for f in files)
    with pytest.raises(ValueError, match="no room"):
        fit("x" * 100, 20)


@pytest.mark.parametrize("name", ["mirrors.example.org", "a b", "é", "-x", LONG, "x" * 255])
def test_worker_certificates_hold_any_name(tmp_path: Path, name: str) -> None:
    pki.init_ca(tmp_path)
    cert = pki.issue(tmp_path, "worker", name)
    loaded = x509.load_pem_x509_certificate(cert.cert.read_bytes())
    cn = loaded.subject.rfc4514_string()
    assert cn == cert.identity == pki.identity("worker", name)
    assert len(cn) <= 64 + 3 and len(cert.cert.name.encode()) <= 255
    assert TOKEN_ALPHABET.fullmatch(cn.removeprefix("CN=mirrorbus-worker-").replace("~", "_"))
    assert pki.issued_workers(tmp_path) == [name]


def test_issued_workers_reads_names_from_the_certificates(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    for name in ("w1", "a.b", "a%2Eb", LONG):
        pki.issue(tmp_path, "worker", name)
    (tmp_path / "worker-stray.crt").write_text("not a certificate")
    (tmp_path / "worker-a.b.crt").write_bytes((tmp_path / "worker-a%2Eb.crt").read_bytes())
    assert pki.issued_workers(tmp_path) == sorted(["w1", "a.b", "a%2Eb", LONG])


# -- isolation, enforced by a real nats-server ---------------------------------------------

DENIED = 0.3  # seconds to wait for an answer that a denial never gives


async def _streams(server: RunningServer) -> Client:
    """Create the streams as the manager does at its start; return an admin connection."""
    manager = await bus.connect(
        bus.settings_from_paths([server.url], server.pki_dir, "manager"), reconnect=False
    )
    try:
        await manager.ensure_streams()
    finally:
        await manager.close()
    return await connect(server, "admin")


def _denied(errors: list[Exception], subject: str) -> bool:
    return any(subject.lower() in v.lower() for v in permission_violations(errors))


async def _works_as_itself(
    server: RunningServer, admin: Client, name: str, job: str = "crates.io-index.git"
) -> None:
    """Everything a worker does on the bus, as worker ``name``, with no violation."""
    errors: list[Exception] = []
    nc = await connect(server, "worker", name, errors=errors)
    try:
        js = nc.jetstream()
        await js.publish(S.job_events(name, job), b"e1")
        await js.publish(S.worker_events(name), b"started")
        await js.publish(S.snapshot(name), b"snap")
        await nc.publish(S.heartbeat(name), b"beat")
        consumer = S.worker_consumer(name)
        # Its restore: the log read by sequence, filtered to its own job events.
        worker_bus = await bus.connect(
            bus.settings_from_paths(
                [server.url],
                server.pki_dir,
                pki.issued_cert(server.pki_dir, "worker", name).cert.stem,
                inbox_prefix=S.worker_inbox(name),
            ),
            reconnect=False,
        )
        try:
            async with LogReader(
                worker_bus, S.evt_stream, subject=S.worker_job_events(name)
            ) as log_reader:
                got = await log_reader.read(1)
            assert [S.names_in(m.subject) for m in got.messages] == [("evt", name, job)]
        finally:
            await worker_bus.close()
        # Its command consumer, made by the manager.
        manager = await bus.connect(
            bus.settings_from_paths([server.url], server.pki_dir, "manager"), reconnect=False
        )
        try:
            await ensure_command_consumer(manager, name)
        finally:
            await manager.close()
        await admin.jetstream().publish(S.issued_by(S.job_command(name, job), "admin"), b"start")
        commands = await js.pull_subscribe_bind(consumer, stream=S.cmd_stream)
        msgs = await commands.fetch(1, timeout=2)
        assert [m.data for m in msgs] == [b"start"]
        await msgs[0].ack_sync()

        async def answer(msg: Msg) -> None:
            await msg.respond(b"log of " + msg.data)

        await nc.subscribe(S.logs(name), cb=answer)
        await nc.flush()
        for _ in range(50):  # bounded: the interest may reach the server a moment late
            try:
                reply = await admin.request(S.logs(name), job.encode(), timeout=2)
                break
            except nats.errors.NoRespondersError:
                await anyio.sleep(0.05)
        else:
            pytest.fail(f"nobody answers on {S.logs(name)}")
        assert reply.data == b"log of " + job.encode()
        last = await js.get_last_msg(S.snap_stream, S.snapshot(name), direct=True)
        assert last.data == b"snap"
        await nc.flush()
        assert errors == []
    finally:
        await nc.close()


@pytest.mark.anyio
async def test_a_worker_cannot_act_for_one_whose_token_starts_like_its_own(
    nats_server: RunningServer,
) -> None:
    """Worker ``a`` against ``a.b`` (token ``a%2Eb``), ``a b`` and ``a%2Eb`` (token
    ``a%252Eb``): each works as itself, and ``a`` can neither append, take commands, read
    snapshots nor answer log requests for any of them."""
    others = ["a.b", "a b", "a%2Eb"]
    for name in ["a", *others]:
        nats_server.add_worker(name)
    admin = await _streams(nats_server)
    try:
        for name in ["a", *others]:
            await _works_as_itself(nats_server, admin, name)
        events_before = (await admin.jetstream().stream_info(S.evt_stream)).state.messages

        errors: list[Exception] = []
        a = await connect(nats_server, "worker", "a", errors=errors)
        try:
            js = a.jetstream()
            for other in others:
                for subject in (
                    S.job_events(other, "j"),
                    S.worker_events(other),
                    S.snapshot(other),
                ):
                    with pytest.raises(nats.errors.TimeoutError):
                        await js.publish(subject, b"forged", timeout=DENIED)
                    assert _denied(errors, subject), (subject, errors)
                consumer = S.worker_consumer(other)
                for stream, filter_subject in (
                    (S.cmd_stream, S.worker_commands(other)),
                    (S.evt_stream, S.worker_job_events(other)),
                ):
                    with pytest.raises(nats.errors.TimeoutError):
                        await js.add_consumer(
                            stream,
                            ConsumerConfig(name=consumer, filter_subject=filter_subject),
                            timeout=DENIED,
                        )
                    assert _denied(errors, f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.")
                stolen = await js.pull_subscribe_bind(consumer, stream=S.cmd_stream)
                with pytest.raises(nats.errors.TimeoutError):
                    await stolen.fetch(1, timeout=DENIED)
                assert _denied(errors, f"$JS.API.CONSUMER.MSG.NEXT.{S.cmd_stream}.{consumer}")
                await a.subscribe(S.logs(other))
                await a.subscribe(S.worker_inbox(other) + ".>")
            # Its own wildcard covers its own jobs only: "evt.a.b" is job "b" of worker "a".
            await js.publish("mirrorbus.evt.a.b", b"its own job b")
            assert S.names_in("mirrorbus.evt.a.b") == ("evt", "a", "b")
            with pytest.raises(nats.errors.TimeoutError):
                await a.request("nowhere", b"", timeout=0.2)  # lets the -ERRs arrive
            for other in others:
                assert _denied(errors, f'subscription to "{S.logs(other)}"')
                assert _denied(errors, f'subscription to "{S.worker_inbox(other)}.>"')
        finally:
            await a.close()
        info = await admin.jetstream().stream_info(S.evt_stream, subjects_filter=S.all_events)
        subjects = info.state.subjects or {}
        assert info.state.messages == events_before + 1
        assert subjects.get("mirrorbus.evt.a.b") == 1  # and nothing under the others' tokens
        for other in others:
            assert subjects.get(S.job_events(other, "j")) is None
    finally:
        await admin.close()


@pytest.mark.anyio
async def test_a_255_byte_worker_name_works_end_to_end_on_the_bus(
    nats_server: RunningServer,
) -> None:
    """Its token (765 characters) is cut for the certificate's CN and the consumer names;
    the server takes the users block, and the worker does all its work with no violation,
    for a job of 255 bytes too (the longest subjects: within the protocol's line limit)."""
    nats_server.add_worker(LONG)
    admin = await _streams(nats_server)
    try:
        await _works_as_itself(nats_server, admin, LONG, job=LONG[:-1] + ".")
    finally:
        await admin.close()
    manager = await connect(nats_server, "manager")
    try:
        info = await manager.jetstream().consumer_info(S.cmd_stream, S.worker_consumer(LONG))
        assert info.config.filter_subject == S.worker_commands(LONG)
    finally:
        await manager.close()


# -- entry points: the worker config, log files, cgroups, containers -------------------------

SITE_NAMES = [n for n in TRICKY if n not in ("-worker", "-admin")] + [
    "gcc.git",
    "glibc.git",
    "llvm-project.git",
    "qemu.git",
    "gentoo-portage.git",
    "crates.io-index",
    "AOSP",
    "Ubuntu Releases",
    "ubuntu_ports",
    "x" * 200 + ".git",
]


def _worker_toml(worker: str, jobs: list[str]) -> str:
    def q(text: str) -> str:
        return json.dumps(text)  # a JSON string is a TOML basic string

    text = f'[global]\nname = {q(worker)}\nmirror_dir = "m"\nlog_dir = "l/{{{{.Name}}}}"\n'
    for job in jobs:
        text += f'\n[[mirrors]]\nname = {q(job)}\nprovider = "command"\ncommand = "/bin/true"\n'
    return text


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mirrorbus", "worker", "-c", str(path), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.e2e
def test_check_accepts_and_lists_every_name_a_site_uses(tmp_path: Path) -> None:
    path = tmp_path / "workers.conf"
    path.write_text(_worker_toml("mirrors.example.org", SITE_NAMES))
    result = _check(path)
    assert result.returncode == 0, result.stderr
    assert f"worker 'mirrors.example.org' ({path}): {len(SITE_NAMES)} jobs" in result.stdout
    heads = [line.split("  [")[0] for line in result.stdout.splitlines() if "  [command]" in line]
    assert heads == SITE_NAMES
    cfg = load_worker_config(path)
    assert [m.name for m in cfg.mirrors] == SITE_NAMES
    assert [m.log_dir.name for m in cfg.mirrors] == SITE_NAMES  # {{.Name}} as written


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("worker", "job", "where", "shown"),
    [
        ("w1", "x" * 256, "mirrors[0]", "'" + "x" * 256 + "'"),
        ("w1", "é" * 128, "mirrors[0]", "'" + "é" * 128 + "'"),
        ("w1", "a/b", "mirrors[0] (a/b)", "'a/b'"),
        ("w1", "..", "mirrors[0] (..)", "'..'"),
        ("w1", "tab\there", "mirrors[0]", "'tab\\there'"),
        ("w1", "new\nline", "mirrors[0] ('new\\nline')", "'new\\nline'"),
        ("x" * 256, "j", "[global]", "'" + "x" * 256 + "'"),
        ("w/1", "j", "[global]", "'w/1'"),
    ],
)
def test_a_name_outside_the_rule_is_a_one_line_error(
    tmp_path: Path, worker: str, job: str, where: str, shown: str
) -> None:
    path = tmp_path / "workers.conf"
    path.write_text(_worker_toml(worker, [job]))
    result = _check(path)
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    what = "worker" if where == "[global]" else "job"
    assert lines[0].startswith(f"mirrorbus worker: error: {path}: {where}")
    assert f"key 'name': {what} name {shown} is not allowed" in lines[0]
    assert "1-255 bytes (UTF-8) of printable characters" in lines[0]


@pytest.mark.parametrize("job", [*TRICKY, "memory.max", "cgroup.procs", "__worker", "__test"])
def test_cgroup_directories_are_reversible_and_clear_of_the_kernels_files(job: str) -> None:
    directory = cgroup_name(job)
    assert "." not in directory and "/" not in directory
    assert directory not in ("__worker", "__test")
    assert len(directory.encode()) <= 255
    assert job_of_cgroup(directory) == (job if "~" not in directory else None)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", job):
        assert directory == job  # plain names keep the directory they always had


@settings(max_examples=300, deadline=None)
@given(any_names, any_names)
def test_cgroup_and_container_names_are_injective(a: str, b: str) -> None:
    assert (cgroup_name(a) == cgroup_name(b)) == (a == b)
    ca, cb = _container(a), _container(b)
    assert (ca == cb) == (a == b)
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", ca)  # docker's rule for a name
    assert job_of_container(ca) == a


def _container(job: str) -> str:
    mirror = SimpleNamespace(name=job)
    return container_name(mirror)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("job", "container"),
    [
        ("crates.io-index.git", "tunasync-job-crates.io-index.git"),
        ("debian", "tunasync-job-debian"),
        ("-x", "tunasync-job--x"),
        ("linux stable", "tunasync-job.linux.20stable"),
        ("café", "tunasync-job.caf.C3.A9"),
        ("a+b", "tunasync-job.a.2Bb"),
    ],
)
def test_container_names(job: str, container: str) -> None:
    assert _container(job) == container
    assert job_of_container(container) == job


def test_log_files_carry_the_name_as_written(tmp_path: Path) -> None:
    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    for job in ("crates.io-index.git", "linux stable", "é", LONG, LONG[:-1] + "y"):
        log = new_attempt_log(tmp_path, job, now)
        assert len(log.path.name.encode()) <= 255
        if len(job.encode()) <= 200:
            assert log.path.name == f"{job}_{now.astimezone():%Y-%m-%d_%H_%M}.log"
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != "latest")
    assert len(names) == 5  # the two long names got files of their own
    assert file_name_of(LONG) != file_name_of(LONG[:-1] + "y")
    # Retention counts each job's own files: eleven attempts of one keep ten, others untouched.
    for minute in range(11):
        new_attempt_log(tmp_path, LONG, now + timedelta(minutes=minute + 1), keep=3)
    stem = file_name_of(LONG)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(stem + "_")]) == 3
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("crates.io-index.git_")]) == 1


def test_event_log_lines_show_names_from_the_subject() -> None:
    """``ctl events`` of an event it cannot decode still names its worker and job."""
    entry = LogEntry(
        seq=1,
        subject=S.job_events("mirrors.example.org", "linux stable"),
        time=datetime(2026, 12, 6, tzinfo=UTC),
        event=None,
    )
    assert (entry.worker, entry.job) == ("mirrors.example.org", "linux stable")
    admin = LogEntry(seq=2, subject=S.admin_events, time=entry.time, event=None)
    assert (admin.worker, admin.job) == (ADMIN_TOKEN, "-")


@pytest.mark.anyio
async def test_a_snapshot_speaking_for_another_worker_seeds_nothing(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A view seeded from snapshots (the log's oldest events gone) reads each snapshot's worker
    back from its subject: worker ``a`` may write only its own snapshot subject, and one there
    that claims the jobs of ``a.b`` is ignored, while ``a.b``'s own is taken."""
    for name in ("a", "a.b"):
        nats_server.add_worker(name)
    manager = await bus.connect(
        bus.settings_from_paths([nats_server.url], nats_server.pki_dir, "manager"),
        reconnect=False,
    )
    workers = {
        name: await bus.connect(
            bus.settings_from_paths(
                [nats_server.url],
                nats_server.pki_dir,
                pki.cert_stem("worker", name),
                inbox_prefix=S.worker_inbox(name),
            ),
            reconnect=False,
        )
        for name in ("a", "a.b")
    }
    view = StatusView(f"sqlite:///{tmp_path / 'view.db'}")
    try:
        await manager.ensure_streams()
        for n in range(3):  # events, of which the first two are then dropped
            await workers["a.b"].append(S.worker_events("a.b"), b"{}", msg_id=f"e{n}")
        config = (await manager.js.stream_info(S.evt_stream)).config
        config.max_msgs = 1
        await manager.js.update_stream(config)

        def snapshot(worker: str, job: str, size: str) -> bytes:
            state = JobState(worker=worker, name=job, status="success", size=size)
            at = datetime(2026, 12, 6, tzinfo=UTC)
            snap = WorkerSnapshot(id=f"s-{size}", at=at, worker=worker, seq=3, jobs=(state,))
            return encode_snapshot(snap)

        await workers["a.b"].js.publish(S.snapshot("a.b"), snapshot("a.b", "u.sb", "1G"))
        await workers["a"].js.publish(S.snapshot("a"), snapshot("a.b", "u.sb", "666G"))
        assert await seed_if_truncated(manager, view)
        assert [(j.worker, j.name, j.size) for j in view.jobs()] == [("a.b", "u.sb", "1G")]
    finally:
        view.close()
        for w in workers.values():
            await w.close()
        await manager.close()


def test_zfs_advice_can_be_pasted_whatever_the_name(tmp_path: Path) -> None:
    workdir = tmp_path / "o'reilly books"
    mirror = SimpleNamespace(name="O'Reilly Books", working_dir=workdir)
    text = help_text(mirror, "tank")  # type: ignore[arg-type]
    commands = [shlex.split(line) for line in text.splitlines()[1:]]
    assert commands[0] == ["zfs", "create", "tank/o'reilly books"]
    assert commands[1] == ["zfs", "set", f"mountpoint={workdir}", "tank/o'reilly books"]


@pytest.mark.e2e
@settings(max_examples=15, deadline=None)
@given(st.lists(any_names, min_size=1, max_size=6, unique=True))
def test_the_server_reads_the_users_of_any_workers(pki_dir: Path, names: list[str]) -> None:
    """``nats-server -t`` (the real server's config check) takes the users block rendered for
    any worker names: every name meets nats.conf only as a token, in quoted strings."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "nats.conf"
        conf.write_text(
            natsconf.render_server_config(
                pki_dir=pki_dir,
                store_dir=Path(tmp) / "js",
                host="127.0.0.1",
                port=4222,
                subjects=S,
                workers=names,
            )
        )
        checked = subprocess.run(
            [find_nats_server(), "-t", "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert "is valid" in checked.stdout + checked.stderr


def test_mirrorz_names_the_mirror_as_written_and_links_it_escaped() -> None:
    states = [
        JobState(worker="mirrors.example.org", name=name, status="success")
        for name in ("crates.io-index.git", "linux stable", "café")
    ]
    entries = mirrorz(states, {"url": "https://m.example.org", "abbr": "M"})["mirrors"]
    assert [(e["cname"], e["url"]) for e in entries] == [
        ("café", "/caf%C3%A9"),
        ("crates.io-index.git", "/crates.io-index.git"),
        ("linux stable", "/linux%20stable"),
    ]
