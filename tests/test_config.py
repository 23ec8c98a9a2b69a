"""network.toml and node.toml: every problem kind, all reported at once, round trips."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pledger.config import (
    AddressError,
    HostPort,
    LogConfig,
    LogFormat,
    LogLevel,
    NodeConfig,
    NodeLimits,
    check_node_against_network,
    load_network,
    load_node,
    network_to_toml,
    node_to_toml,
    parse_address,
    parse_network,
    parse_node,
)
from p2pledger.crypto import PublicKey
from p2pledger.errors import ConfigError, ConfigProblem
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role
from tests import factory
from tests.factory import seeded_key

EXAMPLES = Path(__file__).resolve().parent.parent / "config"
SRC = "network.toml"
NODE_SRC = "node.toml"
BASE = Path("/srv/ledger/bank-a")


def key(label: str) -> str:
    return seeded_key(label).public_key.hex


def network_doc() -> dict[str, Any]:
    """A valid network.toml as a dict: two voters, one observer, one fund."""
    return {
        "chain": {"name": "test-chain", "genesis_time": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
        "limits": {"max_transactions": 100, "max_bytes": 65536, "batch_timeout_ms": 50},
        "members": [
            {
                "name": "bank-a",
                "node_key": key("node-a"),
                "address": "127.0.0.1:7401",
                "role": "voter",
                "admins": [key("admin-a")],
                "users": [key("user-a"), key("user-a2")],
            },
            {
                "name": "court",
                "node_key": key("node-b"),
                "address": "court.example:7402",
                "role": "voter",
                "admins": [key("admin-b")],
                "users": [key("user-b")],
            },
            {
                "name": "auditor",
                "node_key": key("node-c"),
                "address": "[::1]:7403",
                "role": "observer",
            },
        ],
        "funds": [{"name": "relief", "issuers": [key("user-a")]}],
    }


def node_doc() -> dict[str, Any]:
    return {"name": "bank-a", "network": "../network.toml", "listen": "0.0.0.0:7401"}


def problems(text: str, *, node: bool = False) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        if node:
            parse_node(text, source=NODE_SRC, base_dir=BASE)
        else:
            parse_network(text, source=SRC)
    assert info.value.problems, "a ConfigError always lists its problems"
    return list(info.value.problems)


def only_problem(doc: dict[str, Any], *, node: bool = False) -> ConfigProblem:
    found = problems(tomli_w.dumps(doc), node=node)
    assert len(found) == 1, found
    assert found[0].file == (NODE_SRC if node else SRC)
    return found[0]


def test_valid_network_parses_to_the_model() -> None:
    network = parse_network(tomli_w.dumps(network_doc()), source=SRC)
    assert network.chain_name == "test-chain"
    assert network.genesis_time_ms == 1_793_491_200_000
    assert network.limits == BlockLimits(max_transactions=100, max_bytes=65536, batch_timeout_ms=50)
    assert [m.name for m in network.members] == ["bank-a", "court", "auditor"]
    assert network.members[2].role is Role.OBSERVER
    assert network.members[2].admins == () and network.members[2].users == ()
    assert network.members[0].users[1] == PublicKey.from_hex(key("user-a2"))
    assert network.funds == (Fund(name="relief", issuers=(PublicKey.from_hex(key("user-a")),)),)
    assert network.version == 0


def test_limits_and_funds_are_optional() -> None:
    doc = network_doc()
    del doc["limits"], doc["funds"]
    network = parse_network(tomli_w.dumps(doc), source=SRC)
    assert network.limits == BlockLimits()
    assert network.funds == ()


# --- unknown, missing and mistyped keys ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ((), "colour"),
        (("chain",), "chain.colour"),
        (("limits",), "limits.colour"),
        (("members", 1), "members[1].colour"),
        (("funds", 0), "funds[0].colour"),
    ],
)
def test_unknown_key_is_rejected_with_the_allowed_keys(path: tuple[Any, ...], where: str) -> None:
    doc = network_doc()
    table = doc
    for part in path:
        table = table[part]
    table["colour"] = "blue"
    problem = only_problem(doc)
    assert problem.key == where
    assert "unknown key 'colour'" in problem.reason
    assert "allowed keys here:" in problem.reason


def test_unknown_key_suggests_the_close_one() -> None:
    doc = network_doc()
    doc["members"][0]["adminz"] = doc["members"][0].pop("admins")
    problem = only_problem(doc)
    assert problem.key == "members[0].adminz"
    assert "did you mean 'admins'?" in problem.reason


@pytest.mark.parametrize(
    ("path", "where"),
    [
        (("chain",), "chain"),
        (("chain", "name"), "chain.name"),
        (("chain", "genesis_time"), "chain.genesis_time"),
        (("members",), "members"),
        (("members", 1, "node_key"), "members[1].node_key"),
        (("members", 1, "address"), "members[1].address"),
        (("members", 1, "role"), "members[1].role"),
        (("funds", 0, "issuers"), "funds[0].issuers"),
    ],
)
def test_missing_required_key(path: tuple[Any, ...], where: str) -> None:
    doc = network_doc()
    if path[0] == "chain" and len(path) == 1:
        del doc["chain"]
    else:
        table = doc
        for part in path[:-1]:
            table = table[part]
        del table[path[-1]]
    if path == ("members",):
        del doc["funds"]  # its issuer would be unknown without members
    problem = only_problem(doc)
    assert problem.key == where
    assert "missing required" in problem.reason
    assert repr(path[-1]) in problem.reason or f"[{path[-1]}]" in problem.reason


def test_missing_member_name() -> None:
    doc = network_doc()
    del doc["members"][2]["name"]
    problem = only_problem(doc)
    assert (problem.key, problem.reason) == ("members[2].name", "missing required key 'name'")


@pytest.mark.parametrize(
    ("path", "value", "where", "shown"),
    [
        (("chain", "name"), 5, "chain.name", "expected a string, got integer 5"),
        (
            ("limits", "max_bytes"),
            "big",
            "limits.max_bytes",
            'expected an integer, got string "big"',
        ),
        (("limits", "max_transactions"), True, "limits.max_transactions", "got boolean true"),
        (("limits", "batch_timeout_ms"), 1.5, "limits.batch_timeout_ms", "got float 1.5"),
        (("limits",), 3, "limits", "expected a table [limits], got integer 3"),
        (("members", 0, "role"), ["voter"], "members[0].role", "got array of 1 items"),
        (
            ("members", 0, "users"),
            "x",
            "members[0].users",
            'expected an array of strings, got string "x"',
        ),
        (("members", 0, "admins"), [7], "members[0].admins[0]", "expected a string, got integer 7"),
        (("funds", 0, "issuers"), {"a": 1}, "funds[0].issuers", "got table"),
    ],
)
def test_wrong_type(path: tuple[Any, ...], value: Any, where: str, shown: str) -> None:
    doc = network_doc()
    table = doc
    for part in path[:-1]:
        table = table[part]
    table[path[-1]] = value
    if path == ("members", 0, "users"):
        doc["funds"] = []  # the fund's issuer is one of these users
    problem = only_problem(doc)
    assert problem.key == where
    assert shown in problem.reason


def test_members_must_be_tables() -> None:
    found = problems(
        'members = "bank-a"\n[chain]\nname = "c"\ngenesis_time = 2026-01-01T00:00:00Z\n'
    )
    assert [(p.key, p.reason) for p in found] == [
        ("members", 'expected [[members]] tables, got string "bank-a"')
    ]


def test_member_entry_that_is_not_a_table() -> None:
    doc = network_doc()
    doc["members"] = [1, *doc["members"]]
    problem = only_problem(doc)
    assert (problem.key, problem.reason) == ("members[0]", "expected a table, got integer 1")


def test_integer_beyond_64_bits() -> None:
    text = tomli_w.dumps(network_doc()).replace("max_bytes = 65536", f"max_bytes = {2**63}")
    [problem] = problems(text)
    assert problem.key == "limits.max_bytes"
    assert str(2**63) in problem.reason


# --- values ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Bank-A", "-bank", "bank_a", "", "b" * 64, "bank a", "bänk"])
def test_bad_member_name(name: str) -> None:
    doc = network_doc()
    doc["members"][1]["name"] = name
    problem = only_problem(doc)
    assert problem.key == "members[1].name"
    assert f'"{name}" is not a valid name' in problem.reason


def test_bad_chain_and_fund_names() -> None:
    doc = network_doc()
    doc["chain"]["name"] = "Relief"
    doc["funds"][0]["name"] = "relief fund"
    found = problems(tomli_w.dumps(doc))
    assert [p.key for p in found] == ["chain.name", "funds[0].name"]
    assert '"Relief"' in found[0].reason and '"relief fund"' in found[1].reason


def test_duplicate_member_names() -> None:
    doc = network_doc()
    doc["members"][2]["name"] = "bank-a"
    problem = only_problem(doc)
    assert problem.key == "members[2].name"
    assert problem.reason == 'member name "bank-a" is already used by members[0]'


def test_duplicate_fund_names() -> None:
    doc = network_doc()
    doc["funds"].append({"name": "relief", "issuers": [key("user-b")]})
    problem = only_problem(doc)
    assert problem.key == "funds[1].name"
    assert problem.reason == 'fund name "relief" is already used by funds[0]'


@pytest.mark.parametrize(
    ("first", "second", "where", "first_where", "kind"),
    [
        (("members", 0, "node_key"), ("members", 1, "users", 0), "members[1].users[0]",
         "members[0].node_key", "node"),
        (("members", 0, "admins", 0), ("members", 2, "node_key"), "members[2].node_key",
         "members[0].admins[0]", "admin"),
        (("members", 0, "users", 0), ("members", 0, "users", 1), "members[0].users[1]",
         "members[0].users[0]", "user"),
        (("members", 1, "admins", 0), ("members", 1, "users", 0), "members[1].users[0]",
         "members[1].admins[0]", "admin"),
    ],
)  # fmt: skip
def test_key_used_twice_says_where_else(
    first: tuple[Any, ...], second: tuple[Any, ...], where: str, first_where: str, kind: str
) -> None:
    doc = network_doc()
    doc["funds"] = []

    def at(path: tuple[Any, ...]) -> tuple[Any, Any]:
        table = doc
        for part in path[:-1]:
            table = table[part]
        return table, path[-1]

    table, last = at(first)
    value = table[last]
    table, last = at(second)
    table[last] = value
    problem = only_problem(doc)
    assert problem.key == where
    assert value in problem.reason
    assert f"already used as the {kind} key at {first_where}" in problem.reason


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("abc", "has 3 hex digits"),
        ("a" * 66, "has 66 hex digits"),
        ("A" * 64, "uppercase"),
        ("g" * 64, "is not a public key"),
        (" " + "a" * 63, "is not a public key"),
    ],
)
def test_malformed_key(text: str, says: str) -> None:
    doc = network_doc()
    doc["members"][1]["node_key"] = text
    problem = only_problem(doc)
    assert problem.key == "members[1].node_key"
    assert f'"{text}"' in problem.reason and says in problem.reason


def test_malformed_key_in_a_list() -> None:
    doc = network_doc()
    doc["members"][1]["admins"].append("xyz")
    problem = only_problem(doc)
    assert problem.key == "members[1].admins[1]"
    assert '"xyz" is not a public key' in problem.reason


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1", "no port"),
        ("127.0.0.1:", "no port"),
        (":7401", "no host"),
        ("127.0.0.1:0", "port 0 is not a number from 1 to 65535"),
        ("127.0.0.1:65536", "port 65536"),
        ("127.0.0.1:http", "port http"),
        ("127.0.0.1:-1", "port -1"),
        ("300.1.2.3:7401", "300.1.2.3 is not a valid IPv4 address"),
        ("::1:7401", "in brackets"),
        ("[::1]", "no port"),
        ("[::1:7401", "no closing ']'"),
        ("[not-v6]:7401", "[not-v6] is not a valid IPv6 address"),
        ("bank_a.example:7401", "bank_a.example is not a valid host name"),
        ("-bank.example:7401", "not a valid host name"),
        ("bank..example:7401", "not a valid host name"),
        ("bank example:7401", "not a valid host name"),
        ("a" * 64 + ".example:7401", "not a valid host name"),
        (("a" * 60 + ".") * 5 + "example:1", "at most 253 characters"),
    ],
)
def test_bad_address(address: str, says: str) -> None:
    doc = network_doc()
    doc["members"][0]["address"] = address
    problem = only_problem(doc)
    assert problem.key == "members[0].address"
    assert "is not a valid host:port address" in problem.reason
    assert says in problem.reason
    assert address[:50] in problem.reason


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:7401", HostPort("127.0.0.1", 7401)),
        ("localhost:1", HostPort("localhost", 1)),
        ("ledger.bank-a.example:65535", HostPort("ledger.bank-a.example", 65535)),
        ("[::1]:7401", HostPort("::1", 7401)),
        ("[2001:db8::7]:80", HostPort("2001:db8::7", 80)),
    ],
)
def test_good_address(address: str, expected: HostPort) -> None:
    assert parse_address(address) == expected
    doc = network_doc()
    doc["members"][0]["address"] = address
    assert parse_network(tomli_w.dumps(doc), source=SRC).members[0].address == address


def test_parse_address_raises_a_value_error() -> None:
    with pytest.raises(AddressError, match="no port"):
        parse_address("localhost")
    assert issubclass(AddressError, ValueError)


@pytest.mark.parametrize("role", ["votr", "Voter", "leader", ""])
def test_bad_role(role: str) -> None:
    doc = network_doc()
    doc["members"][2]["role"] = role
    problem = only_problem(doc)
    assert problem.key == "members[2].role"
    assert problem.reason == f'"{role}" is not a role: use "voter" or "observer"'


def test_at_least_one_voter() -> None:
    doc = network_doc()
    for member in doc["members"]:
        member["role"] = "observer"
    problem = only_problem(doc)
    assert problem.key == "members"
    assert 'no member has role = "voter"' in problem.reason


def test_at_least_one_member() -> None:
    doc = network_doc()
    doc["members"] = []
    doc["funds"] = []
    problem = only_problem(doc)
    assert problem.key == "members"
    assert "add at least one [[members]]" in problem.reason


@pytest.mark.parametrize("field", ["max_transactions", "max_bytes", "batch_timeout_ms"])
@pytest.mark.parametrize("value", [0, -1, -(2**40)])
def test_non_positive_block_limits(field: str, value: int) -> None:
    doc = network_doc()
    doc["limits"][field] = value
    problem = only_problem(doc)
    assert problem.key == f"limits.{field}"
    assert problem.reason == f"must be positive, got {value}"


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        ("2026-11-01T00:00:00", "datetime 2026-11-01T00:00:00 has no timezone; add Z"),
        ("2026-11-01", "expected a datetime, got date 2026-11-01"),
        ("00:00:00", "expected a datetime, got time 00:00:00"),
        ('"2026-11-01T00:00:00Z"', 'got string "2026-11-01T00:00:00Z"; write it without quotes'),
        ("1793491200000", "expected a datetime, got integer 1793491200000"),
        ("2026-11-01T00:00:00.0005Z", "2026-11-01T00:00:00.000500+00:00 is more precise"),
        ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59+00:00 is before 1970"),
    ],
)
def test_bad_genesis_time(literal: str, says: str) -> None:
    doc = network_doc()
    doc["chain"]["genesis_time"] = "PLACEHOLDER"
    text = tomli_w.dumps(doc).replace('"PLACEHOLDER"', literal)
    [problem] = problems(text)
    assert problem.key == "chain.genesis_time"
    assert says in problem.reason


def test_genesis_time_with_an_offset_is_converted_to_utc() -> None:
    doc = network_doc()
    doc["chain"]["genesis_time"] = dt.datetime(
        2026, 11, 1, 1, 0, 0, 250_000, tzinfo=dt.timezone(dt.timedelta(hours=1))
    )
    network = parse_network(tomli_w.dumps(doc), source=SRC)
    assert network.genesis_time_ms == 1_793_491_200_250


@pytest.mark.parametrize(
    ("issuer", "says"),
    [
        (key("admin-a"), "is the admin key at members[0].admins[0], not a user key"),
        (key("node-b"), "is the node key at members[1].node_key, not a user key"),
        (key("stranger"), "is not a user key of any member"),
    ],
)
def test_fund_issuer_must_be_a_user_key(issuer: str, says: str) -> None:
    doc = network_doc()
    doc["funds"][0]["issuers"].append(issuer)
    problem = only_problem(doc)
    assert problem.key == "funds[0].issuers[1]"
    assert issuer in problem.reason and says in problem.reason


def test_fund_issuer_listed_twice() -> None:
    doc = network_doc()
    doc["funds"][0]["issuers"].append(key("user-a"))
    problem = only_problem(doc)
    assert problem.key == "funds[0].issuers[1]"
    assert problem.reason == f"issuer {key('user-a')} is listed twice (also at funds[0].issuers[0])"


def test_fund_needs_an_issuer() -> None:
    doc = network_doc()
    doc["funds"][0]["issuers"] = []
    problem = only_problem(doc)
    assert problem.key == "funds[0].issuers"
    assert "empty" in problem.reason


# --- all at once, files ----------------------------------------------------------------


def test_every_problem_is_reported_together() -> None:
    doc = network_doc()
    doc["chain"]["genesis_time"] = dt.datetime(2026, 11, 1)  # naive
    doc["limits"]["max_bytes"] = 0
    doc["members"][0]["role"] = "boss"
    doc["members"][1]["node_key"] = doc["members"][0]["node_key"]
    doc["members"][2]["address"] = "nowhere"
    doc["members"][2]["extra"] = 1
    doc["funds"][0]["issuers"] = [key("admin-b")]
    with pytest.raises(ConfigError) as info:
        parse_network(tomli_w.dumps(doc), source=SRC)
    keys = [p.key for p in info.value.problems]
    assert keys == [
        "chain.genesis_time",
        "limits.max_bytes",
        "members[0].role",
        "members[1].node_key",
        "members[2].extra",
        "members[2].address",
        "funds[0].issuers[0]",
    ]
    message = str(info.value)
    assert message.startswith("7 configuration problems:")
    assert f"{SRC} [members[2].address]" in message


def test_toml_syntax_error_has_line_and_column() -> None:
    text = '[chain]\nname = "c"\ngenesis_time = \n'
    [problem] = problems(text)
    assert problem.key == ""
    assert problem.reason.startswith("invalid TOML:")
    assert "line 3, column 16" in problem.reason


def test_load_network_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "network.toml"
    path.write_text(tomli_w.dumps(network_doc()))
    assert load_network(path) == parse_network(path.read_text(), source="x")


def test_load_network_names_the_file_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "network.toml"
    path.write_text("[chain\n")
    with pytest.raises(ConfigError) as info:
        load_network(path)
    [problem] = info.value.problems
    assert problem.file == str(path)
    assert "line 1" in problem.reason


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    for load in (load_network, load_node):
        with pytest.raises(ConfigError) as info:
            load(path)
        [problem] = info.value.problems
        assert problem.file == str(path)
        assert problem.reason == f"file not found (looked for {path})"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_network(tmp_path)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (PermissionError(13, "Permission denied"), "permission denied; make the file readable"),
        (OSError(5, "Input/output error"), "cannot read the file: Input/output error"),
    ],
)
def test_unreadable_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, says: str
) -> None:
    path = tmp_path / "network.toml"
    path.write_text("")

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Path, "open", refuse)  # the test may run as root, who reads anything
    with pytest.raises(ConfigError) as info:
        load_network(path)
    [problem] = info.value.problems
    assert (problem.file, problem.key) == (str(path), "")
    assert says in problem.reason


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "network.toml"
    path.write_bytes(b'[chain]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_network(path)
    assert "not UTF-8 text (bad byte at offset 19)" in info.value.problems[0].reason


def test_oversized_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("p2pledger.config._files.MAX_FILE_BYTES", 10)
    path = tmp_path / "network.toml"
    path.write_text("#" * 11)
    with pytest.raises(ConfigError, match="larger than 10 bytes"):
        load_network(path)


# --- round trips ------------------------------------------------------------------------

names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)
hostnames = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
addresses = st.builds(lambda h, p: f"{h}:{p}", hosts, st.integers(1, 65535))
positive = st.integers(1, 2**63 - 1)


@st.composite
def networks(draw: st.DrawFn) -> Network:
    n = draw(st.integers(1, 5))
    member_names = draw(st.lists(names, min_size=n, max_size=n, unique=True))
    admin_counts = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    user_counts = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    total = n + sum(admin_counts) + sum(user_counts)
    raw = draw(
        st.lists(st.binary(min_size=32, max_size=32), min_size=total, max_size=total, unique=True)
    )
    keys = iter(PublicKey(r) for r in raw)
    roles = draw(st.lists(st.sampled_from(Role), min_size=n, max_size=n))
    roles[draw(st.integers(0, n - 1))] = Role.VOTER
    members = tuple(
        Member(
            name=member_names[i],
            node_key=next(keys),
            address=draw(addresses),
            role=roles[i],
            admins=tuple(next(keys) for _ in range(admin_counts[i])),
            users=tuple(next(keys) for _ in range(user_counts[i])),
        )
        for i in range(n)
    )
    users = [u for m in members for u in m.users]
    funds: tuple[Fund, ...] = ()
    if users:
        fund_names = draw(st.lists(names, max_size=3, unique=True))
        issuers = st.lists(st.sampled_from(users), min_size=1, max_size=3, unique=True)
        funds = tuple(Fund(name=f, issuers=tuple(draw(issuers))) for f in fund_names)
    return Network(
        chain_name=draw(names),
        genesis_time_ms=draw(st.integers(0, 253_402_300_799_999)),  # up to year 9999
        limits=BlockLimits(
            max_transactions=draw(positive),
            max_bytes=draw(positive),
            batch_timeout_ms=draw(positive),
        ),
        members=members,
        funds=funds,
        version=draw(st.integers(0, 2**63 - 1)),
    )


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_network_round_trip(network: Network) -> None:
    text = network_to_toml(network)
    assert parse_network(text, source=SRC) == network
    assert network_to_toml(parse_network(text, source=SRC)) == text


def test_factory_network_round_trips() -> None:
    network = factory.TestNetwork(n=4).network
    assert parse_network(network_to_toml(network), source=SRC) == network


def test_network_to_toml_refuses_an_invalid_network() -> None:
    good = factory.TestNetwork(n=1).network
    bad = Network(
        chain_name="Not A Slug",
        genesis_time_ms=good.genesis_time_ms,
        limits=good.limits,
        members=good.members,
    )
    with pytest.raises(ConfigError) as info:
        network_to_toml(bad)
    assert [p.key for p in info.value.problems] == ["chain.name"]


def test_network_to_toml_refuses_an_impossible_date() -> None:
    good = factory.TestNetwork(n=1).network
    bad = Network(chain_name="c", genesis_time_ms=2**62, limits=good.limits, members=good.members)
    with pytest.raises(ConfigError, match=str(2**62)):
        network_to_toml(bad)


# A TOML value of any type, to put where the loader expects something else.
toml_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(),
        st.text(max_size=80),
        st.datetimes(timezones=st.sampled_from([None, dt.UTC])),
        st.dates(),
        st.times(),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into ``value``: tables' keys and arrays' indexes, at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    out: list[tuple[Any, ...]] = []
    for k, v in items:
        out.append((*path, k))
        if isinstance(v, dict | list):
            out.extend(leaf_paths(v, (*path, k)))
    return out


NETWORK_PATHS = leaf_paths(network_doc())


def key_path(path: tuple[Any, ...]) -> str:
    """``("members", 0, "users")`` as the loader names it: ``members[0].users``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NETWORK_PATHS), toml_values)
