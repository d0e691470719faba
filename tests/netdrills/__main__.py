"""``python -m netdrills [NAME ...]`` (what ``scripts/drills`` runs): make the hosts, start
the site, run the drills (all six by default), print their table, clean everything up.

Exit status 0 if every drill passed, 1 if any lost or doubled something or failed a check,
2 if the drills cannot run here (not root, no iproute2), 130 on Ctrl-C (after cleaning up).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from netdrills.drills import DRILLS, Drills, Row, table
from netdrills.fleet import DrillFailure, Fleet
from netdrills.hosts import Net, NetError, missing_tools


def _log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%SZ', time.gmtime())} {text}", file=sys.stderr, flush=True)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(names: list[str], duration: float, root: Path) -> list[Row]:
    """Run ``names`` on a fresh site under ``root``; always removes the hosts."""
    with Net() as net:
        _log(f"hosts: namespaces {net.run}-*, logs in {root}")
        fleet = Fleet(net, root)
        try:
            fleet.start()
            _log("site up: 3 nodes, manager, w1, w2")
            drills = Drills(fleet, duration, log=_log)
            return [drills.run(name) for name in names]
        finally:
            fleet.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/drills", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(DRILLS)}")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds each fault lasts (default 60)"
    )
    parser.add_argument("--dir", type=Path, help="keep configs and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in DRILLS]
    if unknown:
        parser.error(f"unknown drill {unknown[0]!r}: choose from {', '.join(DRILLS)}")
    why = missing_tools()
    if why:
        print(f"drills cannot run here: {why}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    names = args.names or list(DRILLS)
    try:
        if args.dir:
            args.dir.mkdir(parents=True, exist_ok=True)
            rows = run(names, args.duration, args.dir)
        else:
            with tempfile.TemporaryDirectory(prefix="mirrorbus-drills-") as tmp:
                rows = run(names, args.duration, Path(tmp))
    except KeyboardInterrupt:
        _log("interrupted; hosts and processes removed")
        return 130
    except (NetError, DrillFailure) as exc:
        print(f"drills: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
