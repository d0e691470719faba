"""Properties (hypothesis) of the event codec, ``evolve``, the status view and the config loader.

Each property is a rule of docs/design.md ("Projection rules") or docs/tunasync.md §2.8 stated
for *every* input of a kind, not for a hand-picked example:

* codec: encode → decode is the identity for every message; any bytes decode to a message or
  raise ``CodecError``, never anything else (a projector must be able to set them aside);
* ``evolve``: the state after any sequence of a job's events is what the rules say, ``fold`` is
  repeated ``evolve``, and nothing is mutated;
* the view: any list of stored entries (valid events and garbage), applied in any split into
  batches, gives the same tables as one batch; re-applying any prefix changes nothing; every
  garbage entry is a dead letter with its sequence;
* the config loader: any document loads or raises ``ConfigError``, and names outside the name
  rule (tunasync's: printable, at most 255 bytes, no ``/``) are refused at load.

Examples are kept few (``max_examples``) so that the file runs in seconds; the view is on
SQLite files in a temporary directory made inside each example.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mirrorbus.config.worker import load_worker_config
from mirrorbus.errors import CodecError, ConfigError
from mirrorbus.events import (
    CURRENT_VERSIONS,
    MAX_EVENT_BYTES,
    VERBS,
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
    WorkerStarted,
    WorkerStopped,
    check_name,
    decode_command,
    decode_event,
    encode,
    evolve,
    fold,
)
from projections.status_view import StatusView

S = Subjects()
Entries = list[tuple[int, str, bytes]]

# -- strategies ---------------------------------------------------------------------------------

plain_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,11}", fullmatch=True)
names = st.one_of(
    plain_names,
    st.sampled_from(["-lead", "a" * 255, "*", ">", "a.*", "crates.io-index.git", "linux stable"]),
    st.builds(
        lambda a, sep, b: f"{a}{sep}{b}",
        plain_names,
        st.sampled_from([".", " ", "*", ">", "%", "é", "+", "@", "~"]),
        plain_names,
    ),
)
bad_names = st.one_of(
    st.sampled_from(["", ".", "..", "a" * 256, "é" * 128]),
    st.builds(
        lambda a, sep, b: f"{a}{sep}{b}",
        plain_names,
        st.sampled_from(["/", "\t", "\n", "\x00", "\u2028"]),
        plain_names,
    ),
)
ids = st.text("0123456789abcdef", min_size=1, max_size=32)
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
sizes = st.one_of(
    st.sampled_from(["", "unknown", "1.5K", "23G", "100M", "4.2T"]),
    st.text("0123456789.KMGTP", max_size=8),
)
errors = st.one_of(
    st.sampled_from(["exit status 23", "timeout after 7s", "interrupted", "killed by manager"]),
    st.text(max_size=40),
)
small = st.integers(min_value=0, max_value=10_000)
exit_codes = st.none() | st.integers(min_value=-255, max_value=255)
texts = st.text(max_size=30)


def _job(cls: type[JobEvent], **fields: Any) -> st.SearchStrategy[JobEvent]:
    return st.builds(cls, id=ids, at=times, worker=names, job=names, **fields)


JOB_EVENTS: dict[type[JobEvent], st.SearchStrategy[JobEvent]] = {
    JobConfigured: _job(
        JobConfigured,
        upstream=texts,
        interval=small,
        is_master=st.booleans(),
        provider=st.sampled_from(["command", "rsync", "two-stage-rsync"]),
    ),
    JobScheduled: _job(JobScheduled, next_at=st.none() | times),
    RunStarted: _job(
        RunStarted,
        run_id=ids,
        force=st.booleans(),
        reason=st.sampled_from(["schedule", "start", "restart", "recover"]),
    ),
    AttemptStarted: _job(AttemptStarted, run_id=ids, attempt=small, log_file=texts),
    RunSucceeded: _job(RunSucceeded, run_id=ids, attempt=small, size=sizes, exit_code=exit_codes),
    AttemptFailed: _job(
        AttemptFailed,
        run_id=ids,
        attempt=small,
        error=errors,
        exit_code=exit_codes,
        final=st.booleans(),
    ),
    JobPaused: _job(JobPaused, cmd_id=ids),
    JobDisabled: _job(JobDisabled, cmd_id=ids),
    SizeSet: _job(SizeSet, size=sizes, cmd_id=ids),
    JobRemoved: _job(JobRemoved),
    CommandAnswered: _job(
        CommandAnswered,
        cmd_id=ids,
        verb=st.sampled_from(VERBS),
        accepted=st.booleans(),
        message=texts,
        issuer=texts,
    ),
}
OTHER_EVENTS: dict[str, st.SearchStrategy[Event]] = {
    "worker.started": st.builds(
        WorkerStarted,
        id=ids,
        at=times,
        worker=names,
        version=st.sampled_from(["", "0.1.0"]),
        hostname=texts,
        pid=st.integers(0, 2**22),
        jobs=st.lists(names, max_size=4).map(tuple),
        concurrent=small,
    ),
    "worker.stopped": st.builds(WorkerStopped, id=ids, at=times, worker=names, reason=texts),
    "worker.answered": st.builds(
        WorkerAnswered,
        id=ids,
        at=times,
        worker=names,
        cmd_id=ids,
        verb=st.sampled_from(VERBS),
        accepted=st.booleans(),
        message=texts,
        job=st.just("") | names,
        issuer=texts,
    ),
    "admin.worker-removed": st.builds(WorkerForgotten, id=ids, at=times, worker=names, by=texts),
    "admin.disabled-flushed": st.builds(DisabledFlushed, id=ids, at=times, by=texts),
    "admin.command-sent": st.builds(
        CommandSent,
        id=ids,
        at=times,
        by=texts,
        cmd_id=ids,
        worker=names,
        job=st.just("") | names,
        verb=st.sampled_from(VERBS),
    ),
}
any_event: st.SearchStrategy[Event] = st.one_of(*JOB_EVENTS.values(), *OTHER_EVENTS.values())
commands = st.builds(
    Command,
    id=ids,
    at=times,
    verb=st.sampled_from(VERBS),
    worker=names,
    job=st.just("") | names,
    force=st.booleans(),
    size=sizes,
    expires_at=times,
    issuer=texts,
)


def _tag(cls: type[Any]) -> str:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return str(info.tag)


def test_every_message_type_has_a_strategy() -> None:
    tags = {_tag(cls) for cls in JOB_EVENTS} | set(OTHER_EVENTS) | {_tag(Command)}
    assert tags == set(CURRENT_VERSIONS)


# -- codec --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(any_event)
def test_encode_then_decode_is_identity_for_every_event(event: Event) -> None:
    data = encode(event)
    assert len(data) <= MAX_EVENT_BYTES
    decoded = decode_event(data)
    assert type(decoded) is type(event)
    assert decoded == event
    assert encode(decoded) == data  # the offset of a time is kept, not only its instant


@settings(max_examples=60, deadline=None)
@given(commands)
def test_encode_then_decode_is_identity_for_every_command(command: Command) -> None:
    assert decode_command(encode(command)) == command


@settings(max_examples=40, deadline=None)
@given(JOB_EVENTS[JobConfigured])
def test_a_v1_job_configured_is_upcast_to_the_command_provider(event: JobEvent) -> None:
    raw = json.loads(encode(event))
    raw["v"] = 1
    del raw["provider"]
    decoded = decode_event(json.dumps(raw).encode())
    assert decoded == msgspec.structs.replace(event, provider="command")


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )


def _mutated(event: Event, key: str, value: Any, drop: bool) -> bytes:
    """A valid event with one field dropped or set to any JSON value."""
    raw = json.loads(encode(event))
    if drop:
        raw.pop(key, None)
    else:
        raw[key] = value
    return json.dumps(raw).encode()


mutated_events = st.builds(
    _mutated,
    any_event,
    st.sampled_from(["type", "v", "id", "at", "worker", "job", "run_id", "attempt", "size"]),
    _json_values(),
    st.booleans(),
)
garbage_bytes = st.one_of(
    st.binary(max_size=200),
    _json_values().map(lambda v: json.dumps(v).encode()),
    mutated_events,
)


@settings(max_examples=300, deadline=None)
@given(garbage_bytes)
@example(b"")
@example(b"\xff\xfe")
@example(b'{"type": "job.nope", "v": 1}')
@example(b'{"type": "job.configured", "v": 0}')
@example(b'{"type": "job.configured", "v": 99, "id": "x"}')
@example(b'{"type": 7}')
@example(b"[]")
@example(b'{"type": "job.failed", "error": "' + b"x" * MAX_EVENT_BYTES + b'"}')
def test_decoding_any_bytes_gives_a_message_or_a_codec_error(data: bytes) -> None:
    for decode in (decode_event, decode_command):
        try:
            decoded = decode(data)
        except CodecError as exc:
            assert exc.reason
        else:
            assert isinstance(decoded, msgspec.Struct)
            assert len(data) <= MAX_EVENT_BYTES


@settings(max_examples=40, deadline=None)
@given(any_event)
def test_a_naive_time_is_refused(event: Event) -> None:
    raw = json.loads(encode(event))
    raw["at"] = event.at.replace(tzinfo=None).isoformat()
    with pytest.raises(CodecError):
        decode_event(json.dumps(raw).encode())


# -- evolve ------------------------------------------------------------------------------------


@st.composite
def job_histories(draw: st.DrawFn, max_size: int = 25) -> list[JobEvent]:
    """Events of one job in the order a worker appends them, with non-decreasing times."""
    worker, job = draw(names), draw(names)
    kinds = draw(st.lists(st.sampled_from(list(JOB_EVENTS)), max_size=max_size))
    at = draw(times).astimezone(UTC)
    history: list[JobEvent] = []
    for kind in kinds:
        at += timedelta(microseconds=draw(st.integers(0, 10**8)))
        event = draw(JOB_EVENTS[kind])
        history.append(msgspec.structs.replace(event, worker=worker, job=job, at=at))
    return history


def _last(history: Sequence[JobEvent], *kinds: type[JobEvent]) -> Any:
    return next((e for e in reversed(history) if isinstance(e, kinds)), None)


_STATUS_OF: dict[type[JobEvent], str] = {
    RunStarted: "pre-syncing",
    AttemptStarted: "syncing",
    RunSucceeded: "success",
    AttemptFailed: "failed",
    JobPaused: "paused",
    JobDisabled: "disabled",
}


@settings(max_examples=150, deadline=None)
@given(job_histories())
def test_evolve_follows_the_rules(history: list[JobEvent]) -> None:
    state: JobState | None = None
    updates: list[datetime] = []
    for event in history:
        before = msgspec.to_builtins(state)
        after = evolve(state, event)
        assert msgspec.to_builtins(state) == before  # the input is never changed
        if not isinstance(event, RunSucceeded):  # last_update changes on success only
            assert after.last_update == (state.last_update if state else None)
        if after.last_update is not None:
            updates.append(after.last_update)
        state = after
    assert updates == sorted(updates)  # never decreases (a worker's times are in order)
    if not history:
        return
    assert state is not None
    assert (state.worker, state.name) == (history[0].worker, history[0].job)

    changed = _last(history, *_STATUS_OF)
    assert state.status == (_STATUS_OF[type(changed)] if changed else "none")

    succeeded = _last(history, RunSucceeded)
    assert state.last_update == (succeeded.at if succeeded else None)
    ended = _last(history, RunSucceeded, AttemptFailed)
    assert state.last_ended == (ended.at if ended else None)
    started = _last(history, RunStarted)
    assert state.last_started == (started.at if started else None)

    # A known size is replaced only by a known one, or by an operator's set-size.
    sized = [
        e
        for e in history
        if isinstance(e, SizeSet) or (isinstance(e, RunSucceeded) and e.size not in ("", "unknown"))
    ]
    assert state.size == (sized[-1].size if sized else "")

    run = _last(history, RunStarted, AttemptStarted, RunSucceeded, AttemptFailed)
    assert state.run_id == (run.run_id if run else "")
    outcome = _last(history, RunStarted, RunSucceeded, AttemptFailed)
    assert state.error_msg == (outcome.error if isinstance(outcome, AttemptFailed) else "")

    # next_schedule: set by JobScheduled, cleared only by running, pausing, disabling, removal.
    scheduling = _last(history, JobScheduled, RunStarted, JobPaused, JobDisabled, JobRemoved)
    expected = scheduling.next_at if isinstance(scheduling, JobScheduled) else None
    assert state.next_schedule == expected
    presence = _last(history, JobRemoved, RunStarted, JobConfigured)
    assert state.removed == isinstance(presence, JobRemoved)


@settings(max_examples=60, deadline=None)
@given(st.lists(job_histories(max_size=8), max_size=4), st.randoms(use_true_random=False))
def test_fold_is_repeated_evolve(histories: list[list[JobEvent]], rnd: Any) -> None:
    events = [e for h in histories for e in h]
    rnd.shuffle(events)  # any interleaving of several jobs
    expected: dict[str, JobState] = {}
    for event in events:
        expected[event.job] = evolve(expected.get(event.job), event)
    assert fold(events) == expected
    half = len(events) // 2
    start = fold(events[:half])
    given_in = dict(start)
    assert fold(events[half:], start) == expected
    assert start == given_in  # the map passed in is not changed


def test_command_answered_changes_nothing() -> None:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    base = evolve(None, RunStarted(id="1", at=at, worker="w", job="j", run_id="r"))
    answer = CommandAnswered(
        id="2", at=at, worker="w", job="j", cmd_id="c", verb="ping", accepted=True
    )
    assert evolve(base, answer) is base


# -- the view ----------------------------------------------------------------------------------

# Microseconds included: the view stores times exactly, so a job row read back and written
# again never drifts (see test_a_job_row_survives_being_read_back below).
view_times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=offsets
)
view_workers = st.sampled_from(["w1", "w2"])
view_jobs = st.sampled_from(["debian", "ubuntu", "pypi"])
view_runs = st.sampled_from(["r1", "r2", "r3", "r4"])
view_cmds = st.sampled_from(["c1", "c2", "c3"])


def _view_event(draw: st.DrawFn) -> Event:
    """An event of a small world (2 workers, 3 jobs, 4 run ids) so that events interact."""
    kinds: list[Any] = [*JOB_EVENTS, *OTHER_EVENTS]
    kind = draw(st.sampled_from(kinds))
    common: dict[str, Any] = {"id": draw(ids), "at": draw(view_times), "worker": draw(view_workers)}
    if kind == "worker.started":
        jobs = tuple(draw(st.lists(view_jobs, max_size=3, unique=True)))
        return WorkerStarted(**common, version="0.1.0", hostname="h", pid=draw(small), jobs=jobs)
    if kind == "worker.stopped":
        return WorkerStopped(**common, reason="SIGTERM")
    if kind == "worker.answered":
        accepted = draw(st.booleans())
        return WorkerAnswered(**common, cmd_id=draw(view_cmds), verb="reload", accepted=accepted)
    if kind == "admin.worker-removed":
        return WorkerForgotten(**common, by="admin")
    if kind == "admin.disabled-flushed":
        return DisabledFlushed(id=common["id"], at=common["at"], by="admin")
    if kind == "admin.command-sent":
        return CommandSent(**common, by="admin", cmd_id=draw(view_cmds), verb="start")
    event = draw(JOB_EVENTS[kind])
    fields: dict[str, Any] = {**common, "job": draw(view_jobs)}
    if hasattr(event, "run_id"):
        fields["run_id"] = draw(view_runs)
    if hasattr(event, "cmd_id"):
        fields["cmd_id"] = draw(view_cmds)
    if isinstance(event, JobScheduled) and event.next_at is not None:
        fields["next_at"] = draw(view_times)
    for name in event.__struct_fields__:  # a NUL cannot be stored: such events are garbage
        value = getattr(event, name)
        if isinstance(value, str) and name not in fields:
            fields[name] = value.replace("\x00", "")
    return msgspec.structs.replace(event, **fields)


def _subject(event: Event) -> str:
    if isinstance(event, JobEvent):
        return S.job_events(event.worker, event.job)
    if isinstance(event, WorkerForgotten | DisabledFlushed | CommandSent):
        return S.admin_events
    return S.worker_events(event.worker)


GARBAGE = (
    "bytes",
    "unknown type",
    "oversized",
    "foreign subject",
    "naive time",
    "any json",
    "unstorable",
)


@st.composite
def stored_entries(draw: st.DrawFn) -> tuple[Entries, set[int]]:
    """Stored (seq, subject, data) entries, valid and garbage; and the garbage sequences."""
    out: Entries = []
    bad: set[int] = set()
    for seq in range(1, draw(st.integers(0, 40)) + 1):
        event = _view_event(draw)
        subject, data = _subject(event), encode(event)
        if draw(st.integers(0, 7)) == 0:
            how = draw(st.sampled_from(GARBAGE))
            if how == "bytes":
                data = draw(st.binary(max_size=50))
            elif how == "unknown type":
                data = json.dumps({"type": "job.teleported", "v": 1, "id": "x"}).encode()
            elif how == "oversized":
                data = data[:-1] + b', "pad": "' + b"x" * MAX_EVENT_BYTES + b'"}'
            elif how == "foreign subject":
                subject = S.job_events(draw(st.sampled_from(["w3", "w1"])), "elsewhere")
            elif how == "naive time":
                raw = json.loads(data)
                raw["at"] = event.at.replace(tzinfo=None).isoformat()
                data = json.dumps(raw).encode()
            elif how == "unstorable":  # valid by the schema, but no column can hold a NUL
                data = json.dumps({**json.loads(data), "id": "a\u0000b"}).encode()
            else:
                data = json.dumps(draw(_json_values())).encode()
            bad.add(seq)
        out.append((seq, subject, data))
    return out, bad


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stored_entries(), st.lists(st.integers(0, 40), max_size=6), st.integers(0, 40))
def test_any_split_into_batches_gives_the_same_view(
    stored: tuple[Entries, set[int]], cuts: list[int], replay: int
) -> None:
    entries, garbage = stored
    with tempfile.TemporaryDirectory() as tmp:
        one = StatusView(f"sqlite:///{tmp}/one.db")
        split = StatusView(f"sqlite:///{tmp}/split.db")
        try:
            result = one.apply(entries)
            assert (result.applied, result.dead) == (len(entries) - len(garbage), len(garbage))
            assert result.position == len(entries)
            assert [seq for seq, _, _ in one.dead_letters(1000)] == sorted(garbage)
            assert all(reason for _, _, reason in one.dead_letters(1000))

            bounds = sorted({0, len(entries), *(c for c in cuts if c <= len(entries))})
            for lo, hi in itertools.pairwise(bounds):
                split.apply(entries[lo:hi])
            expected = one.dump()
            assert split.dump() == expected

            # A redelivered prefix (or all of it) is skipped by sequence: nothing changes.
            again = split.apply(entries[: min(replay, len(entries))])
            assert (again.applied, again.dead) == (0, 0)
            assert split.dump() == expected
            assert split.position() == len(entries)
        finally:
            one.close()
            split.close()


_POISON: list[tuple[str, dict[str, Any]]] = [
    ("exit code beyond 64 bits", {"exit_code": 2**64 - 1}),
    ("attempt beyond 32 bits", {"attempt": 2**31}),
    ("run id longer than its column", {"run_id": "r" * 65}),
    ("time before year 1 in UTC", {"at": "0001-01-01T00:00:00+23:59"}),
    ("time after year 9999 in UTC", {"at": "9999-12-31T23:59:59-23:59"}),
    ("NUL in a text", {"error": "a\u0000b"}),
]


@pytest.mark.parametrize(("what", "change"), _POISON, ids=[p[0] for p in _POISON])
def test_an_event_the_view_cannot_store_is_a_dead_letter(
    tmp_path: Path, what: str, change: dict[str, Any]
) -> None:
    """A schema-valid event whose values the tables cannot hold (PostgreSQL: int32, varchar(n),
    no NUL; SQLite: int64) is set aside like any bad event, on every backend alike, instead of
    failing its batch again and again and stopping the projector there for good."""
    failed = {
        "type": "job.failed",
        "id": "x",
        "at": "2024-01-01T00:00:00Z",
        "worker": "w1",
        "job": "j",
        "run_id": "r",
        "attempt": 1,
        "error": "e",
    }
    poison = json.dumps({**failed, **change}).encode()
    decode_event(poison)  # valid by the schema
    good = RunStarted(
        id="ok", at=datetime(2024, 1, 1, tzinfo=UTC), worker="w1", job="j", run_id="r"
    )
    view = StatusView(f"sqlite:///{tmp_path}/v.db")
    try:
        subject = S.job_events("w1", "j")
        result = view.apply([(1, subject, poison), (2, subject, encode(good))])
        assert (result.applied, result.dead, result.position) == (1, 1, 2)
        assert [seq for seq, _, _ in view.dead_letters()] == [1]
        assert [j.status for j in view.jobs()] == ["pre-syncing"]
    finally:
        view.close()


def test_a_job_row_survives_being_read_back(tmp_path: Path) -> None:
    at = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=1116900263418665)
    succeeded = RunSucceeded(id="1", at=at, worker="w1", job="j", run_id="r", attempt=1)
    scheduled = JobScheduled(id="2", at=at, worker="w1", job="j", next_at=None)
    stored = [(1, S.job_events("w1", "j"), encode(succeeded))]
    stored.append((2, S.job_events("w1", "j"), encode(scheduled)))
    one = StatusView(f"sqlite:///{tmp_path}/one.db")
    two = StatusView(f"sqlite:///{tmp_path}/two.db")
    try:
        one.apply(stored)
        two.apply(stored[:1])
        two.apply(stored[1:])  # reads the job row back, writes it again
        assert two.dump() == one.dump()
        assert two.jobs()[0].last_update == at
    finally:
        one.close()
        two.close()


# -- the config loader ---------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml_table(header: str, table: dict[str, Any]) -> str:
    lines = (f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}\n" for k, v in table.items())
    return header + "\n" + "".join(lines)


# Numbers stay within what a timedelta holds: larger ones, inf and nan are a known bug
# (test_a_huge_or_odd_number_is_a_config_error below).
toml_scalars = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 10**6),
    st.floats(-5, 1e6),
    st.booleans(),
)
toml_any = st.one_of(
    toml_scalars,
    st.lists(toml_scalars, max_size=3),
    st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)
MIRROR_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "provider": st.sampled_from(["command", "rsync", "two-stage-rsync", "ftp", ""]),
    "command": st.sampled_from(["/bin/true", "echo 'a b'", "", "echo 'unclosed"]),
    "upstream": st.sampled_from(["rsync://up/x/", "https://up/x/", "up::x", ""]),
    "interval": st.one_of(st.integers(-1, 1440), st.floats(0, 100)),
    "retry": st.integers(-1, 5),
    "timeout": st.integers(-1, 100),
    "size_pattern": st.sampled_from(["size ([0-9]+)", "no group", "(", ""]),
    "fail_on_match": st.sampled_from(["error", "[", ""]),
    "memory_limit": st.sampled_from(["256M", "1.5GiB", "lots", ""]),
    "stage1_profile": st.sampled_from(["debian", "debian-oldstyle", "nope", ""]),
    "role": st.sampled_from(["master", "slave", "boss"]),
    "log_dir": st.sampled_from(["logs/{{.Name}}", "{{.Nope}}", "{{ if }}", "logs/{{.Name"]),
    "env": st.dictionaries(st.sampled_from(["A", "B"]), st.text(max_size=5) | st.integers()),
    "rsync_options": st.lists(st.text(max_size=5), max_size=2),
    "exec_on_success": st.lists(st.sampled_from(["/bin/true", "'x"]), max_size=2),
}


@st.composite
def mirror_tables(draw: st.DrawFn) -> dict[str, Any]:
    table: dict[str, Any] = {}
    if draw(st.integers(0, 9)) > 0:
        table["name"] = draw(st.one_of(names, bad_names))
    for key in draw(st.lists(st.sampled_from(sorted(MIRROR_VALUES)), max_size=5, unique=True)):
        table[key] = draw(toml_any) if draw(st.integers(0, 5)) == 0 else draw(MIRROR_VALUES[key])
    if draw(st.integers(0, 5)) == 0:
        table[draw(st.text(min_size=1, max_size=8))] = draw(toml_any)  # an unknown key
    return table


@st.composite
def worker_documents(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A worker config's text, and the worker and job names it sets."""
    glob: dict[str, Any] = {"mirror_dir": "mirrors", "log_dir": "logs/{{.Name}}"}
    if draw(st.integers(0, 9)) > 0:
        glob["name"] = draw(st.one_of(names, bad_names))
    numbers = st.sampled_from(["concurrent", "interval", "retry", "timeout", "jitter"])
    for key in draw(st.lists(numbers, max_size=3)):
        glob[key] = draw(st.integers(-2, 100) | toml_scalars)
    parts = [_toml_table("[global]", glob)]
    if draw(st.booleans()):
        prefix = draw(st.sampled_from(["mirrorbus", "Bad.Prefix", ""]))
        parts.append(_toml_table("[bus]", {"url": "tls://127.0.0.1:4222", "prefix": prefix}))
    mirrors = draw(st.lists(mirror_tables(), max_size=4))
    parts.extend(_toml_table("[[mirrors]]", m) for m in mirrors)
    if draw(st.integers(0, 9)) == 0:  # a line of anything, anywhere
        parts.insert(draw(st.integers(0, len(parts))), draw(st.text(max_size=20)) + "\n")
    set_names = [str(glob.get("name", ""))] + [str(m.get("name", "")) for m in mirrors]
    return "".join(parts), set_names


