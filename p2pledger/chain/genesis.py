"""The genesis block, derived from the network description alone.

Genesis (height 0) carries the canonical encoding of the network as its only entry,
is unsigned, and has no chain id of its own: its hash *is* the chain id. Two daemons
started from different network files therefore compute different chain ids and can
never accept each other's blocks, transactions or handshakes.
"""

from __future__ import annotations

from p2pledger import codec
from p2pledger.chain.block import VALID, ZERO_HASH, Block, Header, results_root, tx_root
from p2pledger.errors import CodecError, InvalidBlock, LocalError, MalformedKey, SchemaError
from p2pledger.membership import Network

__all__ = ["NotFoundingNetwork", "chain_id_of", "genesis_block", "network_of_genesis"]


class NotFoundingNetwork(LocalError):
    """A network of a later membership version where the founding one is needed."""


def genesis_block(network: Network) -> Block:
    """The genesis block of ``network``; the same bytes on every machine."""
    if network.version != 0:
        raise NotFoundingNetwork(
            f"this network is membership version {network.version} of chain "
            f"{network.chain_name!r}; the chain id and genesis come from its founding "
            "network.toml (version 0): use that file here"
        )
    entry = codec.encode(network.to_value())
    header = Header(
        chain_id=b"",
        height=0,
        prev=ZERO_HASH,
        tx_root=tx_root([entry]),
        results_root=results_root([VALID]),
        state_root=ZERO_HASH,
        time_ms=network.genesis_time_ms,
        proposer=b"",
        term=0,
        membership_version=0,
        tx_count=1,
    )
    return Block.seal(header, [entry], [VALID], key=None)


def chain_id_of(network: Network) -> bytes:
    """The chain id: the hash of the genesis block of ``network``."""
    return genesis_block(network).hash


def network_of_genesis(block: Block) -> Network:
    """Recover the initial network from a genesis block, checking it is one."""
    if block.height != 0 or len(block.txs) != 1:
        raise InvalidBlock("not_genesis", "a genesis block has height 0 and one entry", 0)
    try:
        network = Network.from_value(codec.decode(block.txs[0]))
    except (CodecError, SchemaError, MalformedKey) as exc:
        raise InvalidBlock("malformed_genesis", str(exc), 0) from exc
    if network.version != 0:
        raise InvalidBlock("malformed_genesis", "the genesis network must be version 0", 0)
    if genesis_block(network).encode() != block.encode():
        raise InvalidBlock("malformed_genesis", "the block is not the genesis of its network", 0)
    return network
