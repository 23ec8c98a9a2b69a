"""Partition specs: parsing, the exact blocked edges of each shape, and every error."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsim.partition import (
    Bridge,
    Groups,
    Halves,
    Isolate,
    IsolateLeader,
    OneWay,
    PartitionSpecError,
    Ring,
    blocked_edges,
    parse_partition,
)

M3 = ("m0", "m1", "m2")
M4 = ("m0", "m1", "m2", "m3")
M5 = ("m0", "m1", "m2", "m3", "m4")


def cross(members: Sequence[str], groups: Sequence[Sequence[str]]) -> set[tuple[str, str]]:
    """Every ordered pair of members whose group numbers differ (members in no group
    are their own unblocked group: they talk to everyone)."""
    group_of = {name: i for i, group in enumerate(groups) for name in group}
    return {
        (a, b)
        for a in members
        for b in members
        if a != b and a in group_of and b in group_of and group_of[a] != group_of[b]
    }


def both(*pairs: tuple[str, str]) -> set[tuple[str, str]]:
    return {p for a, b in pairs for p in ((a, b), (b, a))}


CASES = [
    ("halves", M3, None, cross(M3, [["m0"], ["m1", "m2"]])),
    ("halves", M5, None, cross(M5, [["m0", "m1"], ["m2", "m3", "m4"]])),
    ("isolate:m1", M3, None, cross(M3, [["m1"], ["m0", "m2"]])),
    ("isolate:m4", M5, None, cross(M5, [["m4"], ["m0", "m1", "m2", "m3"]])),
    ("isolate-leader", M3, "m2", cross(M3, [["m2"], ["m0", "m1"]])),
    ("isolate-leader", M5, "m0", cross(M5, [["m0"], ["m1", "m2", "m3", "m4"]])),
    ("bridge:m0", M3, None, both(("m1", "m2"))),
    ("bridge:m2", M5, None, cross(M5, [["m0", "m1"], ["m3", "m4"]])),
    ("ring", M4, None, both(("m0", "m2"), ("m1", "m3"))),
    (
        "ring",
        M5,
        None,
        both(("m0", "m2"), ("m0", "m3"), ("m1", "m3"), ("m1", "m4"), ("m2", "m4")),
    ),
    ("one-way:m0->m2", M3, None, {("m0", "m2")}),
    ("one-way:m3->m1", M5, None, {("m3", "m1")}),
    ("m0 | m1,m2", M3, None, cross(M3, [["m0"], ["m1", "m2"]])),
    ("m0,m3|m1|m2,m4", M5, None, cross(M5, [["m0", "m3"], ["m1"], ["m2", "m4"]])),
]


@pytest.mark.parametrize(("spec", "members", "leader", "expected"), CASES)
def test_each_shape_blocks_exactly_these_edges(
    spec: str, members: tuple[str, ...], leader: str | None, expected: set[tuple[str, str]]
) -> None:
    edges = blocked_edges(parse_partition(spec), members, leader=leader)
    assert edges == expected
    if not spec.startswith("one-way"):
        assert edges == {(b, a) for a, b in edges}, "only one-way may be asymmetric"


def test_bridge_talks_to_both_halves() -> None:
    edges = blocked_edges(parse_partition("bridge:m2"), M5)
    assert not any("m2" in edge for edge in edges)


def test_parse_gives_these_objects() -> None:
    assert parse_partition("halves") == Halves()
    assert parse_partition(" ring ") == Ring()
    assert parse_partition("isolate-leader") == IsolateLeader()
    assert parse_partition("isolate: m2") == Isolate(name="m2")
    assert parse_partition("bridge:m1") == Bridge(name="m1")
    assert parse_partition("one-way: m0 -> m1") == OneWay(src="m0", dst="m1")
    assert parse_partition("a, b | c") == Groups(groups=(("a", "b"), ("c",)))


@pytest.mark.parametrize("spec", [s for s, *_ in CASES])
def test_spec_text_round_trips(spec: str) -> None:
    p = parse_partition(spec)
    assert parse_partition(p.spec()) == p
    assert p.describe() == p.spec()


def test_describe_with_members() -> None:
    assert parse_partition("halves").describe(M5) == "m0,m1 | m2,m3,m4"
    assert parse_partition("isolate:m2").describe(M3) == "m2 | m0,m1"
    assert parse_partition("isolate-leader").describe(M3, leader="m1") == "m1 | m0,m2"
    assert parse_partition("bridge:m0").describe(M5) == "m1,m2 | m3,m4 (bridge m0)"
    assert parse_partition("ring").describe(M4) == "ring m0-m1-m2-m3-m0"
    assert parse_partition("one-way:m0->m1").describe(M3) == "m0 -/-> m1"
    assert parse_partition("m0,m1|m2").describe(M3) == "m0,m1 | m2"


names = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), min_size=2, max_size=8, unique=True
)


@st.composite
def grouped(draw: st.DrawFn) -> tuple[list[str], list[list[str]], str]:
    members = draw(names)
    count = draw(st.integers(min_value=2, max_value=len(members)))
    # the first `count` members seed the groups so none is empty; the rest go anywhere
    shuffled = draw(st.permutations(members))
    groups: list[list[str]] = [[name] for name in shuffled[:count]]
    for name in shuffled[count:]:
        groups[draw(st.integers(min_value=0, max_value=count - 1))].append(name)
    pad = draw(st.sampled_from(["", " ", "  "]))
    text = f"{pad}|{pad}".join(f"{pad},{pad}".join(g) for g in groups)
    return members, groups, text


@given(grouped())
def test_group_spec_blocks_iff_different_groups(
    case: tuple[list[str], list[list[str]], str],
) -> None:
    members, groups, text = case
    group_of = {name: i for i, group in enumerate(groups) for name in group}
    edges = blocked_edges(parse_partition(text), members)
    for a in members:
        for b in members:
            if a != b:
                assert ((a, b) in edges) == (group_of[a] != group_of[b]), (a, b, text)
    assert all(a != b for a, b in edges)


PARSE_ERRORS = [
    ("", "empty"),
    ("   ", "empty"),
    ("halve", "unknown partition spec"),
    ("split:m0", "unknown partition spec"),
    ("isolate", "needs an argument"),
    ("isolate:", "not a member name"),
    ("isolate:m 0", "not a member name"),
    ("bridge:", "not a member name"),
    ("one-way", "needs an argument"),
    ("one-way:m0", "needs 'A->B'"),
    ("one-way:m0->", "not a member name"),
    ("one-way:m0->m0", "same member twice"),
    ("m0,m1", "unknown partition spec"),
    ("m0|", "empty group"),
    ("|", "empty group"),
    ("m0,,m1|m2", "empty name"),
    ("m0,m1|m1", "more than once"),
    ("m0|m1 m2", "not a member name"),
]


@pytest.mark.parametrize(("spec", "problem"), PARSE_ERRORS)
def test_bad_specs_say_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(PartitionSpecError, match=problem) as info:
        parse_partition(spec)
    if problem in ("unknown partition spec", "needs an argument", "empty"):
        assert "halves" in str(info.value), "the message shows the grammar"


RESOLVE_ERRORS = [
    ("isolate:m9", M3, None, "'m9' is not a member"),
    ("bridge:m9", M3, None, "'m9' is not a member"),
    ("one-way:m0->m9", M3, None, "'m9' is not a member"),
    ("one-way:m9->m0", M3, None, "'m9' is not a member"),
    ("m0|m9", ("m0",), None, "'m9' is not a member"),
    ("m0|m1", M3, None, "does not name m2"),
    ("halves", ("m0",), None, "needs at least 2 members"),
    ("isolate:m0", ("m0",), None, "needs at least 2 members"),
    ("bridge:m0", ("m0", "m1"), None, "needs at least 3 members"),
    ("ring", M3, None, "needs at least 4 members"),
    ("isolate-leader", M3, None, "needs the current leader"),
    ("isolate-leader", M3, "m7", "'m7' is not a member"),
    ("halves", ("m0", "m1", "m0"), None, "'m0' more than once"),
    ("halves", ("m0", ""), None, "empty name"),
]


@pytest.mark.parametrize(("spec", "members", "leader", "problem"), RESOLVE_ERRORS)
def test_specs_that_do_not_fit_the_members(
    spec: str, members: tuple[str, ...], leader: str | None, problem: str
) -> None:
    p = parse_partition(spec)
    with pytest.raises(PartitionSpecError, match=problem):
        blocked_edges(p, members, leader=leader)
    with pytest.raises(PartitionSpecError, match=problem):
        p.describe(members, leader=leader)


def test_objects_validate_on_construction() -> None:
    with pytest.raises(PartitionSpecError, match="at least two groups"):
        Groups(groups=(("m0", "m1"),))
    with pytest.raises(PartitionSpecError, match="not a member name"):
        Isolate(name="")
    with pytest.raises(PartitionSpecError, match="same member twice"):
        OneWay(src="m1", dst="m1")


def test_a_single_string_is_not_a_member_list() -> None:
    with pytest.raises(PartitionSpecError, match="not one string"):
        blocked_edges(Halves(), "m0m1")
