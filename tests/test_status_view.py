"""Contract of the SQL status view (docs/design.md, "Projection rules"), on SQLite and PostgreSQL.

Every test runs against both backends through the ``new_url``/``view`` fixtures.  PostgreSQL
comes from ``MIRRORBUS_TEST_PG_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
each test gets its own schema, dropped afterwards.  Without the variable the PostgreSQL cases
are skipped, except in CI (``CI`` set) where they fail: CI must test both backends.
"""

from __future__ import annotations

import gc
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    Table,
    create_engine,
    insert,
    inspect,
    text,
    update,
)
from sqlalchemy.dialects import sqlite

from mirrorbus.errors import ProjectionError
from mirrorbus.events import (
    MAX_EVENT_BYTES,
    AttemptFailed,
    AttemptStarted,
    CommandAnswered,
    Event,
    JobConfigured,
    JobDisabled,
    JobEvent,
    JobRemoved,
    JobScheduled,
    RunStarted,
    RunSucceeded,
    Subjects,
    WorkerAnswered,
    WorkerForgotten,
    WorkerStarted,
    WorkerStopped,
    encode,
    fold,
)
from projections import StatusView
from projections import tables as t
from projections.batch import DEAD_LETTER_EXCERPT
from projections.statements import INSERT, driver_statement

PG_ENV = "MIRRORBUS_TEST_PG_URL"
SUBJECTS = Subjects()
T0 = datetime(2024, 3, 1, 12, 0, 0, 123457, tzinfo=UTC)
W = "w1"
Entry = tuple[int, str, bytes]
NewUrl = Callable[[], str]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- backends ----------------------------------------------------------------------------------


def _pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(
                f"{PG_ENV} is not set: the CI test command must set it, e.g. "
                f"{PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test"
            )
        pytest.skip(f"{PG_ENV} not set (PostgreSQL contract tests)")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewUrl]:
    """A factory of URLs of fresh, empty databases on the backend under test."""
    if request.param == "sqlite":
        counter = iter(range(1_000_000))

        def sqlite_url() -> str:
            return f"sqlite:///{tmp_path / f'view{next(counter)}.db'}"

        yield sqlite_url
        return

    base = _pg_base_url()
    admin = create_engine(base)
    schemas: list[str] = []

    def pg_url() -> str:
        schema = f"mbtest_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}options=-csearch_path%3D{schema}"

    try:
        yield pg_url
    finally:
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def open_view(new_url: NewUrl) -> Iterator[Callable[..., StatusView]]:
    """Open a view (on a fresh database unless ``url`` is given); all are closed at the end."""
    views: list[StatusView] = []

    def open_(url: str | None = None) -> StatusView:
        v = StatusView(url or new_url())
        views.append(v)
        return v

    yield open_
    for v in views:
        v.close()


@pytest.fixture
def view(open_view: Callable[..., StatusView]) -> StatusView:
    return open_view()


# -- events ------------------------------------------------------------------------------------


def subject_of(ev: Event) -> str:
    if isinstance(ev, JobEvent):
        return SUBJECTS.job_events(ev.worker, ev.job)
    return SUBJECTS.worker_events(ev.worker)


def entries(events: Sequence[Event], first_seq: int = 1) -> list[Entry]:
    return [(first_seq + i, subject_of(ev), encode(ev)) for i, ev in enumerate(events)]


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, seconds: float, job: str = "debian", worker: str = W) -> dict[str, Any]:
        self.n += 1
        return {"id": f"e{self.n}", "at": at(seconds), "worker": worker, "job": job}


