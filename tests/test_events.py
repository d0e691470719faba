"""The domain of mirrorbus: ``evolve``/``fold`` (docs/tunasync.md §2.8), codec, subjects."""

from __future__ import annotations

import json
import os
import uuid
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from mirrorbus.clock import new_id
from mirrorbus.errors import CodecError, InvalidName
from mirrorbus.events import (
    CURRENT_VERSIONS,
    MAX_EVENT_BYTES,
    AttemptFailed,
    AttemptStarted,
    Command,
    CommandAnswered,
    CommandSent,
    DisabledFlushed,
    Event,
    JobConfigured,
    JobDisabled,
    JobEvent,
    JobPaused,
    JobRemoved,
    JobScheduled,
    JobState,
    RunStarted,
    RunSucceeded,
    SizeSet,
    Subjects,
    WorkerAnswered,
    WorkerForgotten,
    WorkerSnapshot,
    WorkerStarted,
    WorkerStopped,
    check_name,
    decode_command,
    decode_event,
    decode_snapshot,
    encode,
    encode_snapshot,
    evolve,
    fold,
    upcaster,
)

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
W = "w1"
J = "debian"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ids(n: float, job: str = J) -> dict[str, Any]:
    return {"id": f"e{n}", "at": at(n), "worker": W, "job": job}


def every_event() -> list[Event]:
    """One instance of every event type, with non-default values where there are any."""
    return [
        JobConfigured(
            **ids(1), upstream="rsync://u/debian/", interval=3600, is_master=False, provider="rsync"
        ),
        JobScheduled(**ids(2), next_at=at(3600)),
        RunStarted(**ids(3), run_id="r1", force=True, reason="start"),
        AttemptStarted(**ids(4), run_id="r1", attempt=1, log_file="/var/log/debian/x.log"),
        RunSucceeded(**ids(5), run_id="r1", attempt=2, size="1.33T", exit_code=0),
        AttemptFailed(**ids(6), run_id="r1", attempt=1, error="exit status 3", exit_code=3),
        JobPaused(**ids(7), cmd_id="c1"),
        JobDisabled(**ids(8), cmd_id="c2"),
        JobRemoved(**ids(9)),
        CommandAnswered(
            **ids(10), cmd_id="c3", verb="start", accepted=False, message="no", issuer="admin"
        ),
        WorkerStarted(
            id="e11",
            at=at(11),
            worker=W,
            version="0.1.0",
            hostname="mirror1",
            pid=4242,
            jobs=("debian", "ubuntu"),
            concurrent=3,
        ),
        WorkerStopped(id="e12", at=at(12), worker=W, reason="SIGTERM"),
        WorkerAnswered(
            id="e13", at=at(13), worker=W, cmd_id="c4", verb="ping", accepted=False, job="nope"
        ),
        SizeSet(**ids(14), size="1.2T", cmd_id="c5"),
        WorkerForgotten(id="e15", at=at(15), worker=W, by="CN=mirrorbus-admin"),
        DisabledFlushed(id="e16", at=at(16), by="CN=mirrorbus-admin"),
        CommandSent(id="e17", at=at(17), by="admin", cmd_id="c6", worker=W, job=J, verb="start"),
    ]


# -- evolve ------------------------------------------------------------------------------------


def test_run_started_enters_pre_syncing_and_clears_schedule_and_error() -> None:
    before = JobState(
        worker=W,
        name=J,
        status="failed",
        next_schedule=at(100),
        error_msg="exit status 1",
        exit_code=1,
        last_started=at(-50),
    )
    after = evolve(before, RunStarted(**ids(10), run_id="r2"))
    assert after.status == "pre-syncing"
    assert after.running
    assert after.last_started == at(10)
    assert after.next_schedule is None
    assert after.error_msg == ""
    assert after.exit_code is None
    assert after.run_id == "r2"


def test_first_event_of_an_unknown_job_creates_its_state() -> None:
    state = evolve(None, RunStarted(**ids(1), run_id="r1"))
    assert (state.worker, state.name, state.status) == (W, J, "pre-syncing")


def test_attempt_started_is_syncing() -> None:
    state = evolve(
        evolve(None, RunStarted(**ids(1), run_id="r1")),
        AttemptStarted(**ids(2), run_id="r1", attempt=1),
    )
    assert state.status == "syncing"
    assert state.attempt == 1
    assert state.last_started == at(1)


