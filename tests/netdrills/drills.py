"""The six drills: a fault for a while, a heal, then exact counts and the invariants.

Every drill runs on the same :class:`~netdrills.fleet.Fleet` (each worker's ``tick`` job runs
every 0.6 s throughout) and ends the same way: the ``tick`` jobs are paused with ``ctl stop``,
the view reaches the stream's last sequence, and then, for the whole history so far:

* every run a job's script made (a line in its ``runs`` file) is in the view exactly once,
  closed, and its events are in the log in order (``job.run-started`` first, each run started
  after the one before);
* no event id is twice in the log; the view has applied every event (position == last
  sequence), set none aside as a dead letter, and equals a rebuild from the log.

Then the jobs are started again for the next drill.  ``duration`` is how long the fault lasts
(the issue's figure is 60 s; the test suite runs them shorter).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from netdrills.fleet import CMD_JOBS, TICK, DrillFailure, Fleet, wait_for
from netdrills.hosts import Host

DRILLS = (
    "cut-worker",
    "cut-manager",
    "leader-minority",
    "command-expiry",
    "loss-delay",
    "flap",
    "silent-node",
)
MOVE_WITHIN = 45.0
"""Seconds a client may stay on a node that went silent (it PINGs every 5 s and gives up
after 3 unanswered)."""
LOSS = 0.20
DELAY = 0.100
"""Added to each direction of the workers' connections (200 ms per round trip)."""


@dataclass
class Row:
    drill: str
    fault: str = ""
    appended: int = 0
    """Events the cluster acknowledged during the drill (the stream's last sequence, after
    minus before)."""
    in_view: int = 0
    """Events the view applied during the drill (its position, after minus before)."""
    duplicates: int = 0
    lost: int = 0
    commands: str = "-"
    converge: float | None = None
    """Seconds from the heal until the view held every run made and event stored before it."""
    note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.duplicates == 0 and self.lost == 0

    @property
    def result(self) -> str:
        return "PASS" if self.ok else "FAIL"


HEADERS = (
    "DRILL",
    "FAULT",
    "APPENDED",
    "IN VIEW",
    "DUPLICATES",
    "LOST",
    "CMDS EXEC/EXPIRED",
    "CONVERGED",
    "RESULT",
)