def a_day(ids: Ids | None = None) -> list[Event]:
    """A worker's day: two jobs, a retried successful run, a failed run, a command, a stop."""
    ids = ids or Ids()
    return [
        WorkerStarted(
            id="ws",
            at=at(0),
            worker=W,
            version="0.1.0",
            hostname="mirror1",
            pid=4242,
            jobs=("debian", "ubuntu"),
            concurrent=2,
        ),
        JobConfigured(**ids(0.1), upstream="rsync://up/debian/", interval=3600, provider="rsync"),
        JobConfigured(**ids(0.2, "ubuntu"), upstream="rsync://up/ubuntu/", interval=600),
        JobScheduled(**ids(0.3), next_at=at(1)),
        RunStarted(**ids(1), run_id="r1"),
        AttemptStarted(**ids(1.5), run_id="r1", attempt=1),
        AttemptFailed(
            **ids(10), run_id="r1", attempt=1, error="exit status 23", exit_code=23, final=False
        ),
        AttemptStarted(**ids(11), run_id="r1", attempt=2),
        RunSucceeded(**ids(20), run_id="r1", attempt=2, size="1.33T"),
        JobScheduled(**ids(20.5), next_at=at(3620)),
        RunStarted(**ids(30, "ubuntu"), run_id="r2", reason="start", force=True),
        AttemptStarted(**ids(31, "ubuntu"), run_id="r2", attempt=1),
        AttemptFailed(
            **ids(38, "ubuntu"), run_id="r2", attempt=1, error="timeout after 7s", final=True
        ),
        CommandAnswered(**ids(40, "ubuntu"), cmd_id="c1", verb="disable", accepted=True),
        JobDisabled(**ids(40.5, "ubuntu"), cmd_id="c1"),
        WorkerAnswered(
            id="wa", at=at(41), worker=W, cmd_id="c2", verb="start", accepted=False, job="nope"
        ),
        RunStarted(**ids(50), run_id="r3"),
        AttemptStarted(**ids(51), run_id="r3", attempt=1),
        RunSucceeded(**ids(60.000001), run_id="r3", attempt=1, size=""),  # size unknown: kept
        WorkerStopped(id="wx", at=at(70), worker=W, reason="SIGTERM"),
    ]


def job_events(events: Sequence[Event]) -> list[JobEvent]:
    return [e for e in events if isinstance(e, JobEvent)]


def table_rows(v: StatusView, name: str) -> list[tuple[Any, ...]]:
    return v.dump()[name]


# -- tests -------------------------------------------------------------------------------------


def test_a_fresh_view_is_empty(view: StatusView) -> None:
    assert view.position() == 0
    assert view.jobs() == []
    assert view.workers() == []
    assert view.dead_letters() == []


def test_job_states_equal_the_fold_of_the_same_events(view: StatusView) -> None:
    events = a_day()
    result = view.apply(entries(events))
    assert (result.applied, result.skipped, result.dead) == (len(events), 0, 0)
    expected = fold(job_events(events))
    got = {s.name: s for s in view.jobs(include_removed=True)}
    assert got == expected
    assert got["debian"].size == "1.33T"
    assert got["debian"].last_update == at(60.000001)
    assert got["ubuntu"].status == "disabled"


def test_each_event_in_its_own_batch_gives_the_fold_too(view: StatusView) -> None:
    events = a_day()
    for entry in entries(events):
        view.apply([entry])
    assert {s.name: s for s in view.jobs()} == fold(job_events(events))


def test_the_position_is_stored_with_the_batch(open_view: Callable[..., StatusView]) -> None:
    events = a_day()
    es = entries(events, first_seq=101)
    first = open_view()
    r1 = first.apply(es[:5])
    assert r1.position == 105
    assert first.position() == 105
    r2 = first.apply(es[5:])
    assert r2.position == 100 + len(events)
    # another process opening the same database resumes from there
    again = open_view(first.url)
    assert again.position() == 100 + len(events)
    assert again.apply(es[-3:]).skipped == 3


def test_a_redelivered_batch_is_skipped_entirely(view: StatusView) -> None:
    es = entries(a_day())
    view.apply(es[:10])
    before = view.dump()
    again = view.apply(es[:10])
    assert (again.applied, again.skipped, again.dead) == (0, 10, 0)
    assert again.position == 10
    assert view.dump() == before
    # an overlapping batch: the old part skipped, the new part applied
    overlap = view.apply(es[7:14])
    assert (overlap.applied, overlap.skipped) == (4, 3)
    assert view.position() == 14


