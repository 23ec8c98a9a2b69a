"""The runner: its pieces without daemons (leader agreement, the link plan layered on
the base latency), then a fault scenario end to end against real daemons."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from netsim.history import read_events
from netsim.link import Edge, LinkNet
from netsim.runner import LinkPlan, agreed_leader, run_scenario
from netsim.scenario import Placement, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
MEMBERS = ("m0", "m1", "m2")


def status(leader: str | None, term: int) -> dict[str, Any]:
    return {"leader": leader, "term": term, "height": 1}


def test_the_leader_is_the_one_most_members_name_at_the_highest_term() -> None:
    assert agreed_leader({"m0": status("m0", 2), "m1": status("m0", 2), "m2": None}) == ("m0", 2)
    # an old term's leader does not count against the new one
    newer = {"m0": status("m0", 1), "m1": status("m1", 3), "m2": status("m1", 3)}
    assert agreed_leader(newer) == ("m1", 3)
    # a split at the highest term is no leader
    assert agreed_leader({"m0": status("m0", 4), "m1": status("m1", 4)}) == (None, 4)
    assert agreed_leader({"m0": status(None, 5), "m1": None}) == (None, 5)
    assert agreed_leader({}) == (None, 0)


class RecordingNet(LinkNet):
    """A LinkNet that is never run: faults are set on its edges, calls are counted."""

    def __init__(self) -> None:
        super().__init__({m: ("127.0.0.1", 1) for m in MEMBERS}, rng=random.Random(0))
        self.heals = 0

    def heal(self) -> None:
        self.heals += 1
        super().heal()

    def blocked(self) -> set[Edge]:
        return {(a, b) for a in MEMBERS for b in MEMBERS if a != b and self.faults(a, b).blocked}


def both(a: str, b: str) -> frozenset[Edge]:
    return frozenset({(a, b), (b, a)})


def test_the_link_plan_layers_faults_on_the_base_latency_and_restores_it() -> None:
    net = RecordingNet()
    placement = parse_scenario(
        """
[scenario]
name = "p"
description = "d"
duration_s = 10
recovery_bound_s = 5
[regions]
m0 = "a"
m1 = "b"
m2 = "b"
[latency]
"a/b" = 40
"b/b" = 2
jitter_ms = 1
"""
    ).placement
    plan = LinkPlan(net, MEMBERS, placement)
    plan.apply()
    assert (net.faults("m0", "m1").latency_ms, net.faults("m0", "m1").jitter_ms) == (20, 1)
    assert net.faults("m1", "m2").latency_ms == 1
    plan.latency[1] = (both("m0", "m1"), 200.0, 10.0)
    plan.latency[2] = (frozenset({("m0", "m1")}), 300.0, 0.0)
    plan.bandwidth[3] = (frozenset({("m2", "m0")}), 1000)
    plan.apply()
    assert net.faults("m0", "m1").latency_ms == 300  # the later fault wins
    assert net.faults("m1", "m0").latency_ms == 200
    assert net.faults("m2", "m0").bandwidth_bps == 1000
    plan.remove(2)
    plan.apply()
    assert net.faults("m0", "m1").latency_ms == 200
    plan.clear()
    plan.apply()
    assert net.faults("m0", "m1").latency_ms == 20
    assert net.faults("m2", "m0").bandwidth_bps is None


def test_the_link_plan_puts_back_blocks_still_in_force_after_a_heal() -> None:
    net = RecordingNet()
    plan = LinkPlan(net, MEMBERS, Placement())
    plan.blocks[1] = both("m0", "m1")
    plan.blocks[2] = both("m0", "m2")
    plan.stalls[3] = frozenset({("m1", "m2")})
    plan.apply()
    assert net.blocked() == both("m0", "m1") | both("m0", "m2")
    assert net.heals == 0
    plan.remove(1)
    plan.apply()
    assert net.heals == 1
    assert net.blocked() == both("m0", "m2")
    assert net.faults("m1", "m2").stalled
    plan.clear()
    plan.apply()
    assert net.blocked() == set() and not net.faults("m1", "m2").stalled


def kinds(events: Iterable[Any]) -> list[str]:
    return [e.kind for e in events]


async def test_leader_loss_end_to_end(tmp_path: Path) -> None:
    """SIGKILL the leader at 6 s, restart it at 16 s, 20 s of load: PASS, a new leader
    was elected while the old one was down, and every member ends on one tip."""
    scenario = load_scenario(SCENARIOS / "leader-loss.toml")
    print(f"scenario {scenario.name} seed {scenario.seed}")
    result = await run_scenario(scenario, tmp_path / "work", duration_override=20, progress=False)
    assert result.ok, result.text
    assert result.converged
    assert result.text.startswith("PASS")
    events = read_events(result.paths.events)
    starts = [e for e in events if e.kind == "fault.start"]
    assert [(e.data["fault"], e.data["detail"]["as"]) for e in starts] == [("kill", "leader")]
    killed = starts[0].data["target"]
    before = [e for e in events if e.kind == "leader" and e.t <= starts[0].t]
    assert before and before[-1].data["leader"] == killed
    after = [e for e in events if e.kind == "leader" and e.t > starts[0].t]
    assert after and after[0].data["leader"] != killed
    end = next(e for e in events if e.kind == "fault.end")
    assert end.t == pytest.approx(16, abs=1.5)
    assert kinds(events)[-1] == "run.end"
    assert "converged" in kinds(events)
    tips = result.verdict.stats["tips"]
    assert len({(t["height"], t["hash"]) for t in tips.values()}) == 1
    assert result.verdict.stats["committed_txs"] > 100
    for name in ("m0", "m1", "m2"):
        assert (result.paths.ledgers / f"{name}.jsonl").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "smoke",
        "leader-loss",
        "partition-halves",
        "isolate-leader",
        "flaky-wan",
        "rolling-restart",
        "wipe-and-catch-up",
        "grow-and-shrink",
    ],
)
async def test_every_short_shipped_scenario_passes(tmp_path: Path, name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    print(f"scenario {scenario.name} seed {scenario.seed}")
    result = await run_scenario(scenario, tmp_path / "work", progress=False)
    assert result.ok, result.text


@pytest.mark.slow
async def test_the_random_soak_passes_for_two_minutes(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "random-soak.toml")
    print(f"scenario {scenario.name} seed {scenario.seed}")
    result = await run_scenario(scenario, tmp_path / "work", duration_override=120, progress=False)
    assert result.ok, result.text
