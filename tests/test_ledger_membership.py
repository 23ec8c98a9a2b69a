"""A real ledger across membership updates: from the height after an update every
block is checked against the new membership (its version in the header, a voter of
it as proposer, users of it as signers); it survives a reopen; the audit replays it."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from p2pledger.audit import audit_data_dir
from p2pledger.chain import VALID, Block, Transaction, TxResult, build_block
from p2pledger.cli import main
from p2pledger.crypto import SigningKey
from p2pledger.errors import InvalidBlock
from p2pledger.ledger import Ledger
from p2pledger.membership import Network
from p2pledger.replay import commit_block
from p2pledger.state import ApplyOutcome, MemoryState
from p2pledger.state.config import founding_record
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
ADMIN = NET.admin_keys
BANK_D, BANK_D_NODE = new_member("bank-d", port=7401)
BANK_D_ADMIN = seeded_key("bank-d-admin")
BANK_D_USER = seeded_key("bank-d-user")
#: v1: bank-d joins as a voter and m1's user key is revoked.
V1 = dataclasses.replace(add_member(edit_member(NET.network, "m1", users=()), BANK_D), version=1)
#: v2: m2 leaves.
V2 = remove_member(V1, "m2")


def anchor_by(key: SigningKey, nonce: int) -> Transaction:
    return Transaction.create(
        key,
        chain_id=NET.chain_id,
        op="notary.anchor",
        args={"digest": hashlib.sha256(b"%d" % nonce).digest(), "description": "d"},
        nonce=nonce,
        time_ms=GENESIS_TIME_MS + nonce,
    )


def grow(
    ledger: Ledger, txs: list[Transaction], key: SigningKey, height: int
) -> tuple[Block, ApplyOutcome]:
    """Propose the next block with ``key`` and commit it, as a leader and its members do."""
    block, outcome = ledger.execute_proposal(
        txs, key=key, time_ms=GENESIS_TIME_MS + height * 1000, term=1
    )
    committed = ledger.commit(block)
    assert committed.results == outcome.results
    assert committed.network == outcome.network
    return block, committed


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A ledger of five blocks: v1 at height 1, then v2 at height 3."""
    path = tmp_path / "data"
    with Ledger.create(path, NET.network) as ledger:
        assert ledger.network == NET.network
        up1 = config_update(NET.chain_id, NET.network, V1, approvers=ADMIN[:2], submitter=ADMIN[0])
        block, outcome = grow(ledger, [up1, anchor_by(NET.user_keys[1], 2)], NET.node_keys[0], 1)
        assert block.header.membership_version == 0
        assert outcome.results == (VALID, VALID)  # still version 0 in its own block
        assert outcome.network == V1 and ledger.network == V1

        # Height 2: proposed by the new voter; the revoked key signs nothing valid.
        revoked, fresh = anchor_by(NET.user_keys[1], 3), anchor_by(BANK_D_USER, 4)
        block, outcome = grow(ledger, [revoked, fresh], BANK_D_NODE, 2)
        assert block.header.membership_version == 1
        assert outcome.results == (TxResult(False, "unknown_signer"), VALID)
        assert outcome.network is None

        # Height 3: m2 leaves; 3 of 4 organisations approve, one of them bank-d.
        up2 = config_update(
            NET.chain_id,
            V1,
            V2,
            approvers=[ADMIN[0], ADMIN[2], BANK_D_ADMIN],
            submitter=BANK_D_ADMIN,
        )
        _, outcome = grow(ledger, [up2], NET.node_keys[2], 3)
        assert outcome.results == (VALID,) and ledger.network == V2
        grow(ledger, [anchor_by(NET.user_keys[0], 5)], BANK_D_NODE, 4)
        grow(ledger, [anchor_by(NET.user_keys[2], 6)], NET.node_keys[1], 5)  # m2's user: gone
    return path


def test_the_network_follows_the_ledger_and_survives_a_reopen(data_dir: Path) -> None:
    with Ledger.open(data_dir) as ledger:
        assert ledger.network == V2
        assert ledger.founding_network == NET.network
        assert ledger.tip.results == (TxResult(False, "unknown_signer"),)
        history = ledger.config_history()
    assert [(r.version, r.height) for r in history] == [(0, 0), (1, 1), (2, 3)]
    assert history[0] == founding_record(NET.network)
    assert history[2].changes == ("- member m2 (voter, 127.0.0.1:7002)",)
    assert [m for m, _ in history[2].approvals] == ["bank-d", "m0", "m2"]