def test_run_succeeded_sets_update_and_end_to_the_event_time() -> None:
    start = JobState(worker=W, name=J, status="syncing", last_update=at(-999), last_ended=at(-999))
    state = evolve(start, RunSucceeded(**ids(5), run_id="r1", attempt=1, size="5GB"))
    assert state.status == "success"
    assert state.last_update == at(5)
    assert state.last_ended == at(5)
    assert state.size == "5GB"
    assert state.error_msg == ""
    assert not state.running


def test_run_succeeded_without_size_keeps_the_known_size() -> None:
    known = JobState(worker=W, name=J, status="syncing", size="1.33T")
    state = evolve(known, RunSucceeded(**ids(5), run_id="r1", attempt=1, size=""))
    assert state.size == "1.33T"
    state = evolve(state, RunSucceeded(**ids(6), run_id="r2", attempt=1, size="1.40T"))
    assert state.size == "1.40T"


def test_run_succeeded_with_size_unknown_keeps_the_known_size() -> None:
    known = JobState(worker=W, name=J, status="syncing", size="1.33T")
    state = evolve(known, RunSucceeded(**ids(5), run_id="r1", attempt=1, size="unknown"))
    assert state.size == "1.33T"


def test_attempt_failed_records_the_error_and_keeps_last_update() -> None:
    start = JobState(worker=W, name=J, status="syncing", last_update=at(-999), size="5GB")
    state = evolve(
        start, AttemptFailed(**ids(7), run_id="r1", attempt=2, error="exit status 3", exit_code=3)
    )
    assert state.status == "failed"
    assert state.last_ended == at(7)
    assert state.last_update == at(-999)
    assert state.error_msg == "exit status 3"
    assert state.exit_code == 3
    assert state.attempt == 2
    assert state.size == "5GB"


def test_paused_disabled_removed() -> None:
    scheduled = JobState(worker=W, name=J, status="success", next_schedule=at(100))
    paused = evolve(scheduled, JobPaused(**ids(1)))
    assert (paused.status, paused.next_schedule) == ("paused", None)
    disabled = evolve(scheduled, JobDisabled(**ids(1)))
    assert (disabled.status, disabled.next_schedule) == ("disabled", None)
    removed = evolve(scheduled, JobRemoved(**ids(1)))
    assert removed.removed
    assert removed.next_schedule is None
    # configured again: back in the view
    back = evolve(removed, JobConfigured(**ids(2), upstream="u"))
    assert not back.removed


def test_job_scheduled_sets_and_clears_next_schedule() -> None:
    state = evolve(None, JobScheduled(**ids(1), next_at=at(3600)))
    assert state.next_schedule == at(3600)
    assert state.status == "none"
    assert evolve(state, JobScheduled(**ids(2), next_at=None)).next_schedule is None


def test_success_does_not_reset_next_schedule() -> None:
    """The documented fix over tunasync's quirk: a status change does not zero the schedule."""
    state = JobState(worker=W, name=J, status="syncing", next_schedule=at(3600))
    state = evolve(state, RunSucceeded(**ids(1), run_id="r", attempt=1))
    assert state.next_schedule == at(3600)


def test_command_answered_changes_nothing() -> None:
    state = JobState(worker=W, name=J, status="success", size="1G", last_update=at(1))
    answer = CommandAnswered(**ids(2), cmd_id="c", verb="ping", accepted=True)
    assert evolve(state, answer) == state


