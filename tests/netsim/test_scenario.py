"""Scenario files: every shipped one loads, and every mistake in one is reported at
once with its key path, never ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim.scenario import (
    FaultKind,
    Scenario,
    ScenarioError,
    link_target,
    load_scenario,
    parse_scenario,
)

SHIPPED = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
HEAD = """
[scenario]
name = "t"
description = "a test"
duration_s = 60
recovery_bound_s = 20
"""


def problems(text: str) -> dict[str, str]:
    """Key path -> reason of every problem parse_scenario reports for ``text``."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="t.toml")
    return {p.key: p.reason for p in info.value.problems}


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.description
    assert scenario.recovery_bound_s > 0
    assert scenario.workload.rate > 0
    limit = {"random-soak": 600, "scale-25": 330}.get(scenario.name, 90)  # the long ones
    assert 0 < scenario.duration_s <= limit


def test_the_shipped_set_is_complete() -> None:
    names = {p.stem for p in SHIPPED.glob("*.toml")}
    assert names >= {
        "smoke",
        "leader-loss",
        "partition-halves",
        "isolate-leader",
        "flaky-wan",
        "rolling-restart",
        "wipe-and-catch-up",
        "random-soak",
        "grow-and-shrink",
        "membership-under-partition",
        "rotate-and-revoke",
    }


def test_flaky_wan_places_four_cities_with_half_the_rtt_each_way() -> None:
    s = load_scenario(SHIPPED / "flaky-wan.toml")
    assert set(s.placement.regions.values()) == {"guiyang", "beijing", "shanghai", "shenzhen"}
    assert s.placement.rtt("m0", "m1") == 42
    assert s.placement.one_way("m1", "m0") == 21
    assert s.placement.jitter_ms > 0


def test_a_minimal_file_gets_the_defaults() -> None:
    s = parse_scenario(HEAD)
    assert isinstance(s, Scenario)
    assert s.cluster.members == 3 and s.cluster.names == ("m0", "m1", "m2")
    assert s.faults == () and s.nemesis is None and s.placement.empty
    assert s.seed == 0


def test_a_full_fault_reads_every_field() -> None:
    s = parse_scenario(
        HEAD
        + """
[[faults]]
at_s = 5
kind = "latency"
target = "m0->m1"
ms = 80
jitter_ms = 5
duration_s = 10
"""
    )
    (fault,) = s.faults
    assert fault.kind is FaultKind.LATENCY
    assert (fault.at_s, fault.end_s, fault.ms, fault.jitter_ms) == (5, 15, 80, 5)


def test_unknown_keys_are_errors_in_every_table() -> None:
    found = problems(
        HEAD.replace("seed", "sed")
        + """
colour = "blue"
[cluster]
member = 3
[workload]
rat = 5
[[faults]]
at_s = 1
kind = "kill"
target = "m0"
durations = 3
[nemesis]
kinds = ["kill"]
interval_s = 10
duration_s = 3
every = 2
[extra]
"""
    )
    for key in (
        "scenario.colour",
        "cluster.member",
        "workload.rat",
        "faults[0].durations",
        "nemesis.every",
        "extra",
    ):
        assert key in found, found
        assert "unknown key" in found[key]


def test_bad_kinds_are_named() -> None:
    found = problems(
        HEAD
        + """
[[faults]]
at_s = 1
kind = "explode"
target = "m0"
[nemesis]
kinds = ["kill", "meteor", "rolling-restart"]
interval_s = 10
duration_s = 3
"""
    )
    assert "'explode' is not a fault kind" in found["faults[0].kind"]
    assert "'meteor' is not a fault kind" in found["nemesis.kinds[1]"]
    assert "not a random fault" in found["nemesis.kinds[2]"]


@pytest.mark.parametrize(
    ("kind", "target", "fragment"),
    [
        ("kill", "m7", "'m7' is not a member"),
        ("pause", "everyone", "is not a member"),
        ("partition", "isolate:m9", "is not a partition"),
        ("partition", "thirds", "is not a partition"),
        ("partition", "isolate:leader", "is not a partition"),
        ("latency", "m0->m5", "'m5' in 'm0->m5' is not a member"),
        ("reset", "m0->m0", "links a member to itself"),
        ("stall", "m0=>m1", "is not a link target"),
        ("rolling-restart", "m0,m8", "'m8'"),
    ],
)
def test_bad_targets_are_named(kind: str, target: str, fragment: str) -> None:
    extra = "ms = 5\n" if kind == "latency" else ""
    found = problems(HEAD + f'[[faults]]\nat_s = 1\nkind = "{kind}"\ntarget = "{target}"\n{extra}')
    assert fragment in found["faults[0].target"], found


