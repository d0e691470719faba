"""How cost grows with the number of jobs: scheduler starts/s and restore time at
100, 1,000 and 10,000 jobs, measured on fresh servers and drawn into one PNG.

Needs matplotlib (``pip install mirrorbus[bench]``); the table does not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import restore, scheduler
from benchmarks.harness import make_pki, stack


async def growth(
    root: Path, pki_dir: Path | None, sizes: Sequence[int], runs: int, png: Path
) -> None:
    pki_dir = pki_dir or make_pki(root)
    data: dict[str, list[float]] = {
        "jobs": [float(n) for n in sizes],
        "worker_starts_per_s": [],
        "plain_starts_per_s": [],
        "restore_1_run_s": [],
        f"restore_{runs}_runs_s": [],
    }
    for n in sizes:
        print(f"-- growth: {n:,} jobs", file=sys.stderr, flush=True)
        with stack(root, pki_dir, f"growth-sched-{n}") as st:
            got = await scheduler.measure(st, n)
            rate, base = got.worker, got.plain
        with stack(root, pki_dir, f"growth-restore-{n}") as st:
            long_s, short_s, _ = await restore.restore_times(st, n, (1, runs))
        data["worker_starts_per_s"].append(rate)
        data["plain_starts_per_s"].append(base)
        data["restore_1_run_s"].append(short_s)
        data[f"restore_{runs}_runs_s"].append(long_s)
        print(
            f"   {json.dumps({k: v[-1] for k, v in data.items() if k != 'jobs'})}", file=sys.stderr
        )
    png.with_suffix(".json").write_text(json.dumps(data, indent=2))
    draw(data, runs, png)


def draw(data: dict[str, list[float]], runs: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = data["jobs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(jobs, data["worker_starts_per_s"], "o-", label="mirrorbus worker")
    left.plot(jobs, data["plain_starts_per_s"], "s--", label="plain loop (baseline)")
    left.axhline(0.2, color="grey", linestyle=":", label="tunasync design (0.2/s)")
    left.set(xscale="log", yscale="log", xlabel="jobs due at once", ylabel="job starts per second")
    left.set_title("Scheduler: `true` jobs, concurrent = 64")
    left.legend()
    right.plot(jobs, [s * 1000 for s in data["restore_1_run_s"]], "o-", label="1 past run per job")
    right.plot(
        jobs,
        [s * 1000 for s in data[f"restore_{runs}_runs_s"]],
        "s--",
        label=f"{runs} past runs per job",
    )
    right.set(xscale="log", yscale="log", xlabel="jobs", ylabel="restore time (ms)")
    right.set_title("Worker restore (snapshot + tail)")
    right.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    path = Path(sys.argv[1])
    values = json.loads(path.read_text())
    n = next(int(k.split("_")[1]) for k in values if k.startswith("restore_") and "runs" in k)
    draw(values, n, path.with_suffix(".png"))
