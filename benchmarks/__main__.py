"""``python -m benchmarks [--quick]``: run every scenario against its same-run baseline and
print one table (see ``BENCHMARKS.md``)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio

from benchmarks import append, ctl, footprint, freshness, ingest, latency, restore, scheduler
from benchmarks.harness import Row, Stack, make_pki, stack, table
from benchmarks.machine import describe


@dataclass(frozen=True, slots=True)
class Sizes:
    ingest: int = 200_000
    append: int = 50_000
    commands: int = 500
    jobs: int = 10_000
    restore_jobs: int = 10_000
    restore_runs: int = 100
    rebuild: int = 1_000_000
    footprint: int = 10_000
    ctl_runs: int = 9
    freshness_runs: int = 300


FULL = Sizes()
QUICK = Sizes(
    ingest=50_000,
    append=10_000,
    commands=500,
    jobs=2_000,
    restore_jobs=2_000,
    restore_runs=20,
    rebuild=0,
    footprint=2_000,
    ctl_runs=7,
    freshness_runs=200,
)
GROWTH_JOBS = (100, 1_000, 10_000)
GROWTH_RUNS = 10


async def run(sizes: Sizes, only: set[str], root: Path, growth: Path | None) -> list[Row]:
    pki_dir = make_pki(root)
    rows: list[Row] = []

    async def scenario(name: str, body: Callable[[Stack], Awaitable[list[Row]]]) -> None:
        if only and name not in only:
            return
        started = time.monotonic()
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        with stack(root, pki_dir, name) as st:
            got = await body(st)
        rows.extend(got)
        for r in got:
            print(f"   {r.figure}: {r.value:,.2f} {r.unit}", file=sys.stderr)
        print(f"   ({time.monotonic() - started:.1f}s)", file=sys.stderr, flush=True)

    async def one(coro: Awaitable[Row]) -> list[Row]:
        return [await coro]

    await scenario("ingest", lambda st: one(ingest.ingest(st, sizes.ingest, FULL.ingest)))
    await scenario("append", lambda st: one(append.append(st, sizes.append)))
    await scenario("control", lambda st: latency.latency(st, sizes.commands, FULL.commands))
    await scenario("scheduler", lambda st: scheduler.scheduler(st, sizes.jobs, FULL.jobs))
    await scenario(
        "restore",
        lambda st: one(
            restore.restore_row(
                st,
                sizes.restore_jobs,
                sizes.restore_runs,
                (FULL.restore_jobs, FULL.restore_runs),
            )
        ),
    )
    if sizes.rebuild:
        await scenario("rebuild", lambda st: one(ingest.rebuild(st, sizes.rebuild)))
    await scenario("footprint", lambda st: footprint.footprint(st, sizes.footprint, FULL.footprint))

    async def whole(name: str, body: Callable[[Path], Awaitable[list[Row]]]) -> None:
        """A scenario of whole processes against a `mirrorbus up` of its own (no stack)."""
        if only and name not in only:
            return
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        (root / name).mkdir()
        got = await body(root / name)
        rows.extend(got)
        for r in got:
            print(f"   {r.figure}: {r.value:,.2f} {r.unit}", file=sys.stderr)
        print(f"   ({time.monotonic() - started:.1f}s)", file=sys.stderr, flush=True)

    await whole("ctl", lambda d: anyio.to_thread.run_sync(ctl.ctl, d, sizes.ctl_runs))
    await whole("freshness", lambda d: freshness.freshness(d, sizes.freshness_runs))
    if growth is not None:
        from benchmarks import plot

        await plot.growth(root, pki_dir, GROWTH_JOBS, GROWTH_RUNS, growth)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under two minutes")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="run only this scenario (ingest, append, control, scheduler, restore, rebuild, "
        "footprint, ctl, freshness; growth with --plot); repeatable",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG", help="also measure cost vs jobs and plot it here"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        # Checked now: the plot is drawn after every scenario has run, many minutes later.
        parser.error("--plot needs matplotlib: pip install -e '.[bench]'")
    # nats-py closes TLS connections in a way asyncio comments on ("returning true from
    # eof_received() has no effect when using ssl"); harmless, and it would bury the table.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    sizes = QUICK if args.quick else FULL
    rows: list[Row] = []
    started = time.monotonic()
    print(describe(), file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mirrorbus-bench-") as tmp:
        try:
            rows = anyio.run(run, sizes, set(args.only), Path(tmp), args.plot)
        except KeyboardInterrupt:
            print("interrupted: every server and process started was stopped", file=sys.stderr)
            return 130
    print(
        f"\n{'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f}s, "
        f"Python {platform.python_version()}\n"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 1 if any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