@settings(max_examples=150, deadline=None)
@given(worker_documents())
def test_any_config_loads_or_raises_config_error(document: tuple[str, list[str]]) -> None:
    text, set_names = document
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "worker.toml"
        path.write_text(text)
        try:
            cfg = load_worker_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
    # Loaded: the names it set were all valid names, and they are the names it has.
    assert all(check_name(n) == n for n in set_names)
    assert [cfg.name, *(m.name for m in cfg.mirrors)] == set_names


@settings(max_examples=60, deadline=None)
@given(bad_names, st.booleans())
def test_a_name_outside_the_name_rule_is_refused_at_load(name: str, as_job: bool) -> None:
    worker, job = ("w1", name) if as_job else (name, "j1")
    text = _toml_table("[global]", {"name": worker, "mirror_dir": "m", "log_dir": "l/{{.Name}}"})
    text += _toml_table("[[mirrors]]", {"name": job, "provider": "command", "command": "/bin/true"})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "worker.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="key 'name'"):
            load_worker_config(path)


_ODD_NUMBERS = [
    "interval = 1e300",
    "interval = nan",
    "interval = inf",
    "timeout = 9000000000000000000",
    "jitter = 1e300",
    "retry_backoff = 1e300",
]


@pytest.mark.parametrize("line", _ODD_NUMBERS)
def test_a_huge_or_odd_number_is_a_config_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(
        _toml_table("[global]", {"name": "w1", "mirror_dir": "m", "log_dir": "l/{{.Name}}"})
        + line
        + "\n"
        + _toml_table("[[mirrors]]", {"name": "j", "provider": "command", "command": "/bin/true"})
    )
    with pytest.raises(ConfigError):
        load_worker_config(path)