def test_any_single_bad_value_is_reported_at_its_key(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(network_doc())
    table = doc
    for part in path[:-1]:
        table = table[part]
    table[path[-1]] = value
    try:
        network = parse_network(tomli_w.dumps(doc), source=SRC)
    except ConfigError as exc:
        where = key_path(path)
        under = (f"{where}.", f"{where}[")
        if where.startswith("members"):  # a fund's issuer can lose its user key
            under += ("funds[",)
        assert any(p.key == where or p.key.startswith(under) for p in exc.problems), (
            where,
            exc.problems,
        )
        assert all(p.file == SRC and p.reason for p in exc.problems)
    else:  # the new value happened to be valid there
        assert parse_network(network_to_toml(network), source=SRC) == network


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text_gives_a_network_or_config_error(text: str) -> None:
    for parse in (
        lambda: parse_network(text, source=SRC),
        lambda: parse_node(text, source=NODE_SRC, base_dir=BASE),
    ):
        try:
            parse()
        except ConfigError as exc:
            assert exc.problems


# --- examples ------------------------------------------------------------------------------


def test_example_files_load_and_agree() -> None:
    network = load_network(EXAMPLES / "network.example.toml")
    assert len(network.members) == 4
    assert network.voters and any(m.role is Role.OBSERVER for m in network.members)
    assert {f.name for f in network.funds} == {"relief-2026", "court-deposits"}
    node = load_node(EXAMPLES / "node.example.toml")
    assert node.network == EXAMPLES / "network.example.toml"
    assert node.key_file == EXAMPLES / "node.key"
    assert node.limits == NodeLimits() and node.log == LogConfig()
    check_node_against_network(
        node, load_network(node.network), str(EXAMPLES / "node.example.toml")
    )


# --- node.toml --------------------------------------------------------------------------------


def test_minimal_node_gets_defaults_and_absolute_paths() -> None:
    cfg = parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE)
    assert cfg == NodeConfig(
        name="bank-a",
        network=Path("/srv/ledger/network.toml"),
        key_file=BASE / "node.key",
        data_dir=BASE / "data",
        listen="0.0.0.0:7401",
        api="127.0.0.1:8401",
        log=LogConfig(format=LogFormat.AUTO, level=LogLevel.INFO),
        limits=NodeLimits(),
    )


