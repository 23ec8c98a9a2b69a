"""Test helpers: a small network with keys, and chains of valid signed blocks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from p2pledger.chain import VALID, ZERO_HASH, Block, Transaction, build_block, genesis_block
from p2pledger.crypto import SigningKey
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role

GENESIS_TIME_MS = 1_790_000_000_000


def seeded_key(label: str) -> SigningKey:
    """A deterministic key, so tests and their failures replay exactly."""

    return SigningKey(hashlib.sha256(label.encode()).digest())


@dataclass
class TestNetwork:
    """A network of ``n`` voters, one admin and one user each, and one fund."""

    __test__ = False  # a helper, not a test class

    n: int = 3
    node_keys: list[SigningKey] = field(default_factory=list)
    admin_keys: list[SigningKey] = field(default_factory=list)
    user_keys: list[SigningKey] = field(default_factory=list)
    network: Network = field(init=False)

    def __post_init__(self) -> None:
        self.node_keys = [seeded_key(f"node-{i}") for i in range(self.n)]
        self.admin_keys = [seeded_key(f"admin-{i}") for i in range(self.n)]
        self.user_keys = [seeded_key(f"user-{i}") for i in range(self.n)]
        members = tuple(
            Member(
                name=f"m{i}",
                node_key=self.node_keys[i].public_key,
                address=f"127.0.0.1:{7000 + i}",
                role=Role.VOTER,
                admins=(self.admin_keys[i].public_key,),
                users=(self.user_keys[i].public_key,),
            )
            for i in range(self.n)
        )
        self.network = Network(
            chain_name="test-chain",
            genesis_time_ms=GENESIS_TIME_MS,
            limits=BlockLimits(),
            members=members,
            funds=(Fund(name="relief", issuers=(self.user_keys[0].public_key,)),),
        )

    @property
    def genesis(self) -> Block:
        return genesis_block(self.network)

    @property
    def chain_id(self) -> bytes:
        return self.genesis.hash

    def tx(self, nonce: int, *, user: int = 0, op: str = "notary.anchor") -> Transaction:

        args = {"digest": hashlib.sha256(nonce.to_bytes(8, "big")).digest(), "description": "t"}
        return Transaction.create(
            self.user_keys[user],
            chain_id=self.chain_id,
            op=op,
            args=args,
            nonce=nonce,
            time_ms=GENESIS_TIME_MS + nonce,
        )

    def chain(self, blocks: int, txs_per_block: int = 3) -> Iterator[Block]:
        """Genesis followed by ``blocks`` valid blocks (state root left at zero)."""
        parent = self.genesis
        yield parent
        nonce = 0
        for height in range(1, blocks + 1):
            txs = []
            for _ in range(txs_per_block):
                nonce += 1
                txs.append(self.tx(nonce).raw)
            parent = build_block(
                parent=parent.header,
                parent_hash=parent.hash,
                txs=txs,
                results=[VALID] * len(txs),
                state_root=ZERO_HASH,
                time_ms=GENESIS_TIME_MS + height * 1000,
                term=1,
                membership_version=0,
                proposer=self.node_keys[height % self.n],
            )
            yield parent
