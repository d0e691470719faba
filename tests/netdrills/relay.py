"""A transparent TCP relay that delays every byte, for the loss-and-delay drill.

This kernel has no ``netem`` qdisc (and ``tc`` has no classifier or action that delays), so
delay is made in user space, on the worker's own host: an iptables ``REDIRECT`` in the
worker's namespace sends its new connections to the NATS nodes to this relay, which reads the
original destination (``SO_ORIGINAL_DST``), dials it with a firewall mark (so its own
connection is not redirected again) and copies both directions, each chunk held back
``--delay`` seconds and order kept.  TLS is end to end: the relay sees only ciphertext and
the worker still checks the node's certificate against the address it dialled.

Packet loss is not made here: it is real (iptables ``statistic`` drops on the worker's
host), so TCP retransmits on the relay's upstream connections as it would on a lossy link.

    python -m netdrills.relay --port 15000 --delay 0.1 --mark 7
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct

SO_ORIGINAL_DST = 80


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while data := await reader.read(65536):
            await queue.put((loop.time() + delay, data))
        await queue.put((loop.time() + delay, b""))

    async def write() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(read())
            tg.create_task(write())
    except* (OSError, asyncio.IncompleteReadError):
        pass


async def _handle(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, delay: float, mark: int
) -> None:
    sock = client_w.get_extra_info("socket")
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    host = socket.inet_ntoa(packed)
    upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    upstream.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(upstream, (host, port)), 10)
        up_r, up_w = await asyncio.open_connection(sock=upstream)
    except (OSError, TimeoutError):
        upstream.close()
        client_w.close()
        return
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_pipe(client_r, up_w, delay))
            tg.create_task(_pipe(up_r, client_w, delay))
    finally:
        for w in (up_w, client_w):
            w.close()


async def serve(port: int, delay: float, mark: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, delay, mark), "127.0.0.1", port, reuse_address=True
    )
    print(f"relay on 127.0.0.1:{port}, delay {delay:g}s each way", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m netdrills.relay")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, required=True)
    parser.add_argument("--mark", type=int, default=7)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.delay, args.mark))


if __name__ == "__main__":
    main()
