"""Messages, entries and records: value forms round-trip through the real codec, and
construction refuses anything that breaks an invariant."""

from __future__ import annotations

from typing import Any

import pytest

from p2pledger import codec
from p2pledger.errors import SchemaError
from p2pledger.raft import (
    AppendRequest,
    AppendResponse,
    BadMessage,
    ConfChange,
    ConfChangeOp,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InvalidConfChange,
    Message,
    SnapshotMeta,
    SnapshotRequest,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    message_from_value,
)

CONF = ConfState(voters=frozenset({"bank-a", "court"}), learners=frozenset({"auditor"}))
CHANGE = ConfChange(op=ConfChangeOp.ADD_VOTER, node="auditor", context=b"signed update")

MESSAGES: list[Message] = [
    VoteRequest(term=3, sender="a", recipient="b", last_index=7, last_term=2),
    VoteRequest(
        term=3, sender="a", recipient="b", last_index=7, last_term=2, pre_vote=True, transfer=True
    ),
    VoteResponse(term=3, sender="b", recipient="a", granted=True, pre_vote=True),
    AppendRequest(
        term=4,
        sender="a",
        recipient="b",
        prev_index=7,
        prev_term=2,
        commit=6,
        entries=(
            Entry(term=2, index=8, data=b"\x00block"),
            Entry(term=4, index=9, kind=EntryKind.NOOP),
            Entry(term=4, index=10, kind=EntryKind.CONF_CHANGE, data=CHANGE.encode()),
        ),
    ),
    AppendRequest(term=4, sender="a", recipient="b", prev_index=0, prev_term=0, commit=0),
    AppendResponse(term=4, sender="b", recipient="a", index=9),
    AppendResponse(
        term=4, sender="b", recipient="a", index=9, reject=True, hint_index=5, hint_term=1
    ),
    Heartbeat(term=4, sender="a", recipient="b", commit=3),
    HeartbeatResponse(term=4, sender="b", recipient="a"),
    TimeoutNow(term=4, sender="a", recipient="b"),
    SnapshotRequest(
        term=4, sender="a", recipient="b", snapshot=SnapshotMeta(index=9, term=4, conf=CONF)
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_the_codec(message: Message) -> None:
    data = codec.encode(message.to_value())
    assert message_from_value(codec.decode(data)) == message
    # Deterministic: the same message always encodes to the same bytes.
    assert codec.encode(message_from_value(codec.decode(data)).to_value()) == data


def test_records_round_trip() -> None:
    hs = HardState(term=5, vote="court", commit=9)
    assert HardState.from_value(codec.decode(codec.encode(hs.to_value()))) == hs
    meta = SnapshotMeta(index=9, term=4, conf=CONF)
    assert SnapshotMeta.from_value(codec.decode(codec.encode(meta.to_value()))) == meta
    assert ConfChange.decode(CHANGE.encode()) == CHANGE
    e = Entry(term=1, index=1, data=b"x")
    assert Entry.from_value(codec.decode(codec.encode(e.to_value()))) == e


def _append_value(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = MESSAGES[3].to_value()
    value.update(changes)
    return value


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"type": "nope"},
        {**MESSAGES[0].to_value(), "extra": 1},
        {**MESSAGES[0].to_value(), "term": -1},
        {**MESSAGES[0].to_value(), "term": True},
        {**MESSAGES[0].to_value(), "term": 2**63},
        {**MESSAGES[0].to_value(), "from": ""},
        {**MESSAGES[0].to_value(), "from": 7},
        {**MESSAGES[0].to_value(), "to": "a"},  # sender == recipient
        {**MESSAGES[0].to_value(), "last_term": 9},  # beyond the candidate's term
        {**MESSAGES[0].to_value(), "pre_vote": 1},
        _append_value(entries=[[2, 9, 0, b""]]),  # gap after prev_index
        _append_value(entries=[[1, 8, 0, b""]]),  # term below prev_term
        _append_value(entries=[[5, 8, 0, b""]]),  # term above the leader's
        _append_value(entries=[[2, 8, 7, b""]]),  # unknown kind
        _append_value(entries=[[2, 8, 2, b"x"]]),  # no-op with data
        _append_value(entries=[[2, 8, 1, b"\xff"]]),  # conf change that is not CBOR
        _append_value(entries=[[0, 8, 0, b""]]),
        _append_value(entries=[[2, 8, 0, "text"]]),
        _append_value(entries=[[2, 8, 0]]),
        _append_value(entries={}),
        {**MESSAGES[-1].to_value(), "snapshot": {"index": 1, "term": 0, "conf": CONF.to_value()}},
        {
            **MESSAGES[-1].to_value(),
            "snapshot": {"index": 1, "term": 1, "conf": {"voters": ["b", "a"], "learners": []}},
        },
        {
            **MESSAGES[-1].to_value(),
            "snapshot": {"index": 1, "term": 1, "conf": {"voters": ["a"], "learners": ["a"]}},
        },
    ],
)
def test_malformed_values_are_refused_with_a_schema_error(value: Any) -> None:
    with pytest.raises(BadMessage) as info:
        message_from_value(value)
    assert isinstance(info.value, SchemaError)


def test_conf_change_rules() -> None:
    conf = ConfState(voters=frozenset({"a", "b"}), learners=frozenset({"c"}))
    promote = ConfChange(op=ConfChangeOp.ADD_VOTER, node="c")
    assert promote.check(conf) == ConfState(voters=frozenset({"a", "b", "c"}))
    demote = ConfChange(op=ConfChangeOp.ADD_LEARNER, node="a")
    assert demote.apply(conf) == ConfState(voters=frozenset({"b"}), learners=frozenset({"a", "c"}))
    with pytest.raises(InvalidConfChange):
        ConfChange(op=ConfChangeOp.ADD_VOTER, node="a").check(conf)
    with pytest.raises(InvalidConfChange):
        ConfChange(op=ConfChangeOp.REMOVE, node="z").check(conf)
    with pytest.raises(InvalidConfChange):
        ConfChange(op=ConfChangeOp.REMOVE, node="a").check(ConfState(voters=frozenset({"a"})))