def test_full_node_file() -> None:
    doc = node_doc() | {
        "key_file": "/etc/p2pledger/bank-a.key",
        "data_dir": "state/ledger",
        "api": "[::1]:9000",
        "log": {"format": "json", "level": "debug"},
        "limits": {"max_frame_bytes": 1000, "max_tx_bytes": 1000, "handshake_timeout_s": 2},
    }
    cfg = parse_node(tomli_w.dumps(doc), source=NODE_SRC, base_dir=BASE)
    assert cfg.key_file == Path("/etc/p2pledger/bank-a.key")
    assert cfg.data_dir == BASE / "state" / "ledger"
    assert cfg.api == "[::1]:9000"
    assert cfg.log == LogConfig(format=LogFormat.JSON, level=LogLevel.DEBUG)
    assert cfg.limits.max_frame_bytes == 1000 and cfg.limits.mempool_max_txs == 20_000
    assert cfg.limits.handshake_timeout_s == 2.0 and isinstance(
        cfg.limits.handshake_timeout_s, float
    )


def test_load_node_resolves_against_the_file_directory(tmp_path: Path) -> None:
    (tmp_path / "bank-a").mkdir()
    path = tmp_path / "bank-a" / "node.toml"
    path.write_text(tomli_w.dumps(node_doc()))
    cfg = load_node(path)
    assert cfg.network == tmp_path / "network.toml"
    assert cfg.data_dir == tmp_path / "bank-a" / "data"