def table(rows: list[Row]) -> str:
    cells = [
        [
            r.drill,
            r.fault,
            str(r.appended),
            str(r.in_view),
            str(r.duplicates),
            str(r.lost),
            r.commands,
            "-" if r.converge is None else f"{r.converge:.1f}s",
            r.result,
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells
    ]
    for r in rows:
        if r.note:
            lines.append(f"  {r.drill}: {r.note}")
        for p in r.problems:
            lines.append(f"  {r.drill}: PROBLEM: {p}")
    return "\n".join(lines)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Drills:
    def __init__(self, fleet: Fleet, duration: float, log: Callable[[str], None] = print) -> None:
        self.fleet = fleet
        self.net = fleet.net
        self.duration = duration
        self.log = log
        self.w1 = fleet.workers["w1"]
        self.w2 = fleet.workers["w2"]

    # -- shared steps ------------------------------------------------------------------------
    def stream(self) -> dict[str, Any]:
        def ask() -> dict[str, Any] | None:
            info = self.fleet.probe("stream")
            return info if "last_seq" in info else None

        return wait_for(ask, 60, "the event stream's info")

    def made(self) -> dict[str, int]:
        return {w: self.fleet.runs_made(w, TICK) for w in self.fleet.workers}

    def hold(
        self, seconds: float, during: Callable[[], None] | None = None, *, quiet: bool = False
    ) -> None:
        """Let the fault last ``seconds``; check the site's processes (and ``during``) as it
        does."""
        if not quiet:
            self.log(f"fault on for {seconds:g}s")
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.fleet.check_running()
            if during is not None:
                during()
            time.sleep(min(0.5, max(left, 0)))

    def heal_and_converge(self, row: Row, made: dict[str, int], last_seq: int) -> None:
        """Heal, then time how long until the view holds the runs made (``made``) and the
        events stored (``last_seq``) before the heal."""
        self.net.heal()
        healed = time.monotonic()
        self.log(f"{row.drill}: healed")

        def caught_up() -> bool:
            v = self.fleet.view
            return v.position() >= last_seq and all(
                len({r.run_id for r in self.fleet.runs_in_view(w, TICK)}) >= n
                for w, n in made.items()
            )

        wait_for(caught_up, max(120, self.duration * 2), "the view to catch up after the heal")
        row.converge = time.monotonic() - healed

    def settle(self) -> None:
        """Pause the tick jobs and wait until the view has every event of the log."""
        for w in self.fleet.workers:
            out = self.fleet.ctl("--timeout", "30", "stop", "-w", w, TICK)
            if out.returncode != 0:
                raise DrillFailure(f"ctl stop -w {w} {TICK}: {out.stderr.strip()}")
        for w in self.fleet.workers:
            self.fleet.wait_status(w, TICK, "paused", 60)
        last = self.stream()["last_seq"]
        wait_for(
            lambda: self.fleet.view.position() >= last, 60, f"the view to reach sequence {last}"
        )

    def resume(self) -> None:
        for w in self.fleet.workers:
            out = self.fleet.ctl("--timeout", "30", "start", "-w", w, TICK)
            if out.returncode != 0:
                raise DrillFailure(f"ctl start -w {w} {TICK}: {out.stderr.strip()}")

    def check(self, row: Row, before_seq: int) -> list[dict[str, Any]]:
        """Settle, count exactly and check the invariants; fills ``row``; returns the log."""
        self.settle()
        f = self.fleet
        last = self.stream()["last_seq"]
        position = f.view.position()
        row.appended = last - before_seq
        row.in_view = position - before_seq
        events = f.events()
        if len(events) != last:
            row.problems.append(f"ctl events gave {len(events)} events, the stream has {last}")
        ids = Counter(e["event"].get("id") for e in events)
        row.duplicates += sum(n - 1 for n in ids.values() if n > 1)
        row.lost += max(0, last - position)
        dead = f.view.dead_letters()
        if dead:
            row.problems.append(f"{len(dead)} dead letters, first {dead[0]}")

        # Runs: the log's order, then the view's count against the script's.
        started: dict[tuple[str, str], list[str]] = defaultdict(list)
        last_at: dict[tuple[str, str], datetime] = {}
        opened: set[str] = set()
        for e in events:
            ev = e["event"]
            key = (ev.get("worker", ""), ev.get("job", ""))
            run = ev.get("run_id")
            if ev["type"] == "job.run-started":
                at = _at(ev["at"])
                if key in last_at and at < last_at[key]:
                    row.problems.append(f"{key[0]}/{key[1]} run {run} logged out of order")
                last_at[key] = at
                started[key].append(run)
                opened.add(run)
            elif run is not None and run not in opened:
                row.problems.append(f"{ev['type']} of run {run} before its job.run-started")
        killed = 0
        for w in f.workers:
            for job in (TICK, *(CMD_JOBS if w == "w1" else ())):
                made = f.run_ids_made(w, job)
                runs = f.runs_in_view(w, job)
                in_view = Counter(r.run_id for r in runs)
                logged = started.get((w, job), [])
                doubled = {
                    r for c in (in_view, Counter(logged), Counter(made)) for r in c if c[r] > 1
                }
                row.duplicates += len(doubled)
                row.lost += len(set(made) - set(in_view))
                if set(in_view) != set(logged):
                    row.problems.append(f"{w}/{job}: the view's runs are not the log's runs")
                # A run stopped by `ctl stop` before its script began is in the view (failed)
                # but not in the runs file; any other run the file does not know is an extra.
                for r in runs:
                    if r.run_id not in made:
                        if r.result == "failed":
                            killed += 1
                        else:
                            row.problems.append(f"{w}/{job}: run {r.run_id} never ran")
                open_runs = [r.run_id for r in runs if r.ended_at is None]
                if open_runs:
                    row.problems.append(f"{w}/{job}: {len(open_runs)} runs never closed")
        if killed:
            row.note += f" ({killed} runs stopped by the pause before their script began)"
        if not f.rebuild_equals_view(row.drill):
            row.problems.append("the view differs from a rebuild from the log")
        return events

    def run(self, name: str) -> Row:
        """Run drill ``name``; its row (a failure is a row with the reason, not an error)."""
        row = Row(drill=name)
        self.log(f"{name}: start")
        start = time.monotonic()
        try:
            before = self.stream()["last_seq"]
            wait_for(
                lambda: self.fleet.view.position() >= before, 60, f"the view at sequence {before}"
            )
            getattr(self, "drill_" + name.replace("-", "_"))(row)
            self.check(row, before)
        except DrillFailure as exc:
            row.problems.append(str(exc))
        finally:
            if self.net.faulty:
                self.net.heal()
            for key in [k for k in self.net.procs if k.startswith("relay-")]:
                self.net.stop(key)
        try:
            self.resume()  # also after a failure: the next drill needs the jobs running
        except DrillFailure as exc:
            row.problems.append(str(exc))
        self.log(f"{name}: {row.result} in {time.monotonic() - start:.0f}s")
        if not row.ok:
            self._show_warnings()
        return row

    def _show_warnings(self, most: int = 12) -> None:
        """After a failed drill: the programs' last warnings and errors (the logs are gone
        with the temporary directory when a test fails in CI)."""
        for path in sorted(self.fleet.logs.glob("*.log")):
            lines = [
                line.rstrip()
                for line in path.read_text(errors="replace").splitlines()
                if any(m in line for m in ("[WARNING]", "[ERROR]", "[WRN]", "[ERR]", "Traceback"))
            ]
            if lines:
                self.log(f"{path.stem}: last warnings")
                for line in lines[-most:]:
                    self.log(f"  {line[:300]}")

    # -- the drills ----------------------------------------------------------------------------
    def _cut_and_heal(self, row: Row, host: Host, during: Callable[[], None] | None = None) -> None:
        self.net.cut(host)
        self.hold(self.duration, during)
        made, last = self.made(), self.stream()["last_seq"]
        self.heal_and_converge(row, made, last)

    def drill_cut_worker(self, row: Row) -> None:
        """w1 cut off from every node while its job keeps running."""
        row.fault = f"w1 cut off {self.duration:g}s"
        at_cut = self.fleet.runs_made("w1", TICK)
        self._cut_and_heal(row, self.w1)
        during = self.fleet.runs_made("w1", TICK) - at_cut
        row.note = f"w1 made {during} runs while cut off"
        if during < 2:
            row.problems.append(f"w1's job did not keep running while cut off ({during} runs)")

    def drill_cut_manager(self, row: Row) -> None:
        """The manager's host cut off: the log grows without it, the view catches up."""
        row.fault = f"manager cut off {self.duration:g}s"
        at_cut = self.stream()["last_seq"]
        self.net.cut(self.fleet.manager)
        self.hold(self.duration)
        made, last = self.made(), self.stream()["last_seq"]
        row.note = f"{last - at_cut} events stored while the manager was away"
        if last - at_cut < 4:
            row.problems.append("the workers did not keep appending while the manager was away")
        self.heal_and_converge(row, made, last)

    def drill_leader_minority(self, row: Row) -> None:
        """The event stream's leader and w1 on one side, the other nodes and the rest on the
        other: the majority elects a leader and w2's appends go on; after the heal, nothing
        acknowledged is lost and nothing doubled."""
        info = self.stream()
        leader = info["leader"]
        row.fault = f"leader {leader}+w1 split off {self.duration:g}s"
        minority = [self.fleet.nodes[leader], self.w1]
        majority = [h for h in self.net.hosts.values() if h not in minority]
        self.net.split(minority, majority)
        split_at = time.monotonic()
        self.log("fault on: split")
        w2_at_split = self.fleet.runs_made("w2", TICK)
        seq_at_split = info["last_seq"]

        def resumed() -> dict[str, Any] | None:
            self.fleet.check_running()
            s = self.fleet.probe("stream")
            ok = s.get("leader") not in (None, leader) and s["last_seq"] >= seq_at_split + 10
            return s if ok else None

        # w2 or the manager may be connected to the old leader: they move within MOVE_WITHIN.
        first = wait_for(resumed, MOVE_WITHIN + 15, "appends to continue on the majority", 1)
        took = time.monotonic() - split_at
        self.hold(max(0.0, self.duration - took), quiet=True)
        after = self.stream()
        appended = after["last_seq"] - seq_at_split
        w2_runs = self.fleet.runs_made("w2", TICK) - w2_at_split
        row.note = (
            f"leader {leader} -> {first['leader']}; appends went on after {took:.0f}s, "
            f"{appended} events appended on the majority during the split ({w2_runs} runs of w2)"
        )
        self.heal_and_converge(row, self.made(), after["last_seq"])
        wait_for(
            lambda: (
                (s := self.fleet.probe("stream")).get("peers")
                and all(s["peers"].values())
                and len(s["peers"]) == 2
            ),
            120,
            "all three replicas current again",
        )

    def drill_command_expiry(self, row: Row) -> None:
        """Two ``ctl start`` commands sent while w1 is cut off: one valid until long after the
        heal (run once after it), one whose expiry passes before it (answered "expired", not
        run)."""
        row.fault = f"w1 cut off {self.duration:g}s, 2 commands"
        f = self.fleet
        before = {j: f.runs_made("w1", j) for j in CMD_JOBS}
        first_seq = self.stream()["last_seq"]
        self.net.cut(self.w1)
        ttl = max(1.0, self.duration / 4)
        sent = {}
        for job, job_ttl in (("cmd-expired", ttl), ("cmd-valid", 3600.0)):
            out = f.ctl("--ttl", f"{job_ttl:g}", "--timeout", "1", "start", "-w", "w1", job)
            sent[job] = time.monotonic()
            if out.returncode == 0:
                row.problems.append(f"ctl start {job} answered while w1 was cut off")
            elif "no answer" not in out.stderr:
                row.problems.append(f"ctl start {job}: {out.stderr.strip()}")
        self.hold(max(0.0, self.duration - (time.monotonic() - sent["cmd-expired"])))
        if time.monotonic() - sent["cmd-expired"] <= ttl:
            raise DrillFailure("the cut ended before the short command's expiry")
        made, last = self.made(), self.stream()["last_seq"]
        self.heal_and_converge(row, made, last)

        def answers() -> dict[str, dict[str, Any]] | None:
            found = {
                e["event"]["job"]: e["event"]
                for e in f.events()[first_seq:]
                if e["event"]["type"] == "cmd.answered" and e["event"]["job"] in CMD_JOBS
            }
            return found if len(found) == len(CMD_JOBS) else None

        got = wait_for(answers, 60, "w1's answers to both commands")
        wait_for(
            lambda: f.runs_made("w1", "cmd-valid") > before["cmd-valid"], 60, "cmd-valid's run"
        )
        f.wait_status("w1", "cmd-valid", "success", 60)
        executed = f.runs_made("w1", "cmd-valid") - before["cmd-valid"]
        ran_expired = f.runs_made("w1", "cmd-expired") - before["cmd-expired"]
        expired = int(
            not got["cmd-expired"]["accepted"] and "expired" in got["cmd-expired"]["message"]
        )
        row.commands = f"{executed}/{expired}"
        row.note = (
            f"answers: cmd-valid accepted={got['cmd-valid']['accepted']}, "
            f"cmd-expired {got['cmd-expired']['message']!r}"
        )
        if not got["cmd-valid"]["accepted"]:
            row.problems.append(f"the valid command was refused: {got['cmd-valid']['message']}")
        if executed != 1:
            row.problems.append(f"the valid command ran {executed} times")
        if ran_expired or not expired:
            row.problems.append("the expired command was executed or not answered 'expired'")

    def _ctl_list(self, host: Host, errors: list[str] | None = None) -> float | None:
        t = time.monotonic()
        out = self.fleet.ctl("list", "--all", host=host, timeout=60)
        if out.returncode != 0:
            if errors is not None:
                errors.append(f"after {time.monotonic() - t:.1f}s: {out.stderr.strip()}")
            return None
        return time.monotonic() - t

    def drill_loss_delay(self, row: Row) -> None:
        """20% of the packets each worker sends to the nodes dropped, and 100 ms added to each
        direction (200 ms per round trip), for a period of normal operation: what ``tc netem
        loss 20% delay 200ms`` on the workers' interfaces would do.  ``ctl list`` from w1's
        host keeps answering."""
        row.fault = f"{LOSS:.0%} loss + {2 * DELAY * 1000:.0f}ms RTT {self.duration:g}s"
        base = [t for t in (self._ctl_list(self.w1) for _ in range(2)) if t is not None]
        nodes = list(self.fleet.nodes.values())
        for w in (self.w1, self.w2):
            self.net.lose(w, nodes, LOSS)
        self.fleet.delay_workers(DELAY)
        latencies: list[float | None] = []
        errors: list[str] = []
        next_ctl = [time.monotonic()]

        def during() -> None:
            if time.monotonic() >= next_ctl[0]:
                latencies.append(self._ctl_list(self.w1, errors))
                next_ctl[0] = time.monotonic() + 2

        made_before = self.made()
        self.hold(self.duration, during)
        made, last = self.made(), self.stream()["last_seq"]
        self.net.heal()
        self.fleet.undelay_workers()
        self.heal_and_converge(row, made, last)
        answered = [t for t in latencies if t is not None]
        runs = sum(made.values()) - sum(made_before.values())
        row.note = (
            f"{runs} runs during the fault; ctl list from w1 answered {len(answered)}/"
            f"{len(latencies)}, median {statistics.median(answered or [0]):.2f}s, max "
            f"{max(answered or [0]):.2f}s (without the fault: "
            f"{statistics.median(base or [0]):.2f}s; each includes starting the ctl)"
        )
        if len(answered) != len(latencies) or not latencies:
            row.problems.append(f"ctl list failed {len(errors)} times: {'; '.join(errors)}")

    def drill_flap(self, row: Row) -> None:
        """w1's link down 2 s, up 3 s, over and over."""
        row.fault = f"w1 flapping 2s/3s {self.duration:g}s"
        cycles = max(1, round(self.duration / 5))
        at = self.fleet.runs_made("w1", TICK)
        self.log(f"fault on: {cycles} cycles")
        for _ in range(cycles):
            self.net.cut(self.w1)
            self.hold(2, quiet=True)
            self.net.uncut(self.w1)
            self.hold(3, quiet=True)
        made, last = self.made(), self.stream()["last_seq"]
        self.heal_and_converge(row, made, last)
        row.note = f"{cycles} cycles, w1 made {self.fleet.runs_made('w1', TICK) - at} runs"

    def drill_silent_node(self, row: Row) -> None:
        """The manager and w2 each cut from the node they are connected to, and only from
        it (a silent partition: no RST, no ICMP): each moves to another node by itself, and
        the view keeps up while the cut lasts."""
        f = self.fleet
        hosts = {key: f.net.hosts[key] for key in ("mgr", "w2")}
        on = {}
        for key, host in hosts.items():
            nodes = f.connected_nodes(host)
            if len(nodes) != 1:
                raise DrillFailure(f"{key} is connected to {sorted(nodes)}, not to one node")
            on[key] = nodes.pop()
        row.fault = f"mgr-{on['mgr']}, w2-{on['w2']} cut {self.duration:g}s"
        for key, node in on.items():
            self.net.block(hosts[key], f.nodes[node])
        cut_at = time.monotonic()
        self.log("fault on: pair cuts")
        made = f.runs_made("w2", TICK)

        def moved() -> bool:
            self.fleet.check_running()
            return all(f.connected_nodes(h) - {on[k]} for k, h in hosts.items()) and (
                len({r.run_id for r in f.runs_in_view("w2", TICK)}) >= made + 3
            )

        wait_for(moved, MOVE_WITHIN, "the manager and w2 to leave their silent nodes", 0.5)
        took = time.monotonic() - cut_at
        row.note = f"both on another node and w2's new runs in the view {took:.0f}s after the cut"
        self.hold(max(0.0, self.duration - took), quiet=True)
        self.heal_and_converge(row, self.made(), self.stream()["last_seq"])
