"""Proposals: one canonical encoding, strict decoding, approvals any Ed25519 tool can
check, and the arguments of the ``config.update`` transaction."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pledger import codec
from p2pledger.membership import (
    PROPOSAL_TYPE,
    Approval,
    BadApproval,
    BadUpdateArgs,
    MalformedProposal,
    Network,
    Proposal,
    parse_update_args,
    sign_proposal,
    update_args,
    verify_approvals,
)
from tests.factory import TestNetwork, edit_member, seeded_key
from tests.test_config import networks

NET = TestNetwork(n=3)
NEW = edit_member(NET.network, "m0", address="10.0.0.1:7000")
PROPOSAL = Proposal(chain_id=NET.chain_id, base_version=0, network=NEW)
RAW = PROPOSAL.encode()
OPENSSL = shutil.which("openssl")


def value() -> dict[str, Any]:
    v: dict[str, Any] = codec.decode(RAW)
    return v


def test_round_trip_and_digest() -> None:
    assert Proposal.decode(RAW) == PROPOSAL
    assert PROPOSAL.encode() == RAW  # deterministic
    assert len(PROPOSAL.digest) == 32
    assert value()["type"] == PROPOSAL_TYPE
    assert value()["network"] == NEW.to_value()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.binary(min_size=32, max_size=32), st.integers(0, 2**63 - 1))
def test_any_network_round_trips(network: Network, chain: bytes, base: int) -> None:
    proposal = Proposal(chain_id=chain, base_version=base, network=network)
    data = proposal.encode()
    assert Proposal.decode(data) == proposal
    assert Proposal.decode(data).encode() == data


def test_a_non_canonical_encoding_is_refused() -> None:
    v = value()
    reordered = {"type": v["type"], "chain": v["chain"], "base_version": 0, "network": v["network"]}
    data = cbor2.dumps(reordered)  # insertion order: not RFC 8949's key order
    assert codec.decode(cbor2.dumps(reordered, canonical=True)) == v
    with pytest.raises(MalformedProposal, match="not canonical"):
        Proposal.decode(data)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda v: v.update(type="p2pledger/config-proposal/2"), "unknown proposal type"),
        (lambda v: v.update(extra=1), "exactly"),
        (lambda v: v.pop("base_version"), "exactly"),
        (lambda v: v.update(chain=b"\x01" * 31), "32-byte chain id"),
        (lambda v: v.update(base_version=-1), "non-negative"),
        (lambda v: v.update(base_version=True), "non-negative"),
        (lambda v: v["network"].update(extra="x"), "fields a network does not have"),
        (lambda v: v["network"]["members"][0].update(role="king"), "malformed"),
        (lambda v: v["network"]["members"][0].update(node_key=b"short"), "malformed"),
        (lambda v: v["network"]["members"][0]["users"].append("text"), "malformed"),
        (lambda v: v.update(network=[]), "malformed"),
    ],
)
def test_a_malformed_proposal_is_refused(change: Any, says: str) -> None:
    v = value()
    change(v)
    with pytest.raises(MalformedProposal, match=says) as info:
        Proposal.decode(codec.encode(v))
    assert info.value.code == "bad_config"


@pytest.mark.parametrize("data", [b"", b"\xff", RAW + b"\x00", RAW[:-1], codec.encode([1])])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedProposal):
        Proposal.decode(data)


def test_approvals_verify_over_exactly_the_proposal() -> None:
    admins = NET.admin_keys
    approvals = [sign_proposal(RAW, k) for k in admins]
    assert verify_approvals(RAW, approvals) == {k.public_key for k in admins}
    other = dataclasses.replace(PROPOSAL, base_version=1).encode()
    with pytest.raises(BadApproval) as info:
        verify_approvals(other, approvals)
    assert info.value.admin == admins[0].public_key
    assert info.value.code == "bad_approval"
    assert "another base version" in str(info.value)
    forged = Approval(admin=admins[1].public_key, sig=approvals[0].sig)
    with pytest.raises(BadApproval):
        verify_approvals(RAW, [approvals[0], forged])


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed on this machine")
def test_an_approval_verifies_with_openssl(tmp_path: Path) -> None:
    assert OPENSSL is not None
    key = NET.admin_keys[0]
    approval = sign_proposal(RAW, key)
    (tmp_path / "admin.pem").write_text(key.public_key.to_pem())
    (tmp_path / "proposal.bin").write_bytes(RAW)
    (tmp_path / "approval.sig").write_bytes(approval.sig)
    cmd = [
        OPENSSL,
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "admin.pem",
        "-rawin",
        "-in",
        "proposal.bin",
        "-sigfile",
        "approval.sig",
    ]
    ok = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Signature Verified Successfully" in ok.stdout


def test_update_args_round_trip_in_key_order() -> None:
    approvals = [sign_proposal(RAW, k) for k in NET.admin_keys]
    args = update_args(RAW, reversed(approvals))
    assert [pair[0] for pair in args["approvals"]] == sorted(
        k.public_key.raw for k in NET.admin_keys
    )
    proposal, parsed = parse_update_args(args)
    assert proposal == RAW
    assert set(parsed) == set(approvals)
    codec.encode(args)  # in the data model of a transaction


GOOD = update_args(RAW, [sign_proposal(RAW, NET.admin_keys[0])])
PAIR = GOOD["approvals"][0]


@pytest.mark.parametrize(
    "args",
    [
        {"proposal": RAW},
        {**GOOD, "extra": 1},
        {**GOOD, "proposal": "text"},
        {**GOOD, "approvals": {}},
        {**GOOD, "approvals": [PAIR[0]]},
        {**GOOD, "approvals": [[PAIR[0]]]},
        {**GOOD, "approvals": [[PAIR[0][:31], PAIR[1]]]},
        {**GOOD, "approvals": [[PAIR[0], PAIR[1][:63]]]},
        {**GOOD, "approvals": [[PAIR[0], PAIR[1], b""]]},
        {**GOOD, "approvals": [PAIR, PAIR]},
    ],
    ids=[
        "no approvals",
        "extra key",
        "proposal not bytes",
        "approvals not a list",
        "approval not a pair",
        "approval of one",
        "short key",
        "short signature",
        "triple",
        "twice",
    ],
)
def test_malformed_update_args_are_refused(args: dict[str, Any]) -> None:
    with pytest.raises(BadUpdateArgs) as info:
        parse_update_args(args)
    assert info.value.code == "bad_args"


def test_a_stranger_can_sign_but_it_is_no_admin() -> None:
    """Signatures are only checked here; who may approve is the policy's business."""
    stranger = seeded_key("stranger")
    assert verify_approvals(RAW, [sign_proposal(RAW, stranger)]) == {stranger.public_key}