@pytest.mark.parametrize(
    ("path", "where"),
    [((), "colour"), (("log",), "log.colour"), (("limits",), "limits.colour")],
)
def test_node_unknown_key(path: tuple[str, ...], where: str) -> None:
    doc = node_doc() | {"log": {}, "limits": {}}
    table = doc
    for part in path:
        table = table[part]
    table["colour"] = "blue"
    problem = only_problem(doc, node=True)
    assert problem.key == where
    assert "unknown key 'colour'" in problem.reason and "allowed keys here:" in problem.reason


@pytest.mark.parametrize("field", ["name", "network", "listen"])
def test_node_missing_required_key(field: str) -> None:
    doc = node_doc()
    del doc[field]
    problem = only_problem(doc, node=True)
    assert (problem.key, problem.reason) == (field, f"missing required key {field!r}")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("name", "Bank A", '"Bank A" is not a valid name'),
        ("network", "", '"" is not a usable path'),
        ("key_file", "a\0b", "is not a usable path"),
        ("data_dir", 3, "expected a string, got integer 3"),
        ("listen", "0.0.0.0", '"0.0.0.0" is not a valid host:port address: no port'),
        ("api", "localhost:99999", '"localhost:99999" is not a valid host:port address'),
        ("log", "json", 'expected a table [log], got string "json"'),
    ],
)
def test_node_bad_value(field: str, value: Any, says: str) -> None:
    doc = node_doc() | {field: value}
    problem = only_problem(doc, node=True)
    assert problem.key == field
    assert says in problem.reason


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("format", "text", '"text" is not one of "json", "console", "auto"'),
        ("level", "verbose", '"verbose" is not one of "debug", "info", "warning", "error"'),
        ("level", "INFO", '"INFO" is not one of'),
    ],
)
def test_node_bad_log_setting(field: str, value: str, says: str) -> None:
    problem = only_problem(node_doc() | {"log": {field: value}}, node=True)
    assert problem.key == f"log.{field}"
    assert says in problem.reason


