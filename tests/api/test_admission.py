"""The stateless entry checks, including the allowance for transactions a member
passes on that were accepted before their signer lost its standing."""

from __future__ import annotations

import dataclasses

import pytest

from p2pledger import codec
from p2pledger.api.admission import check_entry
from p2pledger.api.errors import TxRejected
from tests.factory import TestNetwork, edit_member

NET = TestNetwork(n=3)


def test_a_revoked_signer_is_refused_to_clients_but_passed_on_by_gossip() -> None:
    tx = NET.tx(1, user=1)
    revoked = dataclasses.replace(edit_member(NET.network, "m1", users=()), version=1)
    assert check_entry(tx.raw, chain_id=NET.chain_id, network=NET.network).id == tx.id
    with pytest.raises(TxRejected) as info:  # a client's new submission
        check_entry(tx.raw, chain_id=NET.chain_id, network=revoked)
    assert info.value.reason == "unknown_signer"
    # passed on by a member that accepted it before the revocation: it is ordered (and
    # recorded invalid by the state machine), not lost
    former = {tx.signer.raw}
    passed = check_entry(tx.raw, chain_id=NET.chain_id, network=revoked, former_signers=former)
    assert passed.id == tx.id


def test_the_allowance_does_not_waive_the_signature_or_the_chain() -> None:
    tx = NET.tx(2, user=1)
    former = {tx.signer.raw}
    bad_sig = bytes([tx.sig[0] ^ 1]) + tx.sig[1:]
    forged = codec.encode({"body": tx.body, "sig": bad_sig})
    with pytest.raises(TxRejected) as info:
        check_entry(forged, chain_id=NET.chain_id, network=NET.network, former_signers=former)
    assert info.value.reason == "bad_signature"
    with pytest.raises(TxRejected) as info:
        check_entry(tx.raw, chain_id=b"\x00" * 32, network=NET.network, former_signers=former)
    assert info.value.reason == "wrong_chain"