def test_a_batch_out_of_order_never_goes_back(view: StatusView) -> None:
    es = entries(a_day())
    view.apply(es[:6])
    result = view.apply([es[8], es[6], es[7]])  # 6 and 7 arrive after 8: already passed
    assert (result.applied, result.skipped) == (1, 2)
    assert view.position() == 9


def test_splitting_into_other_batches_gives_the_same_view(
    open_view: Callable[..., StatusView],
) -> None:
    es = entries(a_day())
    whole = open_view()
    whole.apply(es)
    pieces = open_view()
    pieces.apply(es[:1])
    pieces.apply(es[1:4])
    pieces.apply(es[2:9])  # overlaps: redelivery in between
    pieces.apply(es[9:])
    ones = open_view()
    for e in es:
        ones.apply([e])
        ones.apply([e])
    assert whole.dump() == pieces.dump() == ones.dump()
    assert whole.dump()["jobs"]  # not trivially equal


def test_the_same_log_with_dead_letters_gives_the_same_view(
    open_view: Callable[..., StatusView],
) -> None:
    es, _ = _garbage_entries()
    whole = open_view()
    whole.apply(es)
    pieces = open_view()
    pieces.apply(es[:3])
    pieces.apply(es[3:])
    assert len(whole.dead_letters()) == len(pieces.dead_letters()) == 5
    assert whole.dump() == pieces.dump()


def _garbage_entries() -> tuple[list[Entry], dict[int, str]]:
    ids = Ids()
    good = [
        JobConfigured(**ids(0), upstream="u"),
        RunStarted(**ids(1), run_id="rg"),
        AttemptStarted(**ids(2), run_id="rg", attempt=1),
        RunSucceeded(**ids(3), run_id="rg", attempt=1, size="9G"),
        JobScheduled(**ids(4), next_at=at(100)),
    ]
    foreign_worker = JobConfigured(**ids(0, worker="w2"), upstream="evil")
    foreign_job = JobConfigured(**ids(0, job="ubuntu"), upstream="u2")
    unknown = encode(JobConfigured(**ids(0))).replace(b'"job.configured"', b'"job.exploded"')
    huge = encode(JobConfigured(**ids(0), upstream="x" * MAX_EVENT_BYTES))
    deb = SUBJECTS.job_events(W, "debian")
    es: list[Entry] = [
        (1, deb, encode(good[0])),
        (2, deb, b"\x00\x01 not json \xff"),
        (3, deb, encode(good[1])),
        (4, deb, unknown),
        (5, deb, encode(good[2])),
        (6, deb, encode(foreign_worker)),  # w2's event on w1's subject
        (7, SUBJECTS.job_events(W, "debian-security"), encode(foreign_job)),
        (8, deb, huge),
        (9, deb, encode(good[3])),
        (10, deb, encode(good[4])),
    ]
    why = {2: "JSON", 4: "job.exploded", 6: "foreign subject", 7: "foreign subject", 8: "exceeds"}
    return es, why


def test_bad_events_become_dead_letters_and_the_rest_is_applied(view: StatusView) -> None:
    es, why = _garbage_entries()
    result = view.apply(es)
    assert (result.applied, result.dead, result.position) == (5, 5, 10)
    dead = view.dead_letters()
    assert [seq for seq, _, _ in dead] == sorted(why)
    for seq, subject, reason in dead:
        assert why[seq] in reason, (seq, reason)
        assert subject == es[seq - 1][1]
    # the raw bytes are kept for inspection, the first DEAD_LETTER_EXCERPT of a big one
    stored = {r[0]: r[3] for r in table_rows(view, "dead_letters")}
    assert stored[2] == es[1][2]
    assert stored[8] == es[7][2][:DEAD_LETTER_EXCERPT] and len(es[7][2]) > DEAD_LETTER_EXCERPT
    (job,) = view.jobs()
    assert (job.worker, job.name, job.status, job.size) == (W, "debian", "success", "9G")
    assert job.upstream == "u"
    assert job.next_schedule == at(100)
    assert [w.name for w in view.workers()] == [W]  # w2 never appeared
    # redelivering the batch adds no second dead letter
    again = view.apply(es)
    assert (again.applied, again.skipped, again.dead) == (0, 10, 0)
    assert len(view.dead_letters()) == 5