def test_fold_of_a_realistic_sequence() -> None:
    other = "debian-security"
    events: list[JobEvent] = [
        JobConfigured(**ids(0), upstream="rsync://up/debian/", interval=3600, provider="rsync"),
        JobConfigured(**ids(0.5, other), upstream="rsync://up/ds/", interval=600),
        JobScheduled(**ids(1), next_at=at(2)),
        RunStarted(**ids(2), run_id="r1"),
        AttemptStarted(**ids(3), run_id="r1", attempt=1),
        AttemptFailed(
            **ids(4), run_id="r1", attempt=1, error="exit status 23", exit_code=23, final=False
        ),
        AttemptStarted(**ids(5), run_id="r1", attempt=2),
        RunSucceeded(**ids(6), run_id="r1", attempt=2, size="1.33T"),
        JobScheduled(**ids(7), next_at=at(3606)),
        RunStarted(**ids(8, other), run_id="r2"),
        AttemptStarted(**ids(9, other), run_id="r2", attempt=1),
        AttemptFailed(**ids(10, other), run_id="r2", attempt=1, error="timeout after 7s"),
        JobScheduled(**ids(11, other), next_at=at(611)),
    ]
    states = fold(events)
    assert set(states) == {J, other}
    d = states[J]
    assert d == JobState(
        worker=W,
        name=J,
        status="success",
        upstream="rsync://up/debian/",
        provider="rsync",
        interval=3600,
        last_update=at(6),
        last_started=at(2),
        last_ended=at(6),
        next_schedule=at(3606),
        size="1.33T",
        error_msg="",
        run_id="r1",
        attempt=2,
        exit_code=0,
    )
    s = states[other]
    assert (s.status, s.error_msg, s.exit_code) == ("failed", "timeout after 7s", None)
    assert s.last_update is None
    assert (s.last_started, s.last_ended, s.next_schedule) == (at(8), at(10), at(611))
    # fold continues from given states without changing them
    more = fold([JobPaused(**ids(12))], states)
    assert more[J].status == "paused"
    assert states[J].status == "success"


def test_size_set_replaces_the_size() -> None:
    state = evolve(JobState(worker=W, name=J, size="1.33T"), SizeSet(**ids(1), size="2T"))
    assert state.size == "2T"


def test_evolve_is_pure() -> None:
    state = JobState(worker=W, name=J, status="success", size="1G", next_schedule=at(9))
    snapshot = msgspec.structs.asdict(state)
    event = RunStarted(**ids(1), run_id="r1")
    first = evolve(state, event)
    second = evolve(state, event)
    assert first == second
    assert first is not state
    assert msgspec.structs.asdict(state) == snapshot  # input untouched
    with pytest.raises(AttributeError):
        state.status = "failed"  # type: ignore[misc]


def test_evolve_refuses_a_worker_event() -> None:
    with pytest.raises(TypeError, match="WorkerStarted"):
        state = JobState(worker=W, name=J)
        evolve(state, WorkerStarted(id="x", at=T0, worker=W))  # type: ignore[arg-type]


# -- codec -------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", every_event(), ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event: Event) -> None:
    data = encode(event)
    raw = json.loads(data)
    tag = msgspec.inspect.type_info(type(event)).tag  # type: ignore[attr-defined]
    assert raw["type"] == tag
    assert raw["v"] == CURRENT_VERSIONS[tag]
    back = decode_event(data)
    assert back == event
    assert type(back) is type(event)


def test_every_event_type_is_covered() -> None:
    covered = {type(e) for e in every_event()}
    assert covered == set(Event.__args__)  # type: ignore[attr-defined]


def test_command_round_trips() -> None:
    cmd = Command(
        id="c1",
        at=T0,
        verb="restart",
        worker=W,
        job=J,
        force=True,
        expires_at=at(60),
        issuer="admin",
    )
    data = encode(cmd)
    assert json.loads(data)["type"] == "command"
    assert decode_command(data) == cmd


def test_an_event_is_not_a_command() -> None:
    with pytest.raises(CodecError) as info:
        decode_command(encode(JobPaused(**ids(1))))
    assert "command" in info.value.reason or "job.paused" in info.value.reason


def test_times_on_the_wire_are_rfc3339_and_come_back_in_utc() -> None:
    plus8 = datetime(2024, 3, 1, 20, 0, tzinfo=timezone(timedelta(hours=8)))
    ev = JobScheduled(**{**ids(1), "at": plus8}, next_at=None)
    back = decode_event(encode(ev))
    assert back.at == plus8  # same instant
    assert back.at.utcoffset() is not None


def test_v1_job_configured_is_upcast_with_provider_command() -> None:
    data = json.dumps(
        {
            "type": "job.configured",
            "v": 1,
            "id": "old",
            "at": "2020-01-01T00:00:00Z",
            "worker": W,
            "job": J,
            "upstream": "rsync://old/",
            "interval": 60,
        }
    ).encode()
    ev = decode_event(data)
    assert isinstance(ev, JobConfigured)
    assert ev.provider == "command"
    assert ev.v == 2
    assert ev.upstream == "rsync://old/"


def test_v1_without_version_field_is_upcast_too() -> None:
    data = json.dumps(
        {"type": "job.configured", "id": "old", "at": "2020-01-01T00:00:00Z", "worker": W, "job": J}
    ).encode()
    ev = decode_event(data)
    assert isinstance(ev, JobConfigured)
    assert (ev.v, ev.provider) == (2, "command")


