"""The NATS edge: the only package of mirrorbus that imports nats-py.

It holds the connection with mutual TLS, the streams, requests and services
(``connection``, with ``requests`` for answers in parts and :func:`answerable`), the outbox's
pipelined appends (``appends``), the one pull-consumer helper (``consumer``), reading a stream
by sequence without a consumer (``logread``), the message type every caller gets
(``message``), keeping nats-py from loading aiohttp (``transport``), and the same bus in
memory for unit tests (``memory``, imported by tests only).  nats-py's errors become
:mod:`mirrorbus.errors` here, so the rest of the project catches ``BusError`` and its
subclasses only.

It may import :mod:`mirrorbus.events`, :mod:`mirrorbus.config`, :mod:`mirrorbus.errors` and
:mod:`mirrorbus.clock`; never the worker, the manager, the gateway or the CLI.

The names below load on first use: ``mirrorbus.bus.transport`` must be importable before
nats-py is, and ``mirrorbus --help`` imports no nats-py at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from mirrorbus.bus.appends import AppendPipeline
    from mirrorbus.bus.connection import (
        REPLAYED,
        Bus,
        StreamState,
        Subscription,
        certificate_identity,
        certificate_role,
        connect,
        replayed,
        tls_context,
    )
    from mirrorbus.bus.consumer import (
        ConsumerSpec,
        PullConsumer,
        consumer_created,
        delete_consumer,
        drop_legacy_consumers,
        ensure_command_consumer,
        make_consumer,
    )
    from mirrorbus.bus.logread import DEFAULT_MAX_BYTES, Batch, LogReader, Wakeup
    from mirrorbus.bus.message import Message, Stored, next_fetch_size
    from mirrorbus.bus.requests import answerable
    from mirrorbus.bus.transport import allow_aiohttp, without_websocket_transport
    from mirrorbus.config.bus import BusSettings, StreamSettings, settings_from_paths

__all__ = [
    "DEFAULT_MAX_BYTES",
    "REPLAYED",
    "AppendPipeline",
    "Batch",
    "Bus",
    "BusSettings",
    "ConsumerSpec",
    "LogReader",
    "Message",
    "PullConsumer",
    "Stored",
    "StreamSettings",
    "StreamState",
    "Subscription",
    "Wakeup",
    "allow_aiohttp",
    "answerable",
    "certificate_identity",
    "certificate_role",
    "connect",
    "consumer_created",
    "delete_consumer",
    "drop_legacy_consumers",
    "ensure_command_consumer",
    "make_consumer",
    "next_fetch_size",
    "replayed",
    "settings_from_paths",
    "tls_context",
    "without_websocket_transport",
]

_WHERE = {
    "AppendPipeline": "mirrorbus.bus.appends",
    "Bus": "mirrorbus.bus.connection",
    "certificate_identity": "mirrorbus.bus.connection",
    "certificate_role": "mirrorbus.bus.connection",
    "connect": "mirrorbus.bus.connection",
    "tls_context": "mirrorbus.bus.connection",
    "REPLAYED": "mirrorbus.bus.connection",
    "replayed": "mirrorbus.bus.connection",
    "StreamState": "mirrorbus.bus.connection",
    "Subscription": "mirrorbus.bus.connection",
    "ConsumerSpec": "mirrorbus.bus.consumer",
    "PullConsumer": "mirrorbus.bus.consumer",
    "consumer_created": "mirrorbus.bus.consumer",
    "delete_consumer": "mirrorbus.bus.consumer",
    "drop_legacy_consumers": "mirrorbus.bus.consumer",
    "ensure_command_consumer": "mirrorbus.bus.consumer",
    "make_consumer": "mirrorbus.bus.consumer",
    "DEFAULT_MAX_BYTES": "mirrorbus.bus.logread",
    "Batch": "mirrorbus.bus.logread",
    "LogReader": "mirrorbus.bus.logread",
    "Wakeup": "mirrorbus.bus.logread",
    "Message": "mirrorbus.bus.message",
    "Stored": "mirrorbus.bus.message",
    "next_fetch_size": "mirrorbus.bus.message",
    "answerable": "mirrorbus.bus.requests",
    "allow_aiohttp": "mirrorbus.bus.transport",
    "without_websocket_transport": "mirrorbus.bus.transport",
    "BusSettings": "mirrorbus.config.bus",
    "StreamSettings": "mirrorbus.config.bus",
    "settings_from_paths": "mirrorbus.config.bus",
}

__getattr__ = lazy(__name__, _WHERE)
