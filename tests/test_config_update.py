"""``config.update`` in the state machine: a valid update and its record, and every
refusal of docs/membership.md, each recorded invalid with its reason and changing
nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from p2pledger import codec
from p2pledger.chain import VALID, Transaction, TxResult
from p2pledger.crypto import SigningKey
from p2pledger.membership import (
    CONFIG_UPDATE_OP,
    BlockLimits,
    Network,
    Proposal,
    Role,
    sign_proposal,
    update_args,
)
from p2pledger.state import (
    GENESIS_STATE_ROOT,
    REASONS,
    ApplyOutcome,
    BlockContext,
    ConfigRecord,
    MemoryState,
    apply_block,
    decode_network,
    keys,
    network_in_force,
)
from p2pledger.state.config import CONFIG_REASONS
from tests.factory import (
    GENESIS_TIME_MS,
    TestNetwork,
    add_member,
    config_update,
    edit_member,
    new_member,
    remove_member,
    seeded_key,
)

NET = TestNetwork(n=3)
BASE = NET.network
CHAIN = NET.chain_id
ADMIN = NET.admin_keys
BANK_D, _ = new_member("bank-d", port=7401)
#: Add bank-d and revoke m1's user: needs a majority and m1's admin.
GROWN = add_member(edit_member(BASE, "m1", users=()), BANK_D)
GROWN = dataclasses.replace(GROWN, version=1)
STRANGER = seeded_key("stranger")


def ctx(network: Network = BASE, height: int = 1) -> BlockContext:
    return BlockContext(
        chain_id=CHAIN,
        height=height,
        time_ms=GENESIS_TIME_MS + height * 1000,
        network=network,
        prev_state_root=GENESIS_STATE_ROOT,
    )


def update(
    new: Network = GROWN,
    approvers: Sequence[SigningKey] = (ADMIN[0], ADMIN[1]),
    submitter: SigningKey = ADMIN[2],
    nonce: int = 1,
    **kw: Any,
) -> Transaction:
    return config_update(
        CHAIN, BASE, new, approvers=approvers, submitter=submitter, nonce=nonce, **kw
    )


def raw_update(args: dict[str, Any], submitter: SigningKey = ADMIN[0]) -> Transaction:
    return Transaction.create(
        submitter, chain_id=CHAIN, op=CONFIG_UPDATE_OP, args=args, nonce=9, time_ms=GENESIS_TIME_MS
    )


def apply(*txs: Transaction, network: Network = BASE) -> ApplyOutcome:
    return apply_block(MemoryState(), txs, ctx(network))


def refusal(tx: Transaction) -> str | None:
    """The reason ``tx`` is recorded invalid (None: valid); a refused one writes nothing."""
    outcome = apply(tx)
    [result] = outcome.results
    if not result.valid:
        assert result.reason in REASONS
        assert outcome.writes == {}
        assert outcome.network is None
    return result.reason


# --- a valid update ------------------------------------------------------------------


def test_a_valid_update_writes_the_network_and_its_record() -> None:
    tx = update()
    outcome = apply(tx)
    assert outcome.results == (VALID,)
    assert outcome.network == GROWN
    assert set(outcome.writes) == {keys.NETWORK_KEY, keys.config_version_key(1)}
    raw = outcome.writes[keys.NETWORK_KEY]
    assert raw is not None and decode_network(raw) == GROWN
    state = MemoryState()
    state.apply(outcome.writes)
    assert network_in_force(state) == GROWN
    record_bytes = outcome.writes[keys.config_version_key(1)]
    assert record_bytes is not None
    record = ConfigRecord.decode(record_bytes)
    assert record.version == 1 and record.height == 1 and record.tx_id == tx.id
    assert record.time_ms == GENESIS_TIME_MS + 1000
    assert record.changes[0].startswith("+ member bank-d (voter, 127.0.0.1:7401")
    assert record.changes[-1] == f"- m1 user {NET.user_keys[1].public_key.hex}"
    assert record.approvals == (("m0", ADMIN[0].public_key), ("m1", ADMIN[1].public_key))
    assert ConfigRecord.decode(codec.encode(record.to_value())) == record
    assert record.to_json()["approvals"][0] == {"member": "m0", "admin": ADMIN[0].public_key.hex}


def test_the_block_itself_is_judged_by_the_membership_in_force() -> None:
    """A user key the update revokes still signs validly in the update's own block."""
    revoked = NET.tx(5, user=1)
    outcome = apply(update(), revoked)
    assert outcome.results == (VALID, VALID)
    assert outcome.network == GROWN
    after = apply_block(MemoryState(), [NET.tx(6, user=1)], ctx(GROWN, height=2))
    assert after.results == (TxResult(False, "unknown_signer"),)


def test_the_submitter_need_not_be_an_approver() -> None:
    assert apply(update(submitter=ADMIN[2])).results == (VALID,)
    assert apply(update(submitter=ADMIN[0])).results == (VALID,)


