"""The message envelope and registry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger import codec
from p2pledger.wire.errors import LocalProtocolError, MalformedMessage
from p2pledger.wire.messages import (
    HEARTBEAT,
    Lane,
    Message,
    MessageRegistry,
    decode_message,
    encode_message,
)

LIMITS = codec.CodecLimits(max_size=1024, max_depth=8)


def test_round_trip() -> None:
    m = Message(type="raft.append", body={"term": 3, "entries": [b"x", b"y"]})
    assert decode_message(encode_message(m, limits=LIMITS), limits=LIMITS) == m


@pytest.mark.parametrize("kind", ["", "Raft", "raft.", ".raft", "raft..x", "a" * 65, "r-x"])
def test_bad_type_names_are_local_errors(kind: str) -> None:
    with pytest.raises(LocalProtocolError):
        Message(type=kind)


@pytest.mark.parametrize(
    "value",
    [
        [1, 2],
        {"type": "x"},
        {"type": "x", "body": {}, "extra": 1},
        {"type": 3, "body": {}},
        {"type": "Bad", "body": {}},
        {"type": "x", "body": [1]},
    ],
)
def test_malformed_envelopes(value: object) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(codec.encode(value), limits=LIMITS)


def test_non_canonical_and_oversized_are_malformed() -> None:
    with pytest.raises(MalformedMessage):
        decode_message(b"\xa2\x64type\x61x\x64body\xa0", limits=LIMITS)  # keys out of order
    big = Message(type="x", body={"b": b"\x00" * 2000})
    with pytest.raises(MalformedMessage):
        decode_message(codec.encode({"type": big.type, "body": big.body}), limits=LIMITS)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=100))
def test_random_bytes_are_malformed_or_a_message(data: bytes) -> None:
    try:
        message = decode_message(data, limits=LIMITS)
    except MalformedMessage:
        return
    assert isinstance(message, Message)


def test_registry_lanes() -> None:
    reg = MessageRegistry({"raft.append": Lane.CONSENSUS, "gossip.tx": Lane.GOSSIP})
    assert reg.lane_of("raft.append") is Lane.CONSENSUS
    assert reg.lane_of(HEARTBEAT) is Lane.CONTROL
    assert reg.lane_of("new.kind") is None
    assert "gossip.tx" in reg
    with pytest.raises(LocalProtocolError):
        reg.register("wire.mine", Lane.GOSSIP)
    with pytest.raises(LocalProtocolError):
        reg.register("x.y", Lane.CONTROL)
    with pytest.raises(LocalProtocolError):
        reg.register("gossip.tx", Lane.CONSENSUS)
    reg.register("gossip.tx", Lane.GOSSIP)  # re-registering the same lane is fine