def test_a_removed_voter_can_no_longer_propose(data_dir: Path) -> None:
    with Ledger.open(data_dir) as ledger:
        block = ledger.propose(
            [anchor_by(NET.user_keys[0], 7)],
            key=NET.node_keys[2],
            time_ms=GENESIS_TIME_MS + 9000,
            term=2,
        )
        with pytest.raises(InvalidBlock) as info:
            ledger.commit(block)
        assert info.value.reason == "proposer_not_voter"
        assert ledger.tip.height == 5  # nothing stored


def test_a_block_with_the_old_version_is_refused(data_dir: Path) -> None:
    with Ledger.open(data_dir) as ledger:
        tip = ledger.tip
        stale = build_block(
            parent=tip.header,
            parent_hash=tip.hash,
            txs=[],
            results=[],
            state_root=tip.header.state_root,
            time_ms=tip.header.time_ms,
            term=2,
            membership_version=1,
            proposer=NET.node_keys[0],
        )
        with pytest.raises(InvalidBlock) as info:
            ledger.commit(stale)
        assert info.value.reason == "wrong_membership_version"


def test_a_new_voter_cannot_propose_before_the_update(tmp_path: Path) -> None:
    with Ledger.create(tmp_path / "d", NET.network) as ledger:
        block = ledger.propose([], key=BANK_D_NODE, time_ms=GENESIS_TIME_MS + 1, term=1)
        with pytest.raises(InvalidBlock) as info:
            ledger.commit(block)
        assert info.value.reason == "proposer_not_voter"


def test_the_audit_replays_across_membership_updates(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = audit_data_dir(data_dir, workers=1)
    assert report.ok, report.error
    assert report.membership_version == 2
    assert report.height == 5 and report.invalid == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(data_dir)])
    assert exit_info.value.code == 0
    assert "membership version 2 in force at the tip" in capsys.readouterr().out


def test_the_audit_catches_a_block_judged_by_the_old_membership(data_dir: Path) -> None:
    """Re-executing height 2 against version 0 (as a member that missed the update
    would) is refused: the audit must carry the membership forward."""
    with Ledger.open(data_dir) as ledger:
        blocks = list(ledger.store.blocks(0))
    state = MemoryState()
    parent = blocks[0]
    network: Network = NET.network
    outcome = commit_block(
        state, blocks[1], parent=parent.header, parent_hash=parent.hash, network=network
    )
    state.apply(outcome.writes)
    with pytest.raises(InvalidBlock) as info:
        commit_block(
            state, blocks[2], parent=blocks[1].header, parent_hash=blocks[1].hash, network=network
        )
    assert info.value.reason == "wrong_membership_version"


def test_a_receipt_from_a_later_membership_verifies_against_that_membership(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from p2pledger import config  # noqa: PLC0415 - only this test writes network files

    def run(*args: str | Path) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        out = capsys.readouterr()
        code = exit_info.value.code
        return (code if isinstance(code, int) else 1), out.out + out.err

    with Ledger.open(data_dir) as ledger:
        tx_id = ledger.store.block(2).to_json()["tx_ids"][1]  # bank-d's user, under v1
    founding, v1 = tmp_path / "network.toml", tmp_path / "v1.toml"
    founding.write_text(config.network_to_toml(NET.network))
    v1.write_text(config.network_to_toml(V1))
    receipt = tmp_path / "r.json"
    assert run("prove", tx_id, "--data-dir", data_dir, "--out", receipt)[0] == 0
    code, out = run("verify-receipt", receipt, "--network", founding)
    assert code == 1 and "proposed under membership version 1" in out and "--membership" in out
    code, out = run("verify-receipt", receipt, "--network", founding, "--membership", v1)
    assert code == 0 and "receipt OK" in out and "proposed by bank-d" in out
    code, out = run("verify-receipt", receipt, "--network", v1)  # v1 cannot fix the chain id
    assert code == 1 and "founding network.toml (version 0)" in out and "Traceback" not in out