def test_at_most_one_update_a_block() -> None:
    first = update(nonce=1)
    other = dataclasses.replace(edit_member(BASE, "m0", address="10.0.0.1:7000"), version=1)
    second = update(other, approvers=[ADMIN[0]], nonce=2)
    outcome = apply(first, second)
    assert outcome.results == (VALID, TxResult(False, "stale_config"))
    assert outcome.network == GROWN


# --- refusals ------------------------------------------------------------------------


def test_a_user_key_or_a_stranger_cannot_submit() -> None:
    assert refusal(update(submitter=NET.user_keys[0])) == "unknown_signer"
    assert refusal(update(submitter=STRANGER)) == "unknown_signer"
    assert refusal(update(submitter=NET.node_keys[0])) == "unknown_signer"


def test_bad_args() -> None:
    proposal = Proposal(chain_id=CHAIN, base_version=0, network=GROWN).encode()
    assert refusal(raw_update({"proposal": proposal})) == "bad_args"
    assert refusal(raw_update({"proposal": "hex", "approvals": []})) == "bad_args"
    pair = [ADMIN[0].public_key.raw, sign_proposal(proposal, ADMIN[0]).sig]
    assert refusal(raw_update({"proposal": proposal, "approvals": [pair, pair]})) == "bad_args"


def test_a_malformed_proposal_is_bad_config() -> None:
    assert refusal(raw_update({"proposal": b"\x00garbage", "approvals": []})) == "bad_config"
    value = Proposal(chain_id=CHAIN, base_version=0, network=GROWN).to_value()
    value["network"]["extra"] = 1
    assert refusal(raw_update({"proposal": codec.encode(value), "approvals": []})) == "bad_config"


def test_a_proposal_for_another_chain() -> None:
    other = TestNetwork(n=2).chain_id
    proposal = Proposal(chain_id=other, base_version=0, network=GROWN).encode()
    args = update_args(proposal, [sign_proposal(proposal, k) for k in ADMIN[:2]])
    assert refusal(raw_update(args)) == "wrong_chain"


def test_a_proposal_on_another_base_version_is_stale() -> None:
    assert refusal(update(base_version=1)) == "stale_config"
    v1 = GROWN
    v2 = dataclasses.replace(edit_member(v1, "m0", address="10.0.0.1:7000"), version=2)
    stale = config_update(CHAIN, v1, v2, approvers=[ADMIN[0]], submitter=ADMIN[0])
    assert refusal(stale) == "stale_config"  # the ledger is still at version 0


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (dataclasses.replace(GROWN, chain_name="other-chain"), "immutable_field"),
        (dataclasses.replace(GROWN, genesis_time_ms=1), "immutable_field"),
        (dataclasses.replace(GROWN, version=2), "bad_version"),
        (dataclasses.replace(BASE, version=1), "config_unchanged"),
        (edit_member(BASE, "m0", address="nowhere"), "bad_config"),
        (
            dataclasses.replace(BASE, limits=BlockLimits(max_transactions=0), version=1),
            "bad_config",
        ),
        (edit_member(BASE, "m0", name="m1"), "collision"),
        (
            edit_member(BASE, "m2", users=tuple(k.public_key for k in NET.user_keys[1:])),
            "collision",
        ),
        (edit_member(BASE, "m0", node_key=NET.admin_keys[1].public_key), "collision"),
        (
            dataclasses.replace(
                BASE,
                members=tuple(dataclasses.replace(m, role=Role.OBSERVER) for m in BASE.members),
                version=1,
            ),
            "no_voter",
        ),
        (
            dataclasses.replace(add_member(remove_member(BASE, "m2"), BANK_D), version=1),
            "too_many_conf_changes",
        ),
    ],
    ids=[
        "chain name",
        "genesis time",
        "version",
        "unchanged",
        "bad address",
        "zero limit",
        "member name",
        "user key",
        "node key",
        "no voter",
        "two conf changes",
    ],
)
def test_an_invalid_network(new: Network, reason: str) -> None:
    assert refusal(update(new, approvers=ADMIN)) == reason


def test_an_approval_from_a_non_admin() -> None:
    assert refusal(update(approvers=[ADMIN[0], ADMIN[1], STRANGER])) == "unauthorized_admin"
    assert refusal(update(approvers=[ADMIN[0], NET.user_keys[1]])) == "unauthorized_admin"


def test_an_approval_over_other_bytes() -> None:
    proposal = Proposal(chain_id=CHAIN, base_version=0, network=GROWN).encode()
    other = Proposal(chain_id=CHAIN, base_version=1, network=GROWN).encode()
    approvals = [sign_proposal(proposal, ADMIN[0]), sign_proposal(other, ADMIN[1])]
    assert refusal(raw_update(update_args(proposal, approvals))) == "bad_approval"


def test_too_few_approvals() -> None:
    assert refusal(update(approvers=[ADMIN[0]])) == "insufficient_approvals"
    assert refusal(update(approvers=[])) == "insufficient_approvals"
    # a majority, but not m1's admin, whose user key is revoked
    assert refusal(update(approvers=[ADMIN[0], ADMIN[2]])) == "insufficient_approvals"


def test_every_config_reason_is_a_reason() -> None:
    assert set(CONFIG_REASONS) <= set(REASONS)
    assert len(REASONS) == len(set(REASONS))
