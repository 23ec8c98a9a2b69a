"""Signed transactions of the test network's users, for the API tests."""

from __future__ import annotations

from typing import Any

from p2pledger.chain import Transaction
from tests.factory import GENESIS_TIME_MS, TestNetwork


def signed(net: TestNetwork, user: int, op: str, args: dict[str, Any], nonce: int) -> Transaction:
    return Transaction.create(
        net.user_keys[user],
        chain_id=net.chain_id,
        op=op,
        args=args,
        nonce=nonce,
        time_ms=GENESIS_TIME_MS + nonce,
    )


def account(net: TestNetwork, user: int) -> bytes:
    return net.user_keys[user].public_key.raw


def issue(net: TestNetwork, *, to: int, amount: int, nonce: int = 1) -> Transaction:
    """User 0, the issuer of "relief", issues ``amount`` to user ``to``."""
    args = {"fund": "relief", "to": account(net, to), "amount": amount, "memo": "allocation"}
    return signed(net, 0, "fund.issue", args, nonce)


def transfer(net: TestNetwork, *, sender: int, to: int, amount: int, nonce: int = 2) -> Transaction:
    args = {
        "fund": "relief",
        "from": account(net, sender),
        "to": account(net, to),
        "amount": amount,
        "memo": "",
    }
    return signed(net, sender, "fund.transfer", args, nonce)


def anchoring(net: TestNetwork, digest: bytes, *, nonce: int = 3) -> Transaction:
    return signed(net, 1, "notary.anchor", {"digest": digest, "description": "invoice"}, nonce)