def test_negative_and_out_of_window_times_are_named() -> None:
    found = problems(
        HEAD.replace("duration_s = 60", "duration_s = -1")
        + """
[workload]
start_s = -2
[[faults]]
at_s = -3
kind = "kill"
target = "m1"
duration_s = -4
"""
    )
    assert "must be a positive" in found["scenario.duration_s"]
    assert "non-negative" in found["workload.start_s"]
    assert "non-negative" in found["faults[0].at_s"]
    assert "must be a positive" in found["faults[0].duration_s"]
    late = problems(HEAD + '[[faults]]\nat_s = 60\nkind = "kill"\ntarget = "m1"\n')
    assert "not inside the load window" in late["faults[0].at_s"]


def test_parameters_that_do_not_fit_the_kind_are_named() -> None:
    found = problems(
        HEAD
        + """
[[faults]]
at_s = 1
kind = "restart"
target = "m0"
duration_s = 5
[[faults]]
at_s = 2
kind = "kill"
target = "m0"
ms = 50
[[faults]]
at_s = 3
kind = "latency"
target = "all"
[[faults]]
at_s = 4
kind = "bandwidth"
target = "all"
"""
    )
    assert "instant" in found["faults[0].duration_s"]
    assert "takes no 'ms'" in found["faults[1].ms"]
    assert "needs ms" in found["faults[2].ms"]
    assert "needs bytes_per_s" in found["faults[3].bytes_per_s"]


def test_several_problems_are_reported_at_once_with_the_file_name() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(
            """
[scenario]
name = "Bad Name"
duration_s = "long"
[cluster]
members = 0
observers = -1
""",
            source="bad.toml",
        )
    keys = {p.key for p in info.value.problems}
    assert {
        "scenario.name",
        "scenario.description",
        "scenario.duration_s",
        "scenario.recovery_bound_s",
        "cluster.members",
        "cluster.observers",
    } <= keys
    text = str(info.value)
    assert text.startswith(f"{len(info.value.problems)} scenario problems:")
    assert "bad.toml [cluster.members]" in text


def test_regions_and_latency_are_checked_together() -> None:
    found = problems(
        HEAD
        + """
[regions]
m0 = "beijing"
m1 = "shanghai"
m5 = "lhasa"
[latency]
"beijing/tokyo" = 3
"nowhere" = 4
jitter_ms = -1
"""
    )
    assert "'m5' is not a member" in found["regions.m5"]
    assert "no region for m2" in found["regions"]
    assert "no member is in region 'tokyo'" in found["latency.beijing/tokyo"]
    assert "not a pair of regions" in found["latency.nowhere"]
    assert "non-negative" in found["latency.jitter_ms"]
    assert "no RTT for beijing/shanghai" in found["latency"]


def test_latency_without_regions_is_an_error() -> None:
    found = problems(HEAD + '[latency]\n"a/b" = 3\n')
    assert "needs [regions]" in found["latency"]


def test_observers_must_leave_a_voter() -> None:
    found = problems(HEAD + "[cluster]\nmembers = 2\nobservers = 2\n")
    assert "leaves no voter" in found["cluster.observers"]


def test_toml_syntax_errors_and_missing_files_are_scenario_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse_scenario("[scenario\n")
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "absent.toml")


def test_with_duration_shortens_the_window() -> None:
    s = load_scenario(SHIPPED / "random-soak.toml")
    short = s.with_duration(30)
    assert short.duration_s == 30 and s.duration_s == 600
    with pytest.raises(ValueError, match="positive"):
        s.with_duration(0)


def test_link_targets_name_their_edges() -> None:
    members = ("m0", "m1", "m2")
    assert link_target("m0->m1", members).edges(members, leader=None) == {("m0", "m1")}
    assert link_target("m0<->m1", members).edges(members, leader=None) == {
        ("m0", "m1"),
        ("m1", "m0"),
    }
    assert len(link_target("all", members).edges(members, leader=None)) == 6
    assert link_target("leader", members).edges(members, leader="m2") == {
        ("m0", "m2"),
        ("m1", "m2"),
        ("m2", "m0"),
        ("m2", "m1"),
    }
    assert link_target("leader", members).edges(members, leader=None) == frozenset()


# --- membership faults -------------------------------------------------------------

MEMBERSHIP = (
    HEAD
    + """
[cluster]
members = 3
spares = 2
"""
)


def membership(*faults: str) -> str:
    return MEMBERSHIP + "".join(f'\n[[faults]]\nkind = "membership"\n{f}\n' for f in faults)


