"""Request/reply beside the connection: who may be answered, and answers cut into parts.

:meth:`mirrorbus.bus.Bus.respond` cuts an answer too big for one message into parts (header
:data:`PART_HEADER`); :meth:`mirrorbus.bus.Bus.request_hedged` puts them together again with
:func:`next_answer`.  :func:`answerable` is the check every service makes before it answers.
"""

from __future__ import annotations

from anyio.streams.memory import MemoryObjectReceiveStream
from nats.aio.msg import Msg

from mirrorbus.errors import BusError

__all__ = ["HEDGE_FIRST_WAIT", "HEDGE_MAX_WAIT", "PART_HEADER", "PART_ROOM", "answerable"]

PART_HEADER = "Mirrorbus-Part"
"""Header of one part of an answer too big for one message: ``<answer id> <index> <count>``."""
PART_ROOM = 4096
"""Bytes of a message kept free for its headers when an answer is cut into parts."""

HEDGE_FIRST_WAIT = 0.25
"""Seconds a hedged request waits for an answer before it is sent again (see
:meth:`mirrorbus.bus.Bus.request_hedged`): well above a query's usual answer time, well below a
timeout."""
HEDGE_MAX_WAIT = 2.0


async def next_answer(
    receive: MemoryObjectReceiveStream[Msg], parts: dict[str, dict[int, bytes]], subject: str
) -> bytes:
    """The next whole answer among the messages on a request's inbox: a message, or the parts
    of one answer put together (parts of several answers may interleave when a hedged request
    was answered twice)."""
    while True:
        msg = await receive.receive()
        headers = msg.headers or {}
        if headers.get("Status") == "503":
            raise BusError(f"nobody answers on {subject}: is the manager running?")
        part = headers.get(PART_HEADER)
        if part is None:
            return bytes(msg.data)
        try:
            answer_id, index, count = part.split(" ")
            i, n = int(index), int(count)
        except ValueError:
            continue
        got = parts.setdefault(answer_id, {})
        got[i] = bytes(msg.data)
        if len(got) == n and all(k in got for k in range(n)):
            del parts[answer_id]
            return b"".join(got[k] for k in range(n))


def answerable(reply: str | None) -> bool:
    """Whether a service may answer on ``reply``: only an inbox (``_INBOX...``).

    The requester chooses the reply subject, and a service's user may publish there
    (``allow_responses``) whatever its own permissions say: answering a reply subject such
    as ``<prefix>.hb.<worker>`` or ``<prefix>.evt.<worker>.<job>`` would publish on the
    requester's behalf where it may not publish itself.
    """
    return reply is not None and reply.startswith("_INBOX")
