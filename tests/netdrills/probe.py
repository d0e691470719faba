"""What the CLI does not show, asked of JetStream with the admin's certificate; one JSON
object on stdout.

    python -m netdrills.probe -c admin.toml jetstream   {"ok": true} once the cluster has a
                                                        meta leader (JetStream answers)
    python -m netdrills.probe -c admin.toml stream      the event stream: last_seq, leader,
                                                        peers (name -> current)

Run on the operator's host (``ip netns exec``): the drill's own process has no route to the
hosts' addresses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio

from mirrorbus.bus import connect
from mirrorbus.config.ctl import ctl_settings


async def ask(config: Path, what: str) -> dict[str, Any]:
    bus = await connect(ctl_settings(config), reconnect=False)
    try:
        if what == "jetstream":
            await bus.nc.jetstream(timeout=2).account_info()
            return {"ok": True}
        info = await bus.nc.jetstream(timeout=5).stream_info(bus.subjects.evt_stream)
        cluster = info.cluster
        return {
            "last_seq": int(info.state.last_seq),
            "leader": cluster.leader if cluster else None,
            "peers": {p.name: bool(p.current) for p in (cluster.replicas or [])} if cluster else {},
        }
    finally:
        await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m netdrills.probe")
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("what", choices=("jetstream", "stream"))
    args = parser.parse_args()
    print(json.dumps(anyio.run(ask, args.config, args.what, backend="asyncio")))


if __name__ == "__main__":
    main()