def test_an_upcaster_is_registered_once() -> None:
    tag = f"test.only-{uuid.uuid4().hex}"  # never a real type: registering it changes nothing

    def step(data: dict[str, Any]) -> dict[str, Any]:
        return data

    from mirrorbus.events import codec

    try:
        assert upcaster(tag, 1)(step) is step
        with pytest.raises(ValueError, match="exists already"):
            upcaster(tag, 1)(step)
        # a different version of the same tag is another step
        upcaster(tag, 2)(step)
    finally:
        codec._UPCASTERS.pop((tag, 1), None)
        codec._UPCASTERS.pop((tag, 2), None)


def test_the_released_upcaster_cannot_be_replaced() -> None:
    with pytest.raises(ValueError):
        upcaster("job.configured", 1)(lambda d: d)


def _valid() -> dict[str, Any]:
    return json.loads(encode(AttemptFailed(**ids(1), run_id="r", attempt=1, error="x")))


def _bad_messages() -> list[tuple[str, bytes, str]]:
    missing = _valid()
    del missing["run_id"]
    wrong = {**_valid(), "attempt": "one"}
    naive = {**_valid(), "at": "2024-03-01T12:00:00"}
    big = {**_valid(), "error": "x" * (MAX_EVENT_BYTES + 1)}
    return [
        ("unknown type", json.dumps({**_valid(), "type": "job.exploded"}).encode(), "job.exploded"),
        ("no type", json.dumps({"id": "x"}).encode(), "type"),
        ("malformed json", b'{"type": "job.failed", ', "JSON"),
        ("not an object", b"[1, 2, 3]", "JSON"),
        ("garbage", b"\x00\xff\xfe garbage", "JSON"),
        ("missing field", json.dumps(missing).encode(), "run_id"),
        ("wrong type", json.dumps(wrong).encode(), "attempt"),
        ("naive time", json.dumps(naive).encode(), "at"),
        ("too big", json.dumps(big).encode(), str(MAX_EVENT_BYTES)),
        ("bad version", json.dumps({**_valid(), "v": 0}).encode(), "version"),
    ]


@pytest.mark.parametrize(
    ("data", "why"), [(d, w) for _, d, w in _bad_messages()], ids=[n for n, _, _ in _bad_messages()]
)
def test_undecodable_messages_raise_codec_error_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(CodecError) as info:
        decode_event(data)
    assert info.value.reason
    assert why in info.value.reason
    assert str(info.value) == info.value.reason


def test_a_message_just_under_the_limit_is_accepted() -> None:
    base = len(encode(AttemptFailed(**ids(1), run_id="r", attempt=1, error="")))
    ev = AttemptFailed(**ids(1), run_id="r", attempt=1, error="x" * (MAX_EVENT_BYTES - base))
    assert len(encode(ev)) == MAX_EVENT_BYTES
    assert decode_event(encode(ev)) == ev


def test_unknown_fields_are_ignored() -> None:
    ev = RunStarted(**ids(1), run_id="r1", reason="start")
    raw = {**json.loads(encode(ev)), "new_field": {"nested": [1, 2]}, "other": "x"}
    assert decode_event(json.dumps(raw).encode()) == ev


def test_snapshot_round_trip() -> None:
    states = fold(
        [
            JobConfigured(**ids(0), upstream="u"),
            RunStarted(**ids(1), run_id="r1"),
            AttemptStarted(**ids(2), run_id="r1", attempt=1),
            RunSucceeded(**ids(3), run_id="r1", attempt=1, size="3G"),
            JobScheduled(**ids(4, "ubuntu"), next_at=at(100)),
        ]
    )
    snap = WorkerSnapshot(id="s1", at=at(5), worker=W, seq=42, jobs=tuple(states.values()))
    data = encode_snapshot(snap)
    back = decode_snapshot(data)
    assert back == snap
    assert back.jobs[0].last_update == at(3)


def test_a_snapshot_of_many_jobs_is_small() -> None:
    jobs = tuple(
        JobState(worker=W, name=f"job{i}", status="success", size="1.2T", last_update=at(i))
        for i in range(10_000)
    )
    data = encode_snapshot(WorkerSnapshot(id="s", at=T0, worker=W, seq=1, jobs=jobs))
    assert len(data) < 1024 * 1024


