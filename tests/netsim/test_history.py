"""History and event records: they check themselves, round-trip through JSON lines,
and a bad line is reported with its file and line number."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsim.history import (
    Event,
    HistoryError,
    HistoryWriter,
    InvalidRecord,
    Outcome,
    Request,
    read_events,
    read_history,
)

TX = hashlib.sha256(b"tx").hexdigest()


def request_json(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": TX,
        "client": 3,
        "member": "m1",
        "op": "fund.transfer",
        "sent": 12.031,
        "done": 12.412,
        "outcome": "committed",
        "height": 57,
        "valid": True,
        "reason": None,
    }
    value.update(changes)
    return value


EVENTS: list[dict[str, Any]] = [
    {"t": 0.0, "kind": "run.start", "scenario": "partition-halves", "seed": 7, "members": ["m0"]},
    {"t": 10.0, "kind": "fault.start", "id": 1, "fault": "partition", "target": "halves",
     "detail": {"sides": [["m0"], ["m1"]]}},
    {"t": 20.0, "kind": "fault.end", "id": 1, "fault": "partition", "target": "halves"},
    {"t": 10.6, "kind": "leader", "leader": "m3", "term": 4},
    {"t": 11.0, "kind": "sample", "heights": {"m0": 40, "m1": None}, "leader": "m3", "term": 4},
    {"t": 95.0, "kind": "converged", "height": 310},
    {"t": 95.0, "kind": "not_converged"},
    {"t": 96.0, "kind": "run.end"},
]  # fmt: skip


def test_the_design_example_line_round_trips() -> None:
    r = Request.from_json(request_json())
    assert r.outcome is Outcome.COMMITTED and r.height == 57
    assert r.latency == pytest.approx(0.381)
    assert r.to_json() == request_json()


@pytest.mark.parametrize("value", EVENTS, ids=[e["kind"] for e in EVENTS])
def test_every_event_kind_round_trips(value: dict[str, Any]) -> None:
    event = Event.from_json(value)
    assert event.to_json() == value
    assert event.kind == value["kind"]


def test_event_data_is_a_private_frozen_copy() -> None:
    detail = {"sides": ["a"]}
    data: dict[str, Any] = {"id": 1, "fault": "partition", "target": "halves", "detail": detail}
    event = Event(t=1, kind="fault.start", data=data)
    data["id"] = 2
    detail["sides"].append("b")
    assert event.data["id"] == 1 and event.data["detail"] == {"sides": ["a"]}
    assert isinstance(event.t, float)
    with pytest.raises(TypeError):
        event.data["id"] = 3  # type: ignore[index]


@pytest.mark.parametrize(
    ("target", "member", "crash"),
    [("m1", "m1", True), (["m0", "m1"], "m1", True), ("m10", "m1", False), (["m0"], "m1", False)],
)
def test_a_crash_names_its_targets(target: Any, member: str, crash: bool) -> None:
    kill = Event(t=1, kind="fault.start", data={"id": 1, "fault": "kill", "target": target})
    pause = Event(t=1, kind="fault.start", data={"id": 1, "fault": "pause", "target": target})
    assert kill.is_crash_of(member) == crash
    assert not pause.is_crash_of(member)


def test_a_crash_of_a_resolved_target_names_its_members() -> None:
    data = {"id": 1, "fault": "wipe", "target": "leader", "members": ["m2"]}
    wipe = Event(t=1, kind="fault.start", data=data)
    assert wipe.is_crash_of("m2") and not wipe.is_crash_of("m1")
    assert not Event(t=2, kind="fault.end", data=data).is_crash_of("m2")


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "ABC"},
        {"id": TX.upper()},
        {"client": -1},
        {"client": True},
        {"member": ""},
        {"sent": float("nan")},
        {"sent": "12"},
        {"done": 1.0},  # before sent
        {"outcome": "lost"},
        {"height": 0},  # genesis
        {"height": None},
        {"valid": None},
        {"valid": False},  # invalid without a reason
        {"reason": "overdraft"},  # valid with a reason
        {"outcome": "pending"},  # pending with a height
        {"outcome": "rejected", "height": None, "valid": None},  # rejected without a code
    ],
)
def test_a_bad_request_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord):
        Request.from_json(request_json(**changes))


def test_request_keys_are_exactly_the_designs() -> None:
    with pytest.raises(InvalidRecord, match="unknown"):
        Request.from_json({**request_json(), "extra": 1})
    value = request_json()
    del value["reason"]
    with pytest.raises(InvalidRecord, match="missing"):
        Request.from_json(value)


@pytest.mark.parametrize(
    "value",
    [
        {"t": 1.0, "kind": "restart"},
        {"t": -1.0, "kind": "run.end"},
        {"kind": "run.end"},
        {"t": 1.0, "kind": "leader", "leader": "m0"},  # no term
        {"t": 1.0, "kind": "leader", "leader": "m0", "term": True},
        {"t": 1.0, "kind": "fault.start", "id": 1, "fault": "kill", "target": [1]},
        {"t": 1.0, "kind": "sample", "heights": {"m0": -1}},
        {"t": 1.0, "kind": "sample", "heights": [1, 2]},
        {"t": 1.0, "kind": "run.end", "x": float("inf")},
    ],
)
def test_a_bad_event_is_refused(value: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord):
        Event.from_json(value)


requests = st.builds(
    Request,
    id=st.binary(min_size=32, max_size=32).map(bytes.hex),
    client=st.integers(0, 100),
    member=st.sampled_from(["m0", "m1", "m12"]),
    op=st.sampled_from(["fund.transfer", "notary.anchor"]),
    sent=st.floats(0, 1e4),
    done=st.just(1e4 + 1.0),
    outcome=st.sampled_from([Outcome.PENDING, Outcome.UNKNOWN]),
    reason=st.none() | st.text(min_size=1, max_size=20),
)


@settings(derandomize=True, max_examples=30, deadline=None)
@given(records=st.lists(requests, max_size=8))
def test_written_requests_read_back_equal(records: list[Request]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        with HistoryWriter(path) as w:
            for r in records:
                w.write(r)
        assert read_history(path) == records


def test_writer_appends_and_flushes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = [Event.from_json(e) for e in EVENTS]
    with HistoryWriter(path) as w:
        w.write(events[0])
        assert path.read_text().count("\n") == 1  # on disk before close
    with HistoryWriter(path) as w:
        for e in events[1:]:
            w.write(e)
    assert read_events(path) == events
    with pytest.raises(ValueError, match="closed"):
        w.write(events[0])


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("\n" + json.dumps(request_json()) + "\n\n")
    assert [r.id for r in read_history(path)] == [TX]


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ('{"id": ', "not JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps(request_json(client=-5)), "client"),
    ],
)
def test_a_bad_line_names_its_file_and_line(tmp_path: Path, bad: str, what: str) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(request_json()) + "\n\n" + bad + "\n")
    with pytest.raises(HistoryError, match=what) as info:
        read_history(path)
    assert (info.value.path, info.value.line) == (path, 3)
    assert str(info.value).startswith(f"{path}:3: ")


def test_a_bad_events_line_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(EVENTS[0]) + "\n" + '{"t": 1, "kind": "bogus"}\n')
    with pytest.raises(HistoryError) as info:
        read_events(path)
    assert info.value.line == 2 and "bogus" in str(info.value)