def test_history_newest_first(view: StatusView) -> None:
    view.apply(entries(a_day()))
    runs = view.history(W, "debian")
    assert [r.run_id for r in runs] == ["r3", "r1"]
    r3, r1 = runs
    assert (r1.result, r1.attempts, r1.size, r1.error, r1.exit_code) == (
        "success",
        2,
        "1.33T",
        "",
        0,
    )
    assert (r1.started_at, r1.ended_at, r1.reason, r1.forced) == (at(1), at(20), "schedule", False)
    assert (r3.result, r3.attempts) == ("success", 1)
    (r2,) = view.history(W, "ubuntu")
    assert (r2.result, r2.attempts, r2.error, r2.exit_code) == (
        "failed",
        1,
        "timeout after 7s",
        None,
    )
    assert (r2.ended_at, r2.reason, r2.forced) == (at(38), "start", True)
    assert view.history(W, "debian", limit=1) == [r3]
    assert view.history("w2", "debian") == []


def test_a_run_is_running_until_its_final_event(view: StatusView) -> None:
    ids = Ids()
    es = entries(
        [
            RunStarted(**ids(1), run_id="r1"),
            AttemptStarted(**ids(2), run_id="r1", attempt=1),
            AttemptFailed(
                **ids(3), run_id="r1", attempt=1, error="exit status 1", exit_code=1, final=False
            ),
            AttemptStarted(**ids(4), run_id="r1", attempt=2),
            AttemptFailed(
                **ids(5), run_id="r1", attempt=2, error="exit status 3", exit_code=3, final=True
            ),
        ]
    )
    view.apply(es[:3])
    (run,) = view.history(W, "debian")
    assert (run.result, run.ended_at, run.attempts) == ("running", None, 1)
    view.apply(es[3:])
    (run,) = view.history(W, "debian")
    assert (run.result, run.ended_at, run.attempts) == ("failed", at(5), 2)
    assert (run.error, run.exit_code) == ("exit status 3", 3)
    assert view.jobs()[0].status == "failed"


def test_a_run_started_stored_twice_does_not_stop_the_projector(view: StatusView) -> None:
    ids = Ids()
    start = RunStarted(**ids(1), run_id="r1")
    es = entries(
        [
            start,
            AttemptStarted(**ids(2), run_id="r1", attempt=1),
            RunSucceeded(**ids(3), run_id="r1", attempt=1, size="1G"),
        ]
    )
    view.apply(es)
    later = [
        (4, subject_of(start), encode(start)),  # the same event again, at a new sequence
        (5, *entries([JobScheduled(**ids(4), next_at=at(100))])[0][1:]),
    ]
    result = view.apply(later)
    assert result.position == 5
    assert view.position() == 5
    assert [r.run_id for r in view.history(W, "debian")] == ["r1"]
    assert view.jobs()[0].next_schedule == at(100)


def test_workers_online_then_offline(view: StatusView) -> None:
    events = a_day()
    es = entries(events)
    view.apply(es[:-1])
    (w,) = view.workers()
    assert w.online
    assert (w.version, w.hostname, w.pid, w.jobs, w.concurrent) == ("0.1.0", "mirror1", 4242, 2, 2)
    assert w.started_at == at(0)
    assert w.last_seen == at(60.000001)
    assert w.stopped_at is None
    view.apply(es[-1:])
    (w,) = view.workers()
    assert not w.online
    assert w.stopped_at == at(70)
    assert w.last_seen == at(70)
    # started again
    view.apply(entries([WorkerStarted(id="ws2", at=at(80), worker=W)], first_seq=len(es) + 1))
    (w,) = view.workers()
    assert w.online
    assert (w.started_at, w.last_seen) == (at(80), at(80))