@pytest.mark.parametrize("data", [b"", b"not zlib at all", zlib.compress(b"\x93junk")])
def test_garbage_snapshots_raise_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError) as info:
        decode_snapshot(data)
    assert "snapshot" in info.value.reason


# -- subjects ----------------------------------------------------------------------------------


def test_default_subjects_and_streams() -> None:
    s = Subjects()
    assert s.prefix == "mirrorbus"
    assert s.evt_stream == "MIRRORBUS_EVT"
    assert s.cmd_stream == "MIRRORBUS_CMD"
    assert s.snap_stream == "MIRRORBUS_SNAP"
    assert s.job_events("w1", "debian") == "mirrorbus.evt.w1.debian"
    assert s.worker_events("w1") == "mirrorbus.evt.w1"
    assert s.worker_job_events("w1") == "mirrorbus.evt.w1.>"
    assert s.all_events == "mirrorbus.evt.>"
    assert s.job_command("w1", "debian") == "mirrorbus.cmd.w1.debian"
    assert s.worker_commands("w1") == "mirrorbus.cmd.w1.>"
    assert s.all_commands == "mirrorbus.cmd.>"
    assert s.snapshot("w1") == "mirrorbus.snap.w1"
    assert s.all_snapshots == "mirrorbus.snap.>"
    assert s.api("jobs") == "mirrorbus.api.jobs"
    assert s.all_api == "mirrorbus.api.>"
    assert s.heartbeat("w1") == "mirrorbus.hb.w1"
    assert s.all_heartbeats == "mirrorbus.hb.*"
    assert Subjects.worker_inbox("w1") == "_INBOX_w1"
    assert Subjects.worker_consumer("w1") == "w1"


def test_a_custom_prefix_names_everything() -> None:
    s = Subjects("tuna-mirrors")
    assert s.job_events("w", "j") == "tuna-mirrors.evt.w.j"
    assert s.job_command("w", "j") == "tuna-mirrors.cmd.w.j"
    assert s.evt_stream.startswith("TUNA")
    assert s.evt_stream != Subjects().evt_stream
    tuna = Subjects("tuna")
    assert (tuna.evt_stream, tuna.cmd_stream, tuna.snap_stream) == (
        "TUNA_EVT",
        "TUNA_CMD",
        "TUNA_SNAP",
    )


@pytest.mark.parametrize(
    "name", ["debian", "debian-security", "AOSP", "a_b", "x" * 64, "x" * 255, "_x", "0ad"]
)
def test_plain_names_are_their_own_tokens(name: str) -> None:
    assert check_name(name) == name
    assert Subjects().job_events(name, name) == f"mirrorbus.evt.{name}.{name}"


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a/b",
        "/",
        "x" * 256,
        "\u00e9" * 128,
        "a\n",
        "a\tb",
        "a\x00",
        "a\x7f",
        "a\u0085",
        "a\u2028",
        "a\u202e",
        None,
        5,
    ],
)
def test_bad_names_are_refused(name: Any) -> None:
    with pytest.raises(InvalidName) as info:
        check_name(name, "job name")
    assert "job name" in str(info.value)
    with pytest.raises(InvalidName):
        Subjects().job_events("w1", name)
    with pytest.raises(InvalidName):
        Subjects().job_command(name, "debian")


@pytest.mark.parametrize(
    "prefix", ["", "Mirrorbus", "a.b", "mirror bus", "1abc", "a>", "-a", "x" * 33]
)
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidName, match="prefix"):
        Subjects(prefix)


def test_different_prefixes_get_different_streams() -> None:
    dash, underscore = Subjects("mirror-bus"), Subjects("mirror_bus")
    assert dash.all_events != underscore.all_events
    assert dash.evt_stream != underscore.evt_stream
    assert dash.cmd_stream != underscore.cmd_stream


@pytest.mark.e2e
def test_ids_are_32_hex_digits_and_never_repeat_also_across_fork() -> None:
    """Event ids are ``Nats-Msg-Id``s: the same id twice would make JetStream drop an event as
    a duplicate.  A forked child (a hook, a job) must not continue its parent's sequence."""
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its ids and leave without running the test's cleanup
        os.close(read)
        os.write(write, " ".join(new_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    ids += [new_id() for _ in range(100)]
    assert len(child) == 100 and not set(child) & set(ids)
