"""Scenario ``ctl``: what a person feels at the terminal, and what each daemon holds.

Against a real ``mirrorbus up`` (nats-server with TLS, a manager, a worker with 100 ``true``
jobs), whole processes are timed as an operator runs them: ``mirrorbus ctl list --all``,
``mirrorbus ctl start`` (answered by the real worker), ``mirrorbus --help`` and
``mirrorbus ctl --help``.  Each is compared with the **floor**: a few lines of Python that
import nats-py, connect with the admin certificate over TLS, make one round trip and exit,
which is what any client of the bus must at least do.  The floor and the command alternate,
``runs`` times each, and the medians are compared (wall time; peak RSS from ``wait4``).

The same run reads the peak RSS (``VmHWM``) of the three long-running processes of ``up``
after every job has run once, against the floor's: the supervisor only starts and watches
processes, the worker runs the jobs, the manager keeps the view.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import Row, judged, median, write_worker_config
from mirrorbus.host.server import free_port

WORKER = "feel"
JOBS = 100

FLOOR = """\
import asyncio, ssl, sys
import nats

async def main():
    pki, url = sys.argv[1], sys.argv[2]
    ctx = ssl.create_default_context(cafile=f"{pki}/ca.crt")
    ctx.load_cert_chain(f"{pki}/admin.crt", f"{pki}/admin.key")
    nc = await nats.connect(url, tls=ctx)
    await nc.flush()  # one round trip
    await nc.close()

asyncio.run(main())
"""


# Runs a module (``-m NAME``) or a script as ``python`` would, and writes its own peak RSS
# (VmHWM) to $BENCH_HWM at exit.  Measured inside, because a child's ``ru_maxrss`` from
# ``wait4`` keeps the high-water mark of the (large) benchmark process it was forked from.
LAUNCH = """\
import atexit, os, runpy, sys
def hwm():
    with open("/proc/self/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    with open(os.environ["BENCH_HWM"], "w") as out:
        out.write(str(kb))
atexit.register(hwm)
if sys.argv[1] == "-m":
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run ``python ARGS`` (``argv`` without the interpreter) to its end: wall seconds, peak
    RSS in MiB, exit status and output."""
    hwm = Path(env["BENCH_TMP"]) / "hwm"
    hwm.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH, *argv],
        env={**env, "BENCH_HWM": str(hwm)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    wall = time.monotonic() - started
    rss = int(hwm.read_text()) / 1024 if hwm.exists() else float("nan")
    return wall, rss, proc.returncode, proc.stdout.decode(errors="replace")


def vm_hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def _children(state: Path) -> dict[str, int]:
    """pid of the supervisor's manager and worker (from /proc, by their command lines)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if (
            len(args) > 3
            and args[1:3] == ["-m", "mirrorbus"]
            and args[3] in ("manager", "worker")
            and str(state) in " ".join(args)
        ):
            found[args[3]] = int(proc.name)
    return found


@contextlib.contextmanager
def up(
    root: Path, config: Path | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Path, dict[str, str]]]:
    """A ``mirrorbus up`` of ``config`` (default: ``JOBS`` jobs running ``true``), stopped
    (SIGTERM) at the end."""
    if config is None:
        config = write_worker_config(root, WORKER, JOBS, concurrent=16)
    state = root / "state"
    out = root / "up.out"
    env = {k: v for k, v in os.environ.items() if k != "MIRRORBUS_STATE_DIR"}
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "mirrorbus", "up", "-c", str(config)),
                *("--state-dir", str(state), "--port", str(free_port())),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C stops everything" not in out.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mirrorbus up did not start:\n{out.read_text()[-2000:]}")
            time.sleep(0.1)
        yield proc, state, {**env, "MIRRORBUS_STATE_DIR": str(state)}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _all_ran(env: dict[str, str], mirrorbus: list[str]) -> bool:
    _, _, code, out = run_measured([*mirrorbus, "ctl", "list", "--all", "--json"], env)
    if code != 0:
        return False
    return sum(item["status"] == "success" for item in json.loads(out)) >= JOBS


def ctl(root: Path, runs: int) -> list[Row]:
    floor_script = root / "floor.py"
    floor_script.write_text(FLOOR)
    mirrorbus = ["-m", "mirrorbus"]
    with up(root) as (proc, state, up_env):
        env = {**up_env, "BENCH_TMP": str(root)}
        deadline = time.monotonic() + 300
        while not _all_ran(env, mirrorbus):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {JOBS} jobs did not all succeed within 300 s")
            time.sleep(1.0)
        url = f"tls://127.0.0.1:{_port(state)}"
        floor = [str(floor_script), str(state / "pki"), url]
        commands = {
            "ctl list --all": [*mirrorbus, "ctl", "list", "--all"],
            "ctl start": [*mirrorbus, "ctl", "start", "-w", WORKER, "job00000"],
            "mirrorbus --help": [*mirrorbus, "--help"],
            "ctl --help": [*mirrorbus, "ctl", "--help"],
        }
        floor_wall: list[float] = []
        floor_rss: list[float] = []
        walls: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                w, m, code, out = run_measured(floor, env)
                if code != 0:
                    raise RuntimeError(f"the floor script failed:\n{out[-2000:]}")
                floor_wall.append(w)
                floor_rss.append(m)
                w, m, code, out = run_measured(argv, env)
                if code != 0:
                    raise RuntimeError(f"{name} failed ({code}):\n{out[-2000:]}")
                walls[name].append(w)
                rss[name].append(m)
        children = _children(state)
        daemons = {
            "up supervisor": vm_hwm_mib(proc.pid),
            "worker": vm_hwm_mib(children["worker"]),
            "manager": vm_hwm_mib(children["manager"]),
        }
    fw, fm = median(floor_wall), median(floor_rss)
    note = f"median of {runs}, alternating with the floor (python + nats-py + TLS + 1 round trip)"
    rows: list[Row] = []
    for name in commands:
        connects = "help" not in name
        limit = 1.3 if connects else 1.0
        rows.append(
            judged(
                Row(
                    "8 ctl",
                    f"{name}: wall",
                    median(walls[name]) * 1000,
                    fw * 1000,
                    "ms",
                    target=f"≤ {limit}× floor",
                    note=note,
                    higher_is_better=False,
                ),
                at_most=limit,
            )
        )
        if connects:
            rows.append(
                judged(
                    Row(
                        "8 ctl",
                        f"{name}: peak RSS",
                        median(rss[name]),
                        fm,
                        "MiB",
                        target="≤ 1.3× floor",
                        note=note,
                        higher_is_better=False,
                    ),
                    at_most=1.3,
                )
            )
    limits = {"up supervisor": 1.0, "worker": 1.5, "manager": 2.0}
    for name, value in daemons.items():
        rows.append(
            judged(
                Row(
                    "8 footprint",
                    f"{name}, {JOBS} jobs (peak RSS)",
                    value,
                    fm,
                    "MiB",
                    target=f"≤ {limits[name]}× floor",
                    note="VmHWM after every job ran once; baseline: the floor script's peak RSS",
                    higher_is_better=False,
                ),
                at_most=limits[name],
            )
        )
    return rows


def _port(state: Path) -> int:
    return int(json.loads((state / "instance.json").read_text())["port"])
