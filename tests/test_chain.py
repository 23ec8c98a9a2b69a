"""Transactions, blocks, genesis and block validation (p2pledger.chain)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pledger import codec
from p2pledger.chain import (
    VALID,
    ZERO_HASH,
    Block,
    Header,
    Transaction,
    TxResult,
    build_block,
    chain_id_of,
    genesis_block,
    network_of_genesis,
    results_root,
    tx_root,
    validate_block,
)
from p2pledger.chain.block import HEADER_TYPE
from p2pledger.chain.genesis import NotFoundingNetwork
from p2pledger.chain.merkle import root as merkle_root
from p2pledger.chain.tx import MAX_TX_SIZE, TX_TYPE
from p2pledger.chain.validation import REASONS
from p2pledger.crypto import SigningKey
from p2pledger.errors import InvalidBlock, InvalidTransaction, NonCanonical
from p2pledger.membership import BlockLimits, Network, Role
from tests.factory import GENESIS_TIME_MS, seeded_key
from tests.factory import TestNetwork as Net  # a Test* name would be collected by pytest

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=40)


@pytest.fixture(scope="module")
def net() -> Net:
    return Net()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def encode_map_in_order(items: list[tuple[str, Any]]) -> bytes:
    """A CBOR map (fewer than 24 entries) with its keys in the order given, canonical or not."""
    assert len(items) < 24
    return bytes([0xA0 | len(items)]) + b"".join(
        codec.encode(k) + codec.encode(v) for k, v in items
    )


# --- transactions ------------------------------------------------------------------------


def body_value(net: Net, **changes: Any) -> dict[str, Any]:
    """A well-formed transaction body; a change to ``...`` removes that key."""
    value: dict[str, Any] = {
        "type": TX_TYPE,
        "chain": net.chain_id,
        "signer": net.user_keys[0].public_key.raw,
        "nonce": 7,
        "time": GENESIS_TIME_MS + 7,
        "op": "notary.anchor",
        "args": {"digest": sha256(b"invoice 2291")},
    }
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ...}


def signed(net: Net, body: bytes, *, signer: int = 0) -> bytes:
    """The envelope of ``body`` with a valid signature by user ``signer``."""
    return codec.encode({"body": body, "sig": net.user_keys[signer].sign(body)})


@PROPERTY
@given(
    nonce=st.integers(min_value=0, max_value=2**64 - 1),
    time_ms=st.integers(min_value=0, max_value=2**64 - 1),
    op=st.text(min_size=1, max_size=20),
    args=st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.binary(max_size=40), st.text(max_size=20), st.integers(-(2**63), 2**63)),
        max_size=5,
    ),
)
def test_transaction_create_decode_round_trip(
    net: Net, nonce: int, time_ms: int, op: str, args: dict[str, Any]
) -> None:
    key = net.user_keys[1]
    tx = Transaction.create(
        key, chain_id=net.chain_id, op=op, args=args, nonce=nonce, time_ms=time_ms
    )
    assert (tx.chain_id, tx.signer, tx.nonce, tx.time_ms, tx.op, tx.args) == (
        net.chain_id,
        key.public_key,
        nonce,
        time_ms,
        op,
        args,
    )
    assert tx.id == sha256(tx.raw)
    again = Transaction.decode(tx.raw)
    assert again == tx
    assert again.id == tx.id
    tx.verify_signature()
    key.public_key.verify(tx.body, tx.sig)  # any Ed25519 verifier can check the body
    assert tx.to_json()["id"] == tx.id.hex()


def test_tampered_body_fails_signature_check(net: Net) -> None:
    tx = net.tx(1)
    assert codec.encode(body_value(net, nonce=1, time=tx.time_ms, args=tx.args)) == tx.body
    for change in ({"nonce": 2}, {"args": {"digest": sha256(b"forged")}}, {"op": "fund.issue"}):
        body = codec.encode(body_value(net, nonce=1, time=tx.time_ms, args=tx.args) | change)
        forged = Transaction.decode(codec.encode({"body": body, "sig": tx.sig}))
        with pytest.raises(InvalidTransaction):
            forged.verify_signature()


def test_flipped_signature_bit_fails(net: Net) -> None:
    tx = net.tx(1)
    sig = bytes([tx.sig[0] ^ 1]) + tx.sig[1:]
    forged = Transaction.decode(codec.encode({"body": tx.body, "sig": sig}))
    with pytest.raises(InvalidTransaction):
        forged.verify_signature()


def test_signature_by_someone_other_than_the_signer_fails(net: Net) -> None:
    body = codec.encode(body_value(net))  # names user 0 as the signer
    forged = Transaction.decode(signed(net, body, signer=1))
    with pytest.raises(InvalidTransaction):
        forged.verify_signature()


def test_id_depends_on_the_exact_signed_bytes(net: Net) -> None:
    ids = {net.tx(n).id for n in range(1, 6)}
    assert len(ids) == 5
    assert net.tx(1).id == net.tx(1).id  # Ed25519 is deterministic: same tx, same id


BAD_BODIES: dict[str, dict[str, Any]] = {
    "extra key": {"extra": 1},
    "missing args": {"args": ...},
    "missing signer": {"signer": ...},
    "wrong type": {"type": "p2pledger/tx/2"},
    "type not text": {"type": b"p2pledger/tx/1"},
    "chain id of 31 bytes": {"chain": bytes(31)},
    "chain id of 33 bytes": {"chain": bytes(33)},
    "chain id as text": {"chain": "00" * 32},
    "negative nonce": {"nonce": -1},
    "nonce as bool": {"nonce": True},
    "nonce as text": {"nonce": "1"},
    "negative time": {"time": -5},
    "empty op": {"op": ""},
    "op not text": {"op": 3},
    "args not a map": {"args": [1]},
    "signer of 31 bytes": {"signer": bytes(31)},
    "signer as text": {"signer": "user-0"},
}


@pytest.mark.parametrize("change", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_decode_refuses_bad_body(net: Net, change: dict[str, Any]) -> None:
    raw = signed(net, codec.encode(body_value(net, **change)))
    with pytest.raises(InvalidTransaction):
        Transaction.decode(raw)


def test_decode_refuses_body_that_is_not_a_map(net: Net) -> None:
    with pytest.raises(InvalidTransaction):
        Transaction.decode(signed(net, codec.encode([1, 2])))


def test_decode_refuses_non_canonical_body(net: Net) -> None:
    items = list(codec.decode(codec.encode(body_value(net))).items())
    body = encode_map_in_order(items[::-1])  # same map, keys out of order; validly signed
    assert codec.decode(encode_map_in_order(items)) == codec.decode(codec.encode(dict(items)))
    with pytest.raises(InvalidTransaction) as info:
        Transaction.decode(signed(net, body))
    assert isinstance(info.value.__cause__, NonCanonical)


def test_decode_refuses_non_canonical_envelope(net: Net) -> None:
    tx = net.tx(1)
    # Canonical order is "sig" before "body": the shorter key first.
    raw = encode_map_in_order([("body", tx.body), ("sig", tx.sig)])
    with pytest.raises(InvalidTransaction) as info:
        Transaction.decode(raw)
    assert isinstance(info.value.__cause__, NonCanonical)


@pytest.mark.parametrize("size", [0, 32, 63, 65, 128])
def test_decode_refuses_signature_of_wrong_size(net: Net, size: int) -> None:
    tx = net.tx(1)
    with pytest.raises(InvalidTransaction):
        Transaction.decode(codec.encode({"body": tx.body, "sig": tx.sig[:1] * size}))


@pytest.mark.parametrize(
    "envelope",
    [
        [b"body", b"sig"],
        {"body": b"x"},
        {"body": b"x", "sig": bytes(64), "extra": 1},
        {"body": "text", "sig": bytes(64)},
    ],
    ids=["array", "no sig", "extra key", "body as text"],
)
def test_decode_refuses_bad_envelope(envelope: Any) -> None:
    with pytest.raises(InvalidTransaction):
        Transaction.decode(codec.encode(envelope))


def test_decode_refuses_bad_bytes(net: Net) -> None:
    tx = net.tx(1)
    for raw in (b"", b"\xff", tx.raw[:-1], tx.raw + b"\x00", b"\x00" * (MAX_TX_SIZE + 1)):
        with pytest.raises(InvalidTransaction):
            Transaction.decode(raw)


# --- blocks -----------------------------------------------------------------------------


def test_block_round_trip_and_hash(net: Net) -> None:
    for block in net.chain(3):
        assert block.hash == sha256(block.header_bytes)
        assert block.header_bytes == codec.encode(block.header.to_value())
        again = Block.decode(block.encode())
        assert again == block
        assert again.hash == block.hash
        assert Header.decode(block.header_bytes) == block.header
        assert block.header.tx_root == tx_root(block.txs)
        assert block.header.results_root == results_root(block.results)


def test_block_encoding_is_kept_not_carried_into_a_changed_copy(net: Net) -> None:
    block = list(net.chain(1))[1]
    data = block.encode()
    assert block.encode() is data  # encoded once, to propose, send and store
    decoded = Block.decode(bytes(data))
    assert decoded.encode() == data  # the bytes it came from, which are canonical
    fresh = Block(block.header, block.header_bytes, block.sig, block.txs, block.results)
    assert fresh.encode() == data  # the kept bytes are what encoding would give
    changed = dataclasses.replace(decoded, sig=bytes(64))
    assert changed.encode() != data
    assert Block.decode(changed.encode()).sig == bytes(64)


def test_results_root_is_per_position(net: Net) -> None:
    bad = TxResult(False, "unknown fund")
    roots = {
        results_root(order)
        for order in ([VALID, VALID, bad], [VALID, bad, VALID], [bad, VALID, VALID])
    }
    assert len(roots) == 3
    assert results_root([VALID, bad]) == merkle_root([VALID.encode(), bad.encode()])


def test_block_json_view(net: Net) -> None:
    block = list(net.chain(1))[1]
    view = block.to_json(with_txs=True)
    assert view["hash"] == block.hash.hex()
    assert view["tx_ids"] == [sha256(t).hex() for t in block.txs]
    assert view["txs"] == [t.hex() for t in block.txs]


def test_build_block_links_to_its_parent(net: Net) -> None:
    genesis, first, second = net.chain(2)
    assert first.header.chain_id == genesis.hash == net.chain_id
    assert second.header.chain_id == net.chain_id
    assert (first.header.prev, second.header.prev) == (genesis.hash, first.hash)
    assert (first.height, second.height) == (1, 2)


def _header_value(block: Block, **changes: Any) -> dict[str, Any]:
    return block.header.to_value() | changes


BAD_HEADERS: dict[str, dict[str, Any]] = {
    "wrong type": {"type": "p2pledger/header/2"},
    "extra key": {"extra": 0},
    "prev of 31 bytes": {"prev": bytes(31)},
    "tx_root as text": {"tx_root": "00" * 32},
    "negative height": {"height": -1},
    "height as bool": {"height": True},
    "proposer as text": {"proposer": "node-1"},
}


@pytest.mark.parametrize("change", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_header_decode_refusals(net: Net, change: dict[str, Any]) -> None:
    block = list(net.chain(1))[1]
    with pytest.raises(InvalidBlock) as info:
        Header.decode(codec.encode(_header_value(block, **change)))
    assert info.value.reason == "malformed_header"


def test_header_decode_refuses_missing_key_and_garbage(net: Net) -> None:
    block = list(net.chain(1))[1]
    value = _header_value(block)
    del value["term"]
    for data in (codec.encode(value), b"\xff", codec.encode([HEADER_TYPE])):
        with pytest.raises(InvalidBlock) as info:
            Header.decode(data)
        assert info.value.reason == "malformed_header"


def test_block_decode_refusals(net: Net) -> None:
    block = list(net.chain(1))[1]
    good = {
        "header": block.header_bytes,
        "sig": block.sig,
        "txs": list(block.txs),
        "results": [r.to_value() for r in block.results],
    }
    cases = {
        "malformed_block": [
            b"\xff",
            codec.encode([1]),
            codec.encode({k: v for k, v in good.items() if k != "sig"}),
            codec.encode(good | {"sig": "text"}),
            codec.encode(good | {"txs": ["not bytes"]}),
            codec.encode(good | {"results": {}}),
        ],
        "malformed_header": [codec.encode(good | {"header": b"\xa0"})],
        "malformed_result": [
            codec.encode(good | {"results": [[True, "a reason on a valid result"]]}),
            codec.encode(good | {"results": [[False, None]]}),
            codec.encode(good | {"results": [[1, None]]}),
            codec.encode(good | {"results": [True]}),
        ],
    }
    for reason, datas in cases.items():
        for data in datas:
            with pytest.raises(InvalidBlock) as info:
                Block.decode(data)
            assert info.value.reason == reason


def test_tx_result_values() -> None:
    assert TxResult.from_value([True, None]) == VALID
    assert TxResult.from_value([False, "unknown fund"]) == TxResult(False, "unknown fund")
    assert codec.decode(TxResult(False, "x").encode()) == [False, "x"]


# --- genesis ------------------------------------------------------------------------------


def test_genesis_is_deterministic(net: Net) -> None:
    again = Net()
    assert again.genesis.encode() == net.genesis.encode()
    assert chain_id_of(again.network) == chain_id_of(net.network) == net.genesis.hash
    genesis = net.genesis
    assert (genesis.height, genesis.sig, genesis.header.chain_id) == (0, b"", b"")
    assert genesis.header.prev == ZERO_HASH
    assert genesis.header.time_ms == net.network.genesis_time_ms


def test_a_different_network_has_a_different_chain_id(net: Net) -> None:
    base = net.network
    variants = [
        dataclasses.replace(base, chain_name="other-chain"),
        dataclasses.replace(base, genesis_time_ms=base.genesis_time_ms + 1),
        dataclasses.replace(base, limits=BlockLimits(max_transactions=499)),
        dataclasses.replace(base, members=base.members[:2]),
        dataclasses.replace(base, members=base.members[::-1]),
        dataclasses.replace(base, funds=()),
        Net(n=4).network,
    ]
    ids = {chain_id_of(base)} | {chain_id_of(v) for v in variants}
    assert len(ids) == len(variants) + 1


def test_network_of_genesis_recovers_the_network(net: Net) -> None:
    assert network_of_genesis(net.genesis) == net.network
    assert network_of_genesis(Block.decode(net.genesis.encode())) == net.network


def test_genesis_needs_the_initial_network(net: Net) -> None:
    with pytest.raises(NotFoundingNetwork, match=r"membership version 1.*founding network"):
        genesis_block(dataclasses.replace(net.network, version=1))


def _network_value(net: Net, **changes: Any) -> dict[str, Any]:
    return net.network.to_value() | changes


def _genesis_with_entry(net: Net, entry: bytes) -> Block:
    """The genesis header of ``net`` sealed over another entry (roots recomputed)."""
    header = dataclasses.replace(
        net.genesis.header, tx_root=tx_root([entry]), results_root=results_root([VALID])
    )
    return Block.seal(header, [entry], [VALID], key=None)


def _tampered_geneses(net: Net) -> dict[str, tuple[str, Block]]:
    genesis = net.genesis
    other = Net(n=2)
    bad_member = _network_value(net)
    bad_member["members"] = [m | {"node_key": bytes(31)} for m in bad_member["members"]]
    first = list(net.chain(1))[1]
    return {
        "height 1": ("not_genesis", first),
        "two entries": (
            "not_genesis",
            Block.seal(genesis.header, [*genesis.txs, genesis.txs[0]], [VALID, VALID], key=None),
        ),
        "entry not CBOR": ("malformed_genesis", dataclasses.replace(genesis, txs=(b"\xff",))),
        "entry not a network": (
            "malformed_genesis",
            _genesis_with_entry(net, codec.encode({"chain_name": "x"})),
        ),
        "member key of 31 bytes": (
            "malformed_genesis",
            _genesis_with_entry(net, codec.encode(bad_member)),
        ),
        "network version 1": (
            "malformed_genesis",
            _genesis_with_entry(net, codec.encode(_network_value(net, version=1))),
        ),
        "another network's entry": (
            "malformed_genesis",
            dataclasses.replace(genesis, txs=other.genesis.txs),
        ),
        # (with the same genesis time this would *be* the other network's genesis, and
        # be accepted as such: see test_genesis_of_another_network_is_that_network)
        "another network's entry, roots recomputed": (
            "malformed_genesis",
            _genesis_with_entry(net, codec.encode(_later(other.network).to_value())),
        ),
        "time changed": (
            "malformed_genesis",
            Block.seal(
                dataclasses.replace(genesis.header, time_ms=genesis.header.time_ms + 1),
                genesis.txs,
                genesis.results,
                key=None,
            ),
        ),
        "signed": (
            "malformed_genesis",
            Block.seal(genesis.header, genesis.txs, genesis.results, net.node_keys[0]),
        ),
        "verdict invalid": (
            "malformed_genesis",
            dataclasses.replace(genesis, results=(TxResult(False, "no"),)),
        ),
    }


def _later(network: Network) -> Network:
    return dataclasses.replace(network, genesis_time_ms=network.genesis_time_ms + 1)


def test_genesis_of_another_network_is_that_network(net: Net) -> None:
    other = Net(n=2)
    block = _genesis_with_entry(net, other.genesis.txs[0])
    assert block.encode() == other.genesis.encode()
    assert network_of_genesis(block) == other.network


def test_network_of_genesis_refuses_a_tampered_genesis(net: Net) -> None:
    for what, (reason, block) in _tampered_geneses(net).items():
        with pytest.raises(InvalidBlock) as info:
            network_of_genesis(block)
        assert (info.value.reason, info.value.height) == (reason, 0), what


# --- validation ---------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """A parent, and a candidate child that breaks one rule (or none)."""

    net: Net
    parent: Block
    network: Network

    def txs(self, count: int = 3, first_nonce: int = 100) -> list[bytes]:
        return [self.net.tx(first_nonce + i, user=i % self.net.n).raw for i in range(count)]

    def child(
        self, txs: list[bytes] | None = None, *, proposer: int = 1, key: SigningKey | None = None
    ) -> Block:
        """A valid successor of ``parent``, proposed by voter ``proposer`` (or ``key``)."""
        txs = self.txs() if txs is None else txs
        return build_block(
            parent=self.parent.header,
            parent_hash=self.parent.hash,
            txs=txs,
            results=[VALID] * len(txs),
            state_root=ZERO_HASH,
            time_ms=self.parent.header.time_ms + 1000,
            term=1,
            membership_version=self.network.version,
            proposer=key or self.net.node_keys[proposer],
        )

    def reseal(self, block: Block, *, signer: int = 1, **changes: Any) -> Block:
        """``block`` with header fields changed, signed again by a voter."""
        header = dataclasses.replace(block.header, **changes)
        return Block.seal(header, block.txs, block.results, self.net.node_keys[signer])

    def validate(self, block: Block, **kw: Any) -> list[Transaction]:
        # Every candidate goes over the wire first, as a peer's block would.
        wire = Block.decode(block.encode())
        return validate_block(
            wire,
            parent=self.parent.header,
            parent_hash=self.parent.hash,
            network=self.network,
            **kw,
        )


@pytest.fixture(params=["after genesis", "after block 1"])
def case(request: pytest.FixtureRequest, net: Net) -> Case:
    genesis, first = net.chain(1)
    parent = genesis if request.param == "after genesis" else first
    return Case(net=net, parent=parent, network=net.network)


def _with_observer(network: Network, index: int) -> Network:
    members = list(network.members)
    members[index] = dataclasses.replace(members[index], role=Role.OBSERVER)
    return dataclasses.replace(network, members=tuple(members))


def _with_limits(network: Network, **limits: int) -> Network:
    return dataclasses.replace(network, limits=dataclasses.replace(network.limits, **limits))


def _bad_sig(tx: Transaction) -> bytes:
    return codec.encode({"body": tx.body, "sig": bytes([tx.sig[0] ^ 1]) + tx.sig[1:]})


# Each breaker returns a block that breaks exactly one rule, keyed by that rule's reason
# code; a rule about the membership (limits, roles) is broken by validating an otherwise
# valid block under a changed network (``_under``).
Breaker = Callable[[Case], Block]

BREAKERS: dict[str, list[Breaker]] = {
    "wrong_chain": [
        lambda c: c.reseal(c.child(), chain_id=sha256(b"another chain")),
        lambda c: c.reseal(c.child(), chain_id=b""),
    ],
    "height_gap": [
        lambda c: c.reseal(c.child(), height=c.parent.height + 2),
        lambda c: c.reseal(c.child(), height=c.parent.height),
    ],
    "wrong_prev_hash": [
        lambda c: c.reseal(c.child(), prev=sha256(b"somewhere else")),
        lambda c: c.reseal(c.child(), prev=ZERO_HASH),
    ],
    "time_regression": [
        lambda c: c.reseal(c.child(), time_ms=c.parent.header.time_ms - 1),
    ],
    "wrong_membership_version": [
        lambda c: c.reseal(c.child(), membership_version=c.network.version + 1),
    ],
    "tx_count_mismatch": [
        lambda c: c.reseal(c.child(), tx_count=2),
        lambda c: c.reseal(c.child(), tx_count=4),
    ],
    "oversize": [
        lambda c: _under(c, _with_limits(c.network, max_transactions=2), c.child()),
        lambda c: _under(
            c, _with_limits(c.network, max_bytes=sum(map(len, c.txs())) - 1), c.child()
        ),
    ],
    "wrong_tx_root": [
        lambda c: dataclasses.replace(c.child(), txs=tuple(c.txs()[::-1])),
        lambda c: dataclasses.replace(c.child(), txs=tuple(c.txs(first_nonce=500))),
    ],
    "wrong_results_root": [
        lambda c: dataclasses.replace(
            c.child(), results=(TxResult(False, "unknown fund"), VALID, VALID)
        ),
    ],
    "proposer_not_voter": [
        lambda c: c.child(key=seeded_key("outsider")),
        lambda c: c.child(key=c.net.user_keys[1]),  # a user key is not a node key
        lambda c: _under(c, _with_observer(c.network, 1), c.child(proposer=1)),
    ],
    "bad_header_signature": [
        lambda c: c.reseal(c.child(proposer=1), signer=2),  # names node 1, signed by node 2
        lambda c: dataclasses.replace(c.child(), sig=b""),
        lambda c: dataclasses.replace(c.child(), sig=bytes(64)),
        lambda c: dataclasses.replace(c.child(), sig=c.child().sig[::-1]),
    ],
    "invalid_tx": [
        lambda c: c.child([c.txs(1)[0], _bad_sig(c.net.tx(200)), c.txs(1, 300)[0]]),
        lambda c: c.child([b"\xff"]),
        lambda c: c.child([codec.encode({"body": b"", "sig": bytes(64)})]),
        lambda c: c.child(
            [
                Transaction.create(
                    c.net.user_keys[0],
                    chain_id=sha256(b"another chain"),
                    op="notary.anchor",
                    args={},
                    nonce=1,
                    time_ms=GENESIS_TIME_MS,
                ).raw
            ]
        ),
    ],
    "duplicate_tx": [
        lambda c: c.child([*c.txs(2), c.txs(1)[0]]),
    ],
}


def _under(case: Case, network: Network, block: Block) -> Block:
    """Validate ``block`` under ``network`` (smaller limits, an observer) instead."""
    case.network = network
    return block


def test_every_reason_has_a_breaker() -> None:
    assert set(BREAKERS) == set(REASONS)


@pytest.mark.parametrize(
    ("reason", "breaker"),
    [(reason, b) for reason, bs in BREAKERS.items() for b in bs],
    ids=[f"{reason}-{i}" for reason, bs in BREAKERS.items() for i in range(len(bs))],
)
def test_validate_block_reason(case: Case, reason: str, breaker: Breaker) -> None:
    assert case.validate(case.child())  # the unbroken block is valid
    block = breaker(case)
    with pytest.raises(InvalidBlock) as info:
        case.validate(block)
    assert info.value.reason == reason
    assert info.value.height == block.height


def test_a_valid_chain_validates(net: Net) -> None:
    blocks = list(net.chain(6, txs_per_block=4))
    for parent, block in itertools.pairwise(blocks):
        txs = validate_block(
            Block.decode(block.encode()),
            parent=parent.header,
            parent_hash=parent.hash,
            network=net.network,
        )
        assert [tx.id for tx in txs] == [sha256(raw) for raw in block.txs]
        assert all(tx.chain_id == net.chain_id for tx in txs)


def test_an_empty_block_validates(case: Case) -> None:
    assert case.validate(case.child([])) == []


def test_verified_tx_ids_skip_signature_checks(case: Case) -> None:
    # ``verified_tx_ids`` is the caller's word that it checked these signatures already
    # (in gossip). validate_block believes it: a transaction whose id is in the set is
    # not verified again, so a badly signed one passes. The caller must only put ids
    # there whose signatures it has verified itself.
    bad = Transaction.decode(_bad_sig(case.net.tx(200)))
    block = case.child([case.txs(1)[0], bad.raw])
    with pytest.raises(InvalidBlock) as info:
        case.validate(block)
    assert info.value.reason == "invalid_tx"
    txs = case.validate(block, verified_tx_ids={bad.id})
    assert [tx.id for tx in txs] == [sha256(block.txs[0]), bad.id]


def test_verified_tx_ids_do_not_excuse_shape_or_chain(case: Case) -> None:
    other_chain = Transaction.create(
        case.net.user_keys[0],
        chain_id=sha256(b"another chain"),
        op="notary.anchor",
        args={},
        nonce=1,
        time_ms=GENESIS_TIME_MS,
    )
    garbage = b"\xff"
    for raw in (other_chain.raw, garbage):
        with pytest.raises(InvalidBlock) as info:
            case.validate(case.child([raw]), verified_tx_ids={sha256(raw)})
        assert info.value.reason == "invalid_tx"
