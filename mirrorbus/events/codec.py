"""Encoding and decoding of bus messages, with schema versions and upcasters.

Every message goes out as JSON with its ``type`` tag and schema version ``v``.  Decoding takes
the fast path (one msgspec decode into the tagged union) when the message is of the current
version; an older version is decoded to plain data, raised version by version through the
registered upcasters, then converted.  Anything that cannot be decoded raises
:class:`~mirrorbus.errors.CodecError` with a reason fit for the dead-letter table, never
another exception: a projector must be able to set a bad message aside and go on.

Snapshots are msgpack + zlib: a worker with 10,000 jobs must fit under NATS's default
1 MiB payload limit.

To change a schema: bump the default of ``v`` on the Struct, then register an upcaster from the
previous version::

    @upcaster("job.configured", 1)
    def _configured_v1(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "provider": "command"}
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypeVar, cast

import msgspec

from mirrorbus.errors import CodecError
from mirrorbus.events.schema import Command, Event, Message, WorkerSnapshot

MAX_EVENT_BYTES = 64 * 1024
"""Largest event accepted; larger ones are dead letters (an event is a few hundred bytes)."""
MAX_HEADER_BYTES = 1024
"""Room for an append's headers (``Nats-Msg-Id`` and the like) beside the event itself."""
MAX_MESSAGE_BYTES = MAX_EVENT_BYTES + MAX_HEADER_BYTES
"""The event and command streams' ``max_msg_size``: nats-server counts headers and payload
together, and refuses a larger append, so nobody can fill the log (or a projector's fetch)
with messages the codec would only set aside."""
MAX_ANSWER_PARTS = 64
"""Most messages one query answer may take (an answer over the server's max_payload goes in
parts; the manager's user may send this many to one request): 64 MiB at the default 1 MiB."""

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}

_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_command_decoder = msgspec.json.Decoder(Command)
_raw_decoder = msgspec.json.Decoder(dict[str, Any])
_snap_encoder = msgspec.msgpack.Encoder()
_snap_decoder = msgspec.msgpack.Decoder(WorkerSnapshot)

F = TypeVar("F", bound=Upcaster)


def _current_versions() -> dict[str, int]:
    versions: dict[str, int] = {}
    for cls in (*Event.__args__, Command):
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        tag = cast(str, info.tag)
        default = next(f.default for f in info.fields if f.name == "v")
        versions[tag] = cast(int, default)
    return versions


CURRENT_VERSIONS: dict[str, int] = _current_versions()
"""Schema version each message type is written with today, by type tag."""

_CURRENT_BY_CLASS: dict[type, int] = {}
for _cls in (*Event.__args__, Command):
    _info = msgspec.inspect.type_info(_cls)
    assert isinstance(_info, msgspec.inspect.StructType)
    _CURRENT_BY_CLASS[_cls] = CURRENT_VERSIONS[cast(str, _info.tag)]
# (type_info per decoded message cost more than the decoding itself.)


def upcaster(type_tag: str, from_version: int) -> Callable[[F], F]:
    """Register a function that turns data of ``type_tag`` at ``from_version`` into the next."""

    def register(fn: F) -> F:
        key = (type_tag, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"an upcaster for {type_tag} v{from_version} exists already")
        _UPCASTERS[key] = fn
        return fn

    return register


def encode(message: Message) -> bytes:
    """Encode any bus message (event or command) as JSON with its type and version."""
    return _encoder.encode(message)


def _upcast(data: dict[str, Any]) -> dict[str, Any]:
    type_tag = data.get("type")
    if not isinstance(type_tag, str):
        raise CodecError("message has no 'type' field")
    current = CURRENT_VERSIONS.get(type_tag)
    if current is None:
        raise CodecError(f"unknown message type {type_tag!r}")
    version = data.get("v", 1)
    if not isinstance(version, int) or version < 1:
        raise CodecError(f"{type_tag}: invalid schema version {version!r}")
    while version < current:
        step = _UPCASTERS.get((type_tag, version))
        if step is None:
            raise CodecError(f"{type_tag}: no upcaster from schema version {version}")
        data = {**step(data), "v": version + 1}
        version += 1
    return data


M = TypeVar("M", bound=Message)


def _decode(data: bytes, decoder: msgspec.json.Decoder[M], target: type[M] | Any) -> M:
    if len(data) > MAX_EVENT_BYTES:
        raise CodecError(f"message of {len(data)} bytes exceeds the {MAX_EVENT_BYTES} byte limit")
    try:
        message = decoder.decode(data)
    except msgspec.DecodeError as exc:
        fast_error: str | None = str(exc)
    else:
        if message.v >= _CURRENT_BY_CLASS[type(message)]:
            return message
        fast_error = None
    # Slow path: an old version (or a message the fast path refused): upcast, then convert.
    try:
        raw = _raw_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CodecError(f"not a JSON object: {exc}") from None
    upcast = _upcast(raw)
    try:
        return cast(M, msgspec.convert(upcast, target))
    except msgspec.ValidationError as exc:
        raise CodecError(f"invalid {upcast.get('type')}: {exc}") from None
    except Exception as exc:  # pragma: no cover - defensive: never crash a projector
        raise CodecError(f"undecodable ({fast_error}): {exc}") from None


def decode_event(data: bytes) -> Event:
    """Decode a job or worker event; raise :class:`CodecError` with the reason otherwise."""
    return _decode(data, _event_decoder, Event)


def decode_command(data: bytes) -> Command:
    """Decode a command; raise :class:`CodecError` with the reason otherwise."""
    return _decode(data, _command_decoder, Command)


def encode_snapshot(snapshot: WorkerSnapshot) -> bytes:
    return zlib.compress(_snap_encoder.encode(snapshot), 6)


def decode_snapshot(data: bytes) -> WorkerSnapshot:
    try:
        return _snap_decoder.decode(zlib.decompress(data))
    except (zlib.error, msgspec.DecodeError) as exc:
        raise CodecError(f"unreadable snapshot: {exc}") from None


# -- upcasters of released schema versions -------------------------------------------------


@upcaster("job.configured", 1)
def _configured_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 had no provider: the first release ran command jobs only."""
    return {**data, "provider": data.get("provider", "command")}