@pytest.mark.parametrize(
    "field",
    [
        "max_frame_bytes",
        "max_tx_bytes",
        "mempool_max_txs",
        "mempool_max_bytes",
        "peer_queue_max_messages",
        "peer_queue_max_bytes",
    ],
)
@pytest.mark.parametrize("value", [0, -3])
def test_node_non_positive_limits(field: str, value: int) -> None:
    problem = only_problem(node_doc() | {"limits": {field: value}}, node=True)
    assert (problem.key, problem.reason) == (f"limits.{field}", f"must be positive, got {value}")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "must be a positive finite number, got 0"),
        (-1.5, "got -1.5"),
        (math.inf, "got inf"),
        (math.nan, "got nan"),
        ("5s", 'expected a number, got string "5s"'),
        (False, "expected a number, got boolean false"),
    ],
)
def test_node_bad_handshake_timeout(value: Any, says: str) -> None:
    problem = only_problem(node_doc() | {"limits": {"handshake_timeout_s": value}}, node=True)
    assert problem.key == "limits.handshake_timeout_s"
    assert says in problem.reason


def test_node_transaction_must_fit_in_a_frame_and_the_mempool() -> None:
    limits = {"max_frame_bytes": 100, "mempool_max_bytes": 50, "max_tx_bytes": 200}
    found = problems(tomli_w.dumps(node_doc() | {"limits": limits}), node=True)
    assert [(p.key, p.reason) for p in found] == [
        (
            "limits.max_tx_bytes",
            "200 is more than max_frame_bytes (100); one transaction must fit in it",
        ),
        (
            "limits.max_tx_bytes",
            "200 is more than mempool_max_bytes (50); one transaction must fit in it",
        ),
    ]