def test_membership_faults_and_spares_parse() -> None:
    scenario = parse_scenario(
        membership(
            'at_s = 5\naction = "add"\ntarget = "m3"',
            'at_s = 10\naction = "add"\ntarget = "m4"\nrole = "observer"',
            'at_s = 15\naction = "remove"\ntarget = "leader"',
            'at_s = 20\naction = "promote"\ntarget = "m4"',
            'at_s = 25\naction = "revoke-user"\ntarget = "follower"',
            'at_s = 30\naction = "rotate-key"\ntarget = "m2"',
        )
    )
    assert scenario.cluster.spares == 2
    assert scenario.cluster.spare_names == ("m3", "m4")
    assert scenario.members == ("m0", "m1", "m2")
    got = [(f.action, f.target, f.role) for f in scenario.faults]
    assert got == [
        ("add", "m3", "voter"),  # an add's role defaults to voter
        ("add", "m4", "observer"),
        ("remove", "leader", None),
        ("promote", "m4", None),
        ("revoke-user", "follower", None),
        ("rotate-key", "m2", None),
    ]
    assert all(f.kind is FaultKind.MEMBERSHIP and f.duration_s is None for f in scenario.faults)
    assert scenario.faults[1].detail() == {"action": "add", "role": "observer"}


def test_a_membership_fault_needs_a_known_action_and_takes_no_other_parameter() -> None:
    found = problems(
        membership(
            'at_s = 5\ntarget = "m3"',
            'at_s = 6\naction = "evict"\ntarget = "m1"',
            'at_s = 7\naction = "remove"\ntarget = "m1"\nrole = "voter"',
            'at_s = 8\naction = "add"\ntarget = "m3"\nrole = "boss"',
            'at_s = 9\naction = "demote"\ntarget = "m2"\nduration_s = 3',
            'at_s = 10\naction = "demote"\ntarget = "m0"\nms = 3',
        )
    )
    assert "needs an action" in found["faults[0].action"]
    assert "'evict' is not one of add, remove" in found["faults[1].action"]
    assert "only an add takes a role" in found["faults[2].role"]
    assert "'boss' is not a role" in found["faults[3].role"]
    assert "instant" in found["faults[4].duration_s"]
    assert "takes no 'ms'" in found["faults[5].ms"]


def test_membership_faults_are_checked_as_a_sequence() -> None:
    found = problems(
        membership(
            'at_s = 5\naction = "add"\ntarget = "m1"',  # not a spare
            'at_s = 6\naction = "add"\ntarget = "m3"',
            'at_s = 7\naction = "add"\ntarget = "m3"',  # twice
            'at_s = 9\naction = "remove"\ntarget = "m2"',
            'at_s = 10\naction = "demote"\ntarget = "m2"',  # removed before
            'at_s = 4\naction = "promote"\ntarget = "m4"',  # not added (yet, or ever)
            'at_s = 11\naction = "promote"\ntarget = "m0"',  # a voter already
            'at_s = 12\naction = "rotate-key"\ntarget = "m9"',  # no such member
        )
    )
    assert "an add targets a spare (m3, m4), not 'm1'" in found["faults[0].target"]
    assert "m3 is added twice" in found["faults[2].target"]
    assert "m2 was removed before this demote" in found["faults[4].target"]
    assert "m4 is not a member at 4 s (add it first)" in found["faults[5].target"]
    assert "m0 is already a voter" in found["faults[6].target"]
    assert "'m9' is not a member" in found["faults[7].target"]
    assert set(found) == {f"faults[{i}].target" for i in (0, 2, 4, 5, 6, 7)}


def test_the_last_voter_cannot_be_demoted_or_removed() -> None:
    text = (
        HEAD
        + "\n[cluster]\nmembers = 2\nobservers = 1\n"
        + ('\n[[faults]]\nkind = "membership"\nat_s = 5\naction = "demote"\ntarget = "m0"\n')
    )
    assert "no voter is left" in problems(text)["faults[0].target"]


def test_an_add_without_spares_says_how_to_get_them() -> None:
    text = HEAD + '\n[[faults]]\nkind = "membership"\nat_s = 5\naction = "add"\ntarget = "m3"\n'
    found = problems(text)
    assert "set [cluster] spares" in found["faults[0].target"]


def test_spares_may_have_a_region_and_need_none() -> None:
    text = MEMBERSHIP + '\n[regions]\nm0 = "eu"\nm1 = "eu"\nm2 = "eu"\nm4 = "eu"\n'
    scenario = parse_scenario(text)
    assert scenario.placement.regions["m4"] == "eu"
    assert "m3" not in scenario.placement.regions


def test_worker_threads_is_a_cluster_boolean_that_defaults_to_on() -> None:
    assert parse_scenario(HEAD, source="t.toml").cluster.worker_threads is True
    off = parse_scenario(HEAD + "\n[cluster]\nworker_threads = false\n", source="t.toml")
    assert off.cluster.worker_threads is False
    found = problems(HEAD + '\n[cluster]\nworker_threads = "off"\n')
    assert "true or false" in found["cluster.worker_threads"]
