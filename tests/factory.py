"""Test helpers: a small network with keys, and chains of valid signed blocks."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from p2pledger.chain import VALID, ZERO_HASH, Block, Transaction, build_block, genesis_block
from p2pledger.crypto import SigningKey
from p2pledger.membership import (
    CONFIG_UPDATE_OP,
    BlockLimits,
    Fund,
    Member,
    Network,
    Proposal,
    Role,
    sign_proposal,
    update_args,
)

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


# --- membership updates ------------------------------------------------------------


def edit_member(network: Network, who: str, /, **changes: Any) -> Network:
    """``network`` with member ``who`` changed (its position kept), version + 1."""
    members = tuple(
        dataclasses.replace(m, **changes) if m.name == who else m for m in network.members
    )
    assert any(m.name == who for m in network.members), who
    return dataclasses.replace(network, members=members, version=network.version + 1)


def add_member(network: Network, member: Member) -> Network:
    """``network`` with ``member`` appended, version + 1."""
    return dataclasses.replace(
        network, members=(*network.members, member), version=network.version + 1
    )


def remove_member(network: Network, name: str) -> Network:
    """``network`` without member ``name``, version + 1."""
    members = tuple(m for m in network.members if m.name != name)
    return dataclasses.replace(network, members=members, version=network.version + 1)


def new_member(label: str, *, port: int, role: Role = Role.VOTER) -> tuple[Member, SigningKey]:
    """A member named ``label`` with seeded node, admin and user keys; and its node key."""
    node = seeded_key(f"{label}-node")
    member = Member(
        name=label,
        node_key=node.public_key,
        address=f"127.0.0.1:{port}",
        role=role,
        admins=(seeded_key(f"{label}-admin").public_key,),
        users=(seeded_key(f"{label}-user").public_key,),
    )
    return member, node


def config_update(
    chain_id: bytes,
    base: Network,
    new: Network,
    *,
    approvers: Sequence[SigningKey],
    submitter: SigningKey,
    nonce: int = 1,
    base_version: int | None = None,
) -> Transaction:
    """The ``config.update`` transaction proposing ``new`` after ``base``, approved by
    ``approvers`` and signed by ``submitter``."""
    proposal = Proposal(
        chain_id=chain_id,
        base_version=base.version if base_version is None else base_version,
        network=new,
    ).encode()
    return Transaction.create(
        submitter,
        chain_id=chain_id,
        op=CONFIG_UPDATE_OP,
        args=update_args(proposal, [sign_proposal(proposal, k) for k in approvers]),
        nonce=nonce,
        time_ms=GENESIS_TIME_MS + nonce,
    )
