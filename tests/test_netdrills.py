"""The network fault drills (``scripts/drills``), shortened, and the proof that they clean up.

Real everything: network namespaces joined by a bridge in a namespace of its own, a
three-node nats-server cluster (streams of three replicas), ``mirrorbus manager``, two
``mirrorbus worker`` processes and ``mirrorbus ctl``, each on its own host; faults made with
the bridge ports, iptables and a delaying relay (see :mod:`netdrills`).  Each drill's fault
lasts ``MIRRORBUS_DRILL_SECONDS`` (default 8 s; ``scripts/drills`` runs the full 60 s).

Needs root, iproute2 and iptables (``scripts/test`` installs the last two when run as root);
skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import wait_for
from netdrills.drills import DRILLS, Drills, table
from netdrills.fleet import Fleet
from netdrills.hosts import PREFIX, Net, missing_tools, netns_names, sweep_stale

pytestmark = pytest.mark.e2e

WHY_NOT = missing_tools()
needs_namespaces = pytest.mark.skipif(
    WHY_NOT is not None, reason=f"network fault drills skipped: {WHY_NOT}"
)
SECONDS = float(os.environ.get("MIRRORBUS_DRILL_SECONDS", "8"))
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def drills(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drills]:
    with Net() as net:
        fleet = Fleet(net, tmp_path_factory.mktemp("netdrills"))
        try:
            fleet.start()
            yield Drills(fleet, SECONDS, log=lambda text: print(text, flush=True))
        finally:
            fleet.close()


@needs_namespaces
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", DRILLS)
def test_drill_loses_and_doubles_nothing(drills: Drills, name: str) -> None:
    row = drills.run(name)
    print(table([row]))
    assert row.ok, table([row])
    assert row.appended == row.in_view > 0
    assert row.converge is not None
    if name == "command-expiry":
        assert row.commands == "1/1"  # the valid one run once, the stale one answered expired


def _leftovers(run: str, root: Path) -> list[str]:
    """Namespaces of ``run`` and processes whose command line mentions ``root``."""
    found = [ns for ns in netns_names() if ns.startswith(f"{run}-")]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(root) in cmdline and int(proc.name) != os.getpid():
                found.append(f"pid {proc.name}: {cmdline.replace(chr(0), ' ')[:120]}")
    return found


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip() for line in out.stdout.splitlines()}


def _start_runner(root: Path) -> tuple[subprocess.Popen[str], str]:
    """``python -m netdrills cut-worker`` with a long fault, returned once the fault is on."""
    log = root / "runner.log"
    with open(log, "w") as out:
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "netdrills",
                "--duration",
                "120",
                "--dir",
                str(root / "run"),
                "cut-worker",
            ],
            cwd=TESTS,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    wait_for(lambda: "fault on" in log.read_text() or runner.poll() is not None, 120, "the fault")
    assert runner.poll() is None, log.read_text()
    return runner, f"{PREFIX}{runner.pid}"


@needs_namespaces
@pytest.mark.timeout(240)
def test_an_interrupted_drill_leaves_nothing_behind(tmp_path: Path) -> None:
    links = _links()
    runner, run = _start_runner(tmp_path)
    assert len([ns for ns in netns_names() if ns.startswith(f"{run}-")]) == 8
    assert _leftovers(run, tmp_path)  # the site's processes run

    runner.send_signal(signal.SIGINT)  # Ctrl-C in the middle of a cut
    assert runner.wait(90) == 130
    assert "interrupted; hosts and processes removed" in (tmp_path / "runner.log").read_text()
    assert _leftovers(run, tmp_path) == []
    assert _links() == links  # nothing was ever added to the machine's own namespace


@needs_namespaces
@pytest.mark.timeout(240)
def test_a_killed_run_is_swept_by_the_next(tmp_path: Path) -> None:
    runner, run = _start_runner(tmp_path)
    runner.kill()  # SIGKILL: no cleanup at all; its hosts and processes stay
    runner.wait(10)
    assert _leftovers(run, tmp_path)
    swept = sweep_stale()  # what the next run does first
    assert set(swept) >= {f"{run}-br", f"{run}-w1", f"{run}-n1"}
    assert _leftovers(run, tmp_path) == []
