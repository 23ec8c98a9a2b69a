"""The typed message envelope carried in frames, and the registry of message types.

A message is a CBOR map ``{"type": <text>, "body": <map>}`` in the project's
deterministic encoding (``p2pledger.codec``). The registry maps each type to a lane:
``consensus`` traffic is never dropped silently, ``gossip`` may be shed under load,
``control`` is the transport's own (heartbeats). A receiver counts and ignores types it
does not know, so newer members can talk to older ones; an envelope that is not
well-formed closes the connection.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from p2pledger import codec
from p2pledger.errors import CodecError
from p2pledger.wire.errors import LocalProtocolError, MalformedMessage

__all__ = [
    "HEARTBEAT",
    "Lane",
    "Message",
    "MessageRegistry",
    "decode_message",
    "encode_message",
]

_TYPE_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_MAX_TYPE_LENGTH: Final = 64
_CONTROL_PREFIX: Final = "wire."
_ENVELOPE_KEYS: Final = frozenset({"type", "body"})

#: The transport's liveness message, sent on an idle connection.
HEARTBEAT: Final = "wire.heartbeat"


class Lane(enum.StrEnum):
    """How a message type is queued and what may happen to it under load."""

    CONTROL = "control"
    CONSENSUS = "consensus"
    GOSSIP = "gossip"


def _valid_type(name: object) -> bool:
    return (
        isinstance(name, str)
        and len(name) <= _MAX_TYPE_LENGTH
        and _TYPE_PATTERN.fullmatch(name) is not None
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message: a dotted lower-case ``type`` and a CBOR map ``body``."""

    type: str
    body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _valid_type(self.type):
            raise LocalProtocolError(
                f"message type {self.type!r} is not dotted lower-case of at most "
                f"{_MAX_TYPE_LENGTH} characters"
            )
        if not isinstance(self.body, dict) or not all(isinstance(k, str) for k in self.body):
            raise LocalProtocolError("a message body is a map with text keys")


def encode_message(message: Message, *, limits: codec.CodecLimits) -> bytes:
    """The deterministic CBOR of ``message``'s envelope (CodecError if out of bounds)."""
    return codec.encode({"type": message.type, "body": message.body}, limits=limits)


def decode_message(data: bytes, *, limits: codec.CodecLimits) -> Message:
    """Parse an envelope; raise MalformedMessage for anything but a well-formed one."""
    try:
        value = codec.decode(data, limits=limits)
    except CodecError as exc:
        raise MalformedMessage(f"message is not valid CBOR: {exc}") from exc
    if not isinstance(value, dict) or set(value) != _ENVELOPE_KEYS:
        raise MalformedMessage("a message is a map with exactly the keys 'type' and 'body'")
    kind, body = value["type"], value["body"]
    if not _valid_type(kind):
        raise MalformedMessage(f"message type {kind!r} is not a valid type name")
    if not isinstance(body, dict):
        raise MalformedMessage("a message body is a map")
    return Message(type=kind, body=body)


class MessageRegistry:
    """The message types this node knows, each with its lane.

    ``wire.*`` types are the transport's own (control lane) and cannot be registered.
    """

    __slots__ = ("_lanes",)

    def __init__(self, types: Mapping[str, Lane] | None = None) -> None:
        self._lanes: dict[str, Lane] = {HEARTBEAT: Lane.CONTROL}
        for name, lane in (types or {}).items():
            self.register(name, lane)

    def register(self, name: str, lane: Lane) -> None:
        """Add a type; its lane must be consensus or gossip."""
        if not _valid_type(name):
            raise LocalProtocolError(f"message type {name!r} is not a valid type name")
        if name.startswith(_CONTROL_PREFIX) or lane is Lane.CONTROL:
            raise LocalProtocolError("the wire.* types and the control lane are reserved")
        if name in self._lanes and self._lanes[name] is not lane:
            raise LocalProtocolError(f"message type {name!r} is already registered")
        self._lanes[name] = lane

    def lane_of(self, name: str) -> Lane | None:
        """The lane of a known type, or None for a type this node does not know."""
        return self._lanes.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._lanes