def test_answers_are_recorded_once_even_if_delivered_twice(view: StatusView) -> None:
    ids = Ids()
    job_answer = CommandAnswered(
        **ids(1), cmd_id="c1", verb="stop", accepted=True, message="ok", issuer="admin"
    )
    worker_answer = WorkerAnswered(
        id="wa", at=at(2), worker=W, cmd_id="c2", verb="start", accepted=False, job="gone"
    )
    twice = [job_answer, worker_answer, job_answer, worker_answer]
    view.apply(entries(twice)[:3])  # the second copy of c1 in the same batch
    view.apply(entries(twice)[3:])  # the second copy of c2 in a later batch
    view.apply(entries([job_answer, worker_answer], first_seq=5))
    rows = table_rows(view, "commands")
    by_id = {r[0]: r for r in rows}
    assert sorted(by_id) == ["c1", "c2"]
    assert len(rows) == 2
    c1 = dict(zip([c.name for c in t.commands.columns], by_id["c1"], strict=True))
    assert (c1["worker"], c1["job"], c1["verb"], c1["accepted"]) == (W, "debian", "stop", True)
    assert (c1["message"], c1["issuer"], c1["seq"]) == ("ok", "admin", 1)
    c2 = dict(zip([c.name for c in t.commands.columns], by_id["c2"], strict=True))
    assert (c2["job"], c2["accepted"], c2["seq"]) == ("gone", False, 2)
    assert view.position() == 6


def test_removed_jobs_are_hidden_unless_asked(view: StatusView) -> None:
    ids = Ids()
    view.apply(
        entries(
            [
                JobConfigured(**ids(0), upstream="u"),
                JobConfigured(**ids(0, "ubuntu"), upstream="u"),
                JobRemoved(**ids(1, "ubuntu")),
            ]
        )
    )
    assert [j.name for j in view.jobs()] == ["debian"]
    assert [j.name for j in view.jobs(W)] == ["debian"]
    assert [(j.name, j.removed) for j in view.jobs(include_removed=True)] == [
        ("debian", False),
        ("ubuntu", True),
    ]
    assert view.jobs("w2") == []
    # configured again: back
    view.apply(entries([JobConfigured(**ids(2, "ubuntu"), upstream="u")], first_seq=4))
    assert [j.name for j in view.jobs()] == ["debian", "ubuntu"]


def test_reset_empties_everything(view: StatusView) -> None:
    es, _ = _garbage_entries()
    view.apply(es)
    view.apply(entries(a_day(), first_seq=11))
    assert view.dead_letters()
    assert view.position() == 10 + len(a_day())
    view.reset()
    assert view.position() == 0
    dump = view.dump()
    for name in ("jobs", "runs", "workers", "commands", "dead_letters"):
        assert dump[name] == [], name
    # and it can be filled again from the start of the log (a rebuild)
    again = view.apply(entries(a_day()))
    assert again.skipped == 0
    assert {s.name: s for s in view.jobs()} == fold(job_events(a_day()))


def test_a_view_of_another_schema_version_asks_for_a_rebuild(
    open_view: Callable[..., StatusView],
) -> None:
    first = open_view()
    first.apply(entries(a_day()))
    with first.engine.begin() as conn:
        conn.execute(update(t.meta).where(t.meta.c.key == "schema").values(value=99))
    first.close()
    # The refused view leaks its pooled connection (see the xfail test below); collect it here
    # with ResourceWarning ignored so that this test checks the message only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(ProjectionError, match="mirrorbus manager rebuild") as info:
            StatusView(first.url)
        message = str(info.value)
        del info
        gc.collect()
    assert "99" in message
    assert "needs 1" in message