def test_node_problems_are_reported_together() -> None:
    doc = {
        "name": "X",
        "listen": "nowhere",
        "log": {"level": "loud"},
        "limits": {"max_tx_bytes": 0},
    }
    found = problems(tomli_w.dumps(doc), node=True)
    assert [p.key for p in found] == [
        "name",
        "network",
        "listen",
        "log.level",
        "limits.max_tx_bytes",
    ]


def test_node_toml_syntax_error() -> None:
    [problem] = problems('name = "a"\nname = "b"\n', node=True)
    assert problem.key == "" and "line 2" in problem.reason


paths = st.lists(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True), min_size=1, max_size=3
).map(lambda parts: Path(*parts))


@st.composite
def node_configs(draw: st.DrawFn) -> NodeConfig:
    where = st.sampled_from([BASE, BASE.parent, Path("/var/lib/p2pledger")])
    frame, mempool = draw(positive), draw(positive)
    key_file = draw(where) / draw(paths)
    next_key = st.builds(lambda d, p: d / p, where, paths).filter(lambda p: p != key_file)
    return NodeConfig(
        name=draw(names),
        network=draw(where) / draw(paths),
        key_file=key_file,
        next_key_file=draw(st.none() | next_key),
        join=draw(st.booleans()),
        data_dir=draw(where) / draw(paths),
        listen=draw(addresses),
        api=draw(addresses),
        log=LogConfig(
            format=draw(st.sampled_from(LogFormat)), level=draw(st.sampled_from(LogLevel))
        ),
        dial=draw(st.dictionaries(names, addresses, max_size=3)),
        limits=NodeLimits(
            max_frame_bytes=frame,
            max_tx_bytes=draw(st.integers(1, min(frame, mempool))),
            mempool_max_txs=draw(positive),
            mempool_max_bytes=mempool,
            peer_queue_max_messages=draw(positive),
            peer_queue_max_bytes=draw(positive),
            handshake_timeout_s=draw(
                st.floats(min_value=0, exclude_min=True, allow_infinity=False, allow_nan=False)
            ),
        ),
    )


