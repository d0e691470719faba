"""Scenario 7: peak memory (max RSS) of a worker and a manager with 10,000 jobs.

Each service runs in a child process (``python -m benchmarks.footprint ROLE ...``) that
reports its own peak RSS (``VmHWM``) as JSON on stdout when done:

* ``worker``: a real Worker with N ``true`` jobs, all due at start, until every one ran once;
* ``manager``: a real Manager on SQLite, until its view has caught up with the whole stream
  (the worker's events: N jobs configured, scheduled, run and rescheduled);
* ``bare``: the baseline, a Python process that imports mirrorbus and connects over TLS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import anyio

from benchmarks.harness import Row, Stack, wait_until, write_worker_config
from mirrorbus.bus import connect, settings_from_paths
from mirrorbus.events import Subjects

WORKER = "foot"


def _maxrss_mib() -> float:
    """Peak RSS of this process.  ``VmHWM``, not ``ru_maxrss``: the latter survives ``fork`` +
    ``exec`` and would report the (bigger) benchmark parent for a small child."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _child(role: str, url: str, pki_dir: Path, root: Path, jobs: int) -> float:
    from benchmarks.scheduler import run_worker
    from mirrorbus.manager.service import Manager
    from projections.status_view import StatusView

    stem = f"worker-{WORKER}" if role in ("worker", "bare") else "manager"
    inbox = Subjects.worker_inbox(WORKER) if stem.startswith("worker") else None
    bus = await connect(
        settings_from_paths([url], pki_dir, stem, inbox_prefix=inbox), reconnect=False
    )
    try:
        if role == "worker":
            config = write_worker_config(root, WORKER, jobs)
            await run_worker(bus, config, jobs, timeout=max(120.0, jobs / 10))
        elif role == "manager":
            view = StatusView(f"sqlite:///{root / 'footprint.db'}")
            manager = Manager(bus, view)
            last = await bus.last_sequence()
            async with anyio.create_task_group() as tg:
                await tg.start(manager.run)
                await wait_until(
                    lambda: manager.projector.position >= last, 600, "the manager's catch-up", 0.05
                )
                tg.cancel_scope.cancel()
            view.close()
    finally:
        await bus.close()
    return _maxrss_mib()


async def _spawn(st: Stack, role: str, jobs: int) -> float:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.footprint",
        role,
        "--url",
        st.url,
        "--pki",
        str(st.pki_dir),
        "--root",
        str(st.root),
        "--jobs",
        str(jobs),
    ]
    with anyio.fail_after(max(300.0, jobs / 5)):
        result = await anyio.run_process(argv, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"footprint {role} failed:\n{result.stderr.decode()[-2000:]}")
    return float(json.loads(result.stdout.decode().strip().splitlines()[-1])["maxrss_mib"])


async def footprint(st: Stack, jobs: int, full: int) -> list[Row]:
    await st.ensure_streams()
    bare = await _spawn(st, "bare", 0)
    worker = await _spawn(st, "worker", jobs)
    manager = await _spawn(st, "manager", jobs)
    note = "peak RSS (VmHWM) of a child process; baseline: python + mirrorbus + TLS connection"
    if jobs < full:
        note = f"quick: {jobs:,} of {full:,} jobs; " + note
    return [
        Row(
            "7 footprint",
            f"worker with {jobs:,} jobs (all ran once)",
            worker,
            bare,
            "MiB",
            note=note,
        ),
        Row("7 footprint", f"manager, view of {jobs:,} jobs", manager, bare, "MiB", note=note),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("worker", "manager", "bare"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    args = parser.parse_args()
    rss = anyio.run(_child, args.role, args.url, args.pki, args.root, args.jobs)
    print(json.dumps({"role": args.role, "maxrss_mib": rss}))


if __name__ == "__main__":
    main()
