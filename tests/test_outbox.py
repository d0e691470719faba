"""The durable outbox: while NATS is away the worker keeps its schedule and keeps its events
on disk in order; they are appended, de-duplicated, once the bus is back, also when the
worker was restarted in between.  Nothing is lost or doubled (TUNASYNC's status posts were
fire-and-forget)."""

from __future__ import annotations

from pathlib import Path

from e2e import Site, count_lines, wait_for
from test_e2e_worker import COUNTING_JOB

from mirrorbus.worker.outbox import Journal


def test_journal_keeps_events_in_order_until_removed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    journal = Journal(path)
    kept = [journal.append(f"s.{i}", f"id{i}", f"data{i}".encode()) for i in range(5)]
    journal.remove(kept[1])
    journal.close()
    again = Journal(path)  # a new process finds them
    assert [(i, s, d) for _, i, s, d in again.pending()] == [
        (f"id{i}", f"s.{i}", f"data{i}".encode()) for i in (0, 2, 3, 4)
    ]
    again.close()


def test_an_outage_with_a_worker_restart_loses_and_doubles_nothing(
    site: Site,
    nats_server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="tick", interval=0.01))
    runs = site.workdir("w1", "tick") / "runs"
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "tick", lambda j: j.status == "success")

    nats_server.server.stop()
    during = count_lines(runs)
    wait_for(lambda: count_lines(runs) >= during + 3, 30, "runs while NATS is down")
    assert site.stop("worker", timeout=60) == 0  # restarted during the outage
    outbox = site.root / "outbox" / "w1.db"
    assert Journal(outbox).pending()  # the unacknowledged events are on disk
    seen = len(site.output("worker"))
    site.start_worker(config, "worker", "--debug")  # --debug: it logs each failed connection
    wait_for(
        lambda: "NATS error" in site.output("worker")[seen:],
        30,
        "the restarted worker to try the bus",
    )
    nats_server.server.start()

    wait_for(lambda: not Journal(outbox).pending(), 60, "the kept events to be appended")
    wait_for(lambda: count_lines(runs) >= during + 6, 30, "runs after the outage")
    assert site.stop("worker") == 0
    total = count_lines(runs)
    wait_for(
        lambda: [w for w in site.view.workers() if not w.online],
        30,
        "the worker's stop to reach the view",
    )
    wait_for(lambda: len(site.runs("w1", "tick")) == total, 30, "every run in the view")
    history = site.runs("w1", "tick")
    assert len({r.run_id for r in history}) == total  # none twice
    # Each of the two stops may catch a run after it counted itself and end it as killed.
    assert sum(r.result == "success" for r in history) >= total - 2

    assert site.rebuild(tmp_path / "rebuilt.db") == site.view.dump()