def test_a_refused_view_closes_its_connections(open_view: Callable[..., StatusView]) -> None:
    first = open_view()
    if first.url.startswith("sqlite"):
        first.close()
        pytest.skip("an unclosed sqlite3 connection is silent on Python 3.11: not observable")
    with first.engine.begin() as conn:
        conn.execute(update(t.meta).where(t.meta.c.key == "schema").values(value=99))
    first.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(ProjectionError):
            StatusView(first.url)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_an_unopenable_url_is_a_projection_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectionError, match="status view"):
        StatusView(f"sqlite:///{tmp_path / 'missing-dir' / 'view.db'}")
    with pytest.raises(ProjectionError):
        StatusView("nosuchdb://x")


# -- command targets, answers, the added index, the driver statements --------------------------


def test_a_command_target_is_known_by_its_jobs_or_the_worker_record(view: StatusView) -> None:
    ids = Ids()
    view.apply(
        entries(
            [
                WorkerStarted(id="ws", at=at(0), worker=W, jobs=("debian",)),
                JobConfigured(**ids(0), upstream="u"),
                JobConfigured(**ids(0, "arch", "w2"), upstream="u"),
                JobRemoved(**ids(1, "arch", "w2")),
            ]
        )
    )
    forget = WorkerForgotten(id="f", at=at(2), by="admin", worker="w2")  # ctl rm-worker
    view.apply([(5, SUBJECTS.admin_events, encode(forget))])
    assert [w.name for w in view.workers()] == [W]
    assert view.target(W, "debian") == (True, True, [])
    assert view.target(W, None) == (True, False, [])
    assert view.target(W, "nosuch") == (True, False, [])
    # w2's record is gone, its jobs stay (as in tunasync); a removed job is still a target
    assert view.target("w2", "arch") == (True, True, [])
    assert view.target("w2", None) == (True, False, [])
    assert view.target("w2", "debian") == (True, False, [])
    # an unknown worker: the names of those with a record
    assert view.target("nobody", "debian") == (False, False, [W])


def test_an_answer_leaves_its_job_row_as_it_was(view: StatusView) -> None:
    """A command's answer changes no job state (the fold returns it as it was): its job row,
    sequence included, stays; the answer is a row of ``commands`` and the worker was seen."""
    ids = Ids()
    view.apply(entries([JobConfigured(**ids(0), upstream="u")]))
    before = table_rows(view, "jobs")
    answer = CommandAnswered(**ids(5), cmd_id="c9", verb="ping", accepted=True, message="pong")
    view.apply(entries([answer], first_seq=2))
    assert table_rows(view, "jobs") == before
    assert [r[0] for r in table_rows(view, "commands")] == ["c9"]
    (w,) = view.workers()
    assert w.last_seen == at(5)
    assert view.position() == 2


def test_a_view_made_before_the_run_id_index_gets_it_when_opened(
    open_view: Callable[..., StatusView],
) -> None:
    first = open_view()
    first.apply(entries(a_day()))
    with first.engine.begin() as conn:
        conn.execute(text("DROP INDEX runs_by_id"))
    assert "runs_by_id" not in _index_names(first)
    first.close()
    again = open_view(first.url)
    assert "runs_by_id" in _index_names(again)
    assert {s.name: s for s in again.jobs()} == fold(job_events(a_day()))
    open_view(first.url)  # and opening it once more changes nothing


def _index_names(v: StatusView) -> set[str]:
    return {str(i["name"]) for i in inspect(v.engine).get_indexes("runs")}


def test_driver_statements_refuse_columns_that_need_processing() -> None:
    """Rows go to the driver as they are: a column whose type SQLAlchemy must convert on the
    way in (a DateTime on SQLite, stored as text) cannot take that path."""
    stamped = Table("stamped", MetaData(), Column("at", DateTime))
    with pytest.raises(TypeError, match="at: DATETIME needs bind processing"):
        driver_statement(insert(stamped), sqlite.dialect())
    made = driver_statement(INSERT["commands"], sqlite.dialect())
    assert made.columns == tuple(c.name for c in t.commands.columns)
    assert driver_statement(INSERT["commands"], sqlite.dialect()) is made  # compiled once