@settings(max_examples=75, deadline=None)
@given(node_configs(), st.sampled_from([BASE, None]))
def test_node_round_trip(cfg: NodeConfig, relative_to: Path | None) -> None:
    text = node_to_toml(cfg, relative_to=relative_to)
    base_dir = relative_to or Path("/somewhere/else")
    assert parse_node(text, source=NODE_SRC, base_dir=base_dir) == cfg


def test_node_to_toml_writes_relative_paths() -> None:
    cfg = parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE)
    text = node_to_toml(cfg, relative_to=BASE)
    assert 'network = "../network.toml"' in text and 'data_dir = "data"' in text
    assert f'data_dir = "{BASE / "data"}"' in node_to_toml(cfg)


def test_node_to_toml_refuses_an_invalid_config() -> None:
    cfg = parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE)
    bad = NodeConfig(name=cfg.name, network=cfg.network, key_file=cfg.key_file,
                     data_dir=cfg.data_dir, listen="no port", api=cfg.api)  # fmt: skip
    with pytest.raises(ConfigError) as info:
        node_to_toml(bad)
    assert [p.key for p in info.value.problems] == ["listen"]


def test_check_node_against_network() -> None:
    network = factory.TestNetwork(n=3).network
    member = parse_node(tomli_w.dumps(node_doc() | {"name": "m1"}), source=NODE_SRC, base_dir=BASE)
    check_node_against_network(member, network, NODE_SRC)
    stranger = parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE)
    with pytest.raises(ConfigError) as info:
        check_node_against_network(stranger, network, NODE_SRC)
    [problem] = info.value.problems
    assert (problem.file, problem.key) == (NODE_SRC, "name")
    assert '"bank-a" is not a member of chain "test-chain"' in problem.reason
    assert "its members are: m0, m1, m2" in problem.reason
    assert "join = true" in problem.reason


