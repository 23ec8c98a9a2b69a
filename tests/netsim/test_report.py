"""The report: figures computed from a synthetic run, checked against independent
computations; the text leads with the verdict; the timeline is a real PNG."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsim.checker import Verdict, Violation
from netsim.history import Event, Outcome, Request
from netsim.report import (
    MAX_LISTED,
    percentile,
    plot_timeline,
    render_text,
    summarize,
    write_report,
)

SEED = 20240611
MEMBERS = ["m0", "m1", "m2"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def tx_id(i: int) -> str:
    return hashlib.sha256(i.to_bytes(4, "big")).hexdigest()


def make_history(seed: int = SEED) -> list[Request]:
    print(f"history seed {seed}")
    rng = random.Random(seed)
    out = []
    kinds = [Outcome.COMMITTED] * 200 + [Outcome.PENDING] * 10 + [Outcome.REJECTED] * 5
    kinds += [Outcome.UNKNOWN] * 3
    for i, outcome in enumerate(kinds):
        sent = round(rng.uniform(0.2, 20.0), 3)
        done = round(sent + rng.uniform(0.05, 0.8), 3)
        fields: dict[str, Any] = {}
        if outcome is Outcome.COMMITTED:
            fields = {"height": 1 + int(done), "valid": True}
        elif outcome is Outcome.REJECTED:
            fields = {"reason": "mempool_full"}
        out.append(
            Request(
                id=tx_id(i),
                client=i % 6,
                member=MEMBERS[i % 3],
                op="notary.anchor",
                sent=sent,
                done=done,
                outcome=outcome,
                **fields,
            )
        )
    return out


def sample(t: float, *heights: int | None) -> Event:
    return Event(t=t, kind="sample", data={"heights": dict(zip(MEMBERS, heights, strict=True))})


def fault(t: float, kind: str, fid: int, what: str, target: Any) -> Event:
    return Event(t=t, kind=kind, data={"id": fid, "fault": what, "target": target})


def make_events() -> list[Event]:
    events = [
        Event(t=0.0, kind="run.start", data={"scenario": "s", "seed": SEED, "members": MEMBERS}),
        Event(t=0.5, kind="leader", data={"leader": "m0", "term": 1}),
        fault(5.0, "fault.start", 1, "partition", "halves"),
        Event(t=6.2, kind="leader", data={"leader": "m1", "term": 2}),
        Event(t=8.0, kind="leader", data={"leader": "m1", "term": 3}),  # same leader: no change
        fault(10.0, "fault.end", 1, "partition", "halves"),
        fault(15.0, "fault.start", 2, "kill", "m2"),
        fault(16.0, "fault.end", 2, "kill", "m2"),
        Event(t=18.0, kind="converged", data={"height": 30}),
        fault(19.0, "fault.start", 3, "stall", ["m0", "m1"]),
        Event(t=22.0, kind="run.end"),
    ]
    # Heights: m2 falls behind in the partition, is equal again (and higher than at the
    # fault's end) at t=13; down after the kill, then equal but never higher than at t=16.
    for t in range(22):
        if t < 5:
            heights: tuple[int | None, ...] = (t, t, t)
        elif t <= 10:
            heights = (t, t, 4)
        elif t < 13:
            heights = (t, t, t - 2)
        elif t <= 15:
            heights = (t, t, t)
        elif t < 17:
            heights = (15, 15, None)
        else:
            heights = (15, 15, 15)
        events.append(sample(t + 0.01, *heights))
    return sorted(events, key=lambda e: e.t)


PASS = Verdict(
    ok=True,
    violations=(),
    stats={"tips": {m: {"height": 30, "hash": "ab" * 32} for m in MEMBERS}},
)
FAIL = Verdict(
    ok=False,
    violations=(
        Violation(kind="fork", message="m0 and m2 differ at height 3: block aa vs bb", height=3),
        Violation(kind="lost", message="tx 0123456789ab reported committed ... (on m1)"),
    ),
    stats={},
)


@pytest.fixture
def report() -> dict[str, Any]:
    return summarize(
        scenario="partition-halves",
        seed=SEED,
        verdict=PASS,
        history=make_history(),
        events=make_events(),
    )


def test_throughput_over_the_load_window(report: dict[str, Any]) -> None:
    history = make_history()
    start = min(r.sent for r in history)
    end = max(r.done for r in history)
    load = report["load"]
    assert (load["start"], load["end"]) == (start, end)
    assert load["committed"] == 200 and load["requests"] == len(history)
    assert load["tx_per_s"] == pytest.approx(200 / (end - start))


def test_latency_percentiles_are_nearest_rank(report: dict[str, Any]) -> None:
    lat = np.array([r.done - r.sent for r in make_history() if r.outcome is Outcome.COMMITTED])
    got = report["latency_s"]
    assert got["count"] == 200
    for p in (50, 90, 99):
        assert got[f"p{p}"] == pytest.approx(np.percentile(lat, p, method="inverted_cdf"))
    assert got["max"] == pytest.approx(lat.max())
    assert got["p50"] < got["p90"] < got["p99"] <= got["max"]


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(0, 1e6), min_size=1, max_size=50),
    p=st.sampled_from([1, 10, 25, 50, 90, 99, 99.9, 100]),
)
def test_percentile_matches_numpys_inverted_cdf(values: list[float], p: float) -> None:
    assert percentile(values, p) == np.percentile(values, p, method="inverted_cdf")


def test_percentile_by_hand() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([1.0] * 99 + [7.0], 99) == 1.0
    assert percentile([1.0] * 99 + [7.0], 99.5) == 7.0
    for bad in (0, 101):
        with pytest.raises(ValueError):
            percentile([1.0], bad)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_outcomes_and_leader_changes(report: dict[str, Any]) -> None:
    assert report["outcomes"] == {"committed": 200, "pending": 10, "rejected": 5, "unknown": 3}
    leaders = report["leaders"]
    assert leaders["changes"] == 1
    assert [(e["t"], e["leader"], e["term"], e["change"]) for e in leaders["events"]] == [
        (0.5, "m0", 1, False),
        (6.2, "m1", 2, True),
        (8.0, "m1", 3, False),
    ]


def test_recovery_per_fault_from_samples(report: dict[str, Any]) -> None:
    faults = {f["id"]: f for f in report["faults"]}
    # Partition: heights equal and above 9 (the highest sampled by its end) at t=13.01.
    assert faults[1]["height_at_end"] == 9
    assert faults[1]["recovered_at"] == pytest.approx(13.01)
    assert faults[1]["recovery_s"] == pytest.approx(3.01)
    # Kill: equal again at 17.01 but not above 15; the converged event at 18 ends it.
    assert faults[2]["recovered_at"] == 18.0 and faults[2]["recovery_s"] == pytest.approx(2.0)
    # Stall: never ended.
    assert (faults[3]["end"], faults[3]["recovered_at"]) == (None, None)
    assert [f["id"] for f in report["faults"]] == [1, 2, 3]


def test_timeline_bins_count_commits_by_done(report: dict[str, Any]) -> None:
    committed = [r for r in make_history() if r.outcome is Outcome.COMMITTED]
    bins = report["timeline"]["bins"]
    assert report["timeline"]["bin_s"] == 1.0
    assert len(bins) == math.ceil(22.0)
    assert sum(b["committed"] for b in bins) == 200
    for b in bins:
        lat = [r.latency for r in committed if b["t"] <= r.done < b["t"] + 1]
        assert b["committed"] == len(lat)
        if lat:
            assert b["p99"] == pytest.approx(np.percentile(lat, 99, method="inverted_cdf"))
        else:
            assert b["p50"] is None


def test_the_report_is_plain_json(report: dict[str, Any]) -> None:
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_text_starts_with_the_verdict(report: dict[str, Any]) -> None:
    text = render_text(report)
    first, *rest = text.splitlines()
    assert first == f"PASS: scenario partition-halves, seed {SEED}"
    assert rest[1].startswith("throughput: ")
    assert f"{report['latency_s']['p50']:.3f} s" in text
    assert "outcomes: committed 200, pending 10, rejected 5, unknown 3" in text
    assert "leader changes: 1" in text and "t=6.200 m1 term 2 (change)" in text
    assert "#1 partition halves: 5.000-10.000 s, recovered t=13.010 (3.010 s after end)" in text
    assert "#3 stall m0,m1: from 19.000 s, never ended" in text
    assert f"  m2 30 {'ab' * 6}" in text


def test_a_failed_verdict_lists_every_violation_first() -> None:
    report = summarize(
        scenario="s", seed=None, verdict=FAIL, history=make_history(), events=make_events()
    )
    lines = render_text(report).splitlines()
    assert lines[0] == "FAIL: scenario s, seed None: 2 violations (fork 1, lost 1)"
    assert lines[1:3] == [f"  - {v.kind}: {v.message}" for v in FAIL.violations]


def test_a_flood_of_violations_is_cut_in_the_text_only() -> None:
    many = tuple(Violation(kind="phantom", message=f"tx {i}") for i in range(MAX_LISTED + 7))
    verdict = Verdict(ok=False, violations=many, stats={})
    report = summarize(scenario="s", seed=1, verdict=verdict, history=[], events=[])
    text = render_text(report)
    assert f"  - phantom: tx {MAX_LISTED - 1}\n" in text
    assert f"tx {MAX_LISTED}\n" not in text
    assert "... and 7 more phantom" in text
    assert len(report["verdict"]["violations"]) == MAX_LISTED + 7


def test_an_empty_run_still_renders() -> None:
    report = summarize(scenario="s", seed=1, verdict=PASS, history=[], events=[])
    text = render_text(report)
    assert text.startswith("PASS")
    assert "throughput: - committed tx/s" in text
    assert report["latency_s"] == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}


def test_plot_timeline_writes_a_png(report: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    plot_timeline(report, path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 650)


def test_write_report_writes_the_three_files(tmp_path: Path) -> None:
    history, events = make_history(), make_events()
    files = write_report(
        tmp_path, scenario="s", seed=3, verdict=FAIL, history=history, events=events
    )
    assert (files.json, files.text, files.timeline) == (
        tmp_path / "report.json",
        tmp_path / "report.txt",
        tmp_path / "timeline.png",
    )
    report = json.loads(files.json.read_text())
    assert report == summarize(scenario="s", seed=3, verdict=FAIL, history=history, events=events)
    assert files.text.read_text() == render_text(report)
    assert files.text.read_text().startswith("FAIL")
    assert files.timeline.read_bytes().startswith(PNG_SIGNATURE)


def test_requests_that_found_no_free_client_are_reported() -> None:
    events = make_events()
    end = next(e for e in events if e.kind == "run.end")
    workload = {"scheduled": 500, "sent": 380, "skipped": 120}
    events[events.index(end)] = Event(t=end.t, kind="run.end", data={"workload": workload})
    report = summarize(scenario="s", seed=SEED, verdict=PASS, history=make_history(), events=events)
    assert report["workload"] == workload
    assert "not sent: 120 of 500 scheduled requests" in render_text(report)
    quiet = summarize(
        scenario="s", seed=SEED, verdict=PASS, history=make_history(), events=make_events()
    )
    assert "not sent" not in render_text(quiet)


def test_memory_and_idle_cpu_per_member() -> None:
    def probe(t: float, cpu: float, rss_mib: int) -> Event:
        res = {m: {"rss_bytes": rss_mib * 2**20, "cpu_s": cpu} for m in MEMBERS}
        return Event(t=t, kind="sample", data={"heights": {}, "resources": res})

    start = Event(
        t=0.0,
        kind="run.start",
        data={"scenario": "s", "seed": SEED, "members": MEMBERS, "load_start_s": 25.0},
    )
    # idle from 5 s to 25 s: 0.5 s of CPU over 20 s; then the load doubles memory
    events = [start, probe(1.0, 0.9, 40), probe(5.0, 1.0, 50), probe(25.0, 1.5, 52)]
    events += [probe(30.0, 4.0, 100)]
    report = summarize(scenario="s", seed=SEED, verdict=PASS, history=[], events=events)
    r = report["resources"]["m0"]
    assert r["rss_max_bytes"] == 100 * 2**20 and r["idle_rss_bytes"] == 52 * 2**20
    assert r["idle_cpu_fraction"] == pytest.approx(0.5 / 20)
    assert "CPU at idle: mean 2.5% of a core" in render_text(report)
