"""Pull consumers: how big the next fetch is.

(The one consumer helper, create, bind, the fetch loop and its error translation, comes
here too.)
"""

from __future__ import annotations

from collections.abc import Sequence

from nats.aio.msg import Msg

__all__ = ["next_fetch_size"]


def next_fetch_size(msgs: Sequence[Msg], batch: int) -> int:
    """How many messages a consumer's next ``fetch`` should ask for: ``batch`` while the
    consumer has a backlog (the last message says how many are still pending), else one.

    nats-py's fetch of more than one first probes for what is there (a request and its "no
    messages" reply) and only then waits; a fetch of one is a single waiting request.  A
    caught-up projector or worker thus waits for the next event at the cost of one request
    instead of three, and a backlog is still taken ``batch`` at a time.
    """
    if msgs and msgs[-1].metadata.num_pending:
        return batch
    return 1