def test_a_joining_member_need_not_be_in_the_founding_file() -> None:
    network = factory.TestNetwork(n=3).network
    doc = node_doc() | {"join": True}
    joining = parse_node(tomli_w.dumps(doc), source=NODE_SRC, base_dir=BASE)
    assert joining.join is True
    check_node_against_network(joining, network, NODE_SRC)
    assert parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE).join is False
    problem = only_problem(node_doc() | {"join": "yes"}, node=True)
    assert problem.key == "join" and "expected true or false" in problem.reason


def test_next_key_file_is_optional_and_resolved_like_the_key_file() -> None:
    doc = node_doc() | {"key_file": "keys/node.key", "next_key_file": "keys/node-next.key"}
    cfg = parse_node(tomli_w.dumps(doc), source=NODE_SRC, base_dir=BASE)
    assert cfg.next_key_file == BASE / "keys/node-next.key"
    assert 'next_key_file = "keys/node-next.key"' in node_to_toml(cfg, relative_to=BASE)
    assert (
        parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE).next_key_file is None
    )
    same = only_problem(doc | {"next_key_file": "keys/node.key"}, node=True)
    assert same.key == "next_key_file" and "is the key_file itself" in same.reason
    bad = only_problem(doc | {"next_key_file": 7}, node=True)
    assert bad.key == "next_key_file" and "expected a string" in bad.reason


def test_node_dial_table_overrides_addresses() -> None:
    doc = node_doc() | {"name": "m0", "dial": {"m1": "127.0.0.1:9101", "m2": "[::1]:9102"}}
    cfg = parse_node(tomli_w.dumps(doc), source=NODE_SRC, base_dir=BASE)
    assert cfg.dial == {"m1": "127.0.0.1:9101", "m2": "[::1]:9102"}
    check_node_against_network(cfg, factory.TestNetwork(n=3).network, NODE_SRC)
    assert parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE).dial == {}


@pytest.mark.parametrize(
    ("dial", "where", "says"),
    [
        ({"m1": "no port"}, "dial.m1", "not a valid host:port"),
        ({"m1": 7401}, "dial.m1", "expected a string"),
        ({"Bad Name": "127.0.0.1:1"}, "dial.Bad Name", "not a member name"),
    ],
)
def test_node_bad_dial_entries(dial: dict[str, Any], where: str, says: str) -> None:
    problem = only_problem(node_doc() | {"dial": dial}, node=True)
    assert problem.key == where and says in problem.reason


def test_node_dial_must_be_a_table() -> None:
    problem = only_problem(node_doc() | {"dial": "127.0.0.1:1"}, node=True)
    assert problem.key == "dial" and "expected a table [dial]" in problem.reason


def test_dial_entries_name_other_members_maybe_later_ones() -> None:
    network = factory.TestNetwork(n=3).network
    doc = node_doc() | {"name": "m0", "dial": {"m0": "127.0.0.1:1", "m9": "127.0.0.1:2"}}
    cfg = parse_node(tomli_w.dumps(doc), source=NODE_SRC, base_dir=BASE)
    with pytest.raises(ConfigError) as info:
        check_node_against_network(cfg, network, NODE_SRC)
    reasons = {p.key: p.reason for p in info.value.problems}
    assert "does not dial itself" in reasons["dial.m0"]
    assert "dial.m9" not in reasons  # m9 may join later: not in the founding file
    later = dataclasses.replace(cfg, dial={"m9": "127.0.0.1:2"})
    check_node_against_network(later, network, NODE_SRC)


def test_verify_threads_is_read_and_zero_means_one_per_core() -> None:
    doc = node_doc() | {"limits": {"verify_threads": 2}}
    node = parse_node(tomli_w.dumps(doc), source=NODE_SRC, base_dir=BASE)
    assert node.limits.verify_threads == 2
    assert parse_node(tomli_w.dumps(node_doc()), source=NODE_SRC, base_dir=BASE).limits == (
        NodeLimits(verify_threads=0)
    )
    problem = only_problem(node_doc() | {"limits": {"verify_threads": -1}}, node=True)
    assert problem.key == "limits.verify_threads"


def test_worker_threads_is_a_boolean_and_off_leaves_no_verify_threads_to_set() -> None:
    doc = node_doc() | {"limits": {"worker_threads": False}}
    node = parse_node(tomli_w.dumps(doc), source=NODE_SRC, base_dir=BASE)
    assert node.limits.worker_threads is False
    again = parse_node(node_to_toml(node, relative_to=BASE), source=NODE_SRC, base_dir=BASE)
    assert again.limits == node.limits
    problem = only_problem(node_doc() | {"limits": {"worker_threads": "no"}}, node=True)
    assert problem.key == "limits.worker_threads" and "true or false" in problem.reason
    both = node_doc() | {"limits": {"worker_threads": False, "verify_threads": 2}}
    problem = only_problem(both, node=True)
    assert problem.key == "limits.verify_threads" and "worker_threads = false" in problem.reason
