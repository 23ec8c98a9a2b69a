"""A membership-update proposal, its approvals, and the transaction that carries them.

A proposal is the deterministic CBOR of::

    {"type": "p2pledger/config-proposal/1", "chain": chain id (32 bytes),
     "base_version": N, "network": the proposed network (version N+1)}

An approval is an admin's Ed25519 signature over exactly those bytes, so any
Ed25519 tool can check it (``openssl pkeyutl -verify -rawin``), and a signature over
another chain's, another version's or another edit's proposal verifies over nothing
else. The ``type`` string keeps a proposal's bytes apart from anything else an admin
key might sign.

The ``config.update`` transaction carries ``{"proposal": bytes, "approvals": [[admin
key, signature], ...]}``; ``update_args`` builds that map and ``parse_update_args``
checks it. Decoding is strict: the bytes must be the canonical encoding of exactly
these fields, so a proposal has one encoding and one digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from p2pledger import codec
from p2pledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, PublicKey, SigningKey, sha256
from p2pledger.errors import BadSignature, CodecError, MalformedKey, SchemaError
from p2pledger.membership.errors import BadApproval, BadUpdateArgs, MalformedProposal
from p2pledger.membership.model import Network

__all__ = [
    "CONFIG_UPDATE_OP",
    "MAX_PROPOSAL_BYTES",
    "PROPOSAL_TYPE",
    "Approval",
    "Proposal",
    "parse_update_args",
    "sign_proposal",
    "update_args",
    "verify_approvals",
]

CONFIG_UPDATE_OP: Final = "config.update"
PROPOSAL_TYPE: Final = "p2pledger/config-proposal/1"
#: A proposal travels inside one transaction, which is at most 64 KiB.
MAX_PROPOSAL_BYTES: Final = 64 * 1024
_LIMITS: Final = codec.CodecLimits(max_size=MAX_PROPOSAL_BYTES, max_depth=8)
_KEYS: Final = frozenset({"type", "chain", "base_version", "network"})
_ARGS: Final = frozenset({"proposal", "approvals"})
_CHAIN_ID_SIZE: Final = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """The network proposed to follow membership version ``base_version`` of a chain."""

    chain_id: bytes
    base_version: int
    network: Network

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, bytes) or len(self.chain_id) != _CHAIN_ID_SIZE:
            raise ValueError(f"a chain id is {_CHAIN_ID_SIZE} bytes")
        if self.base_version < 0:
            raise ValueError("base_version is not negative")

    def to_value(self) -> dict[str, Any]:
        return {
            "type": PROPOSAL_TYPE,
            "chain": self.chain_id,
            "base_version": self.base_version,
            "network": self.network.to_value(),
        }

    def encode(self) -> bytes:
        """The bytes admins sign: deterministic CBOR, the same on every machine."""
        return codec.encode(self.to_value(), limits=_LIMITS)

    @property
    def digest(self) -> bytes:
        """SHA-256 of ``encode()``: names the proposal in messages and files."""
        return sha256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Proposal:
        """Parse a proposal; raise ``MalformedProposal`` unless ``data`` is exactly the
        canonical encoding of one."""
        try:
            v = codec.decode(data, limits=_LIMITS)
        except CodecError as exc:
            raise MalformedProposal(f"the proposal is not canonical CBOR: {exc}") from exc
        if not isinstance(v, dict) or v.keys() != _KEYS:
            raise MalformedProposal(f"a proposal is a map of exactly {sorted(_KEYS)}")
        if v["type"] != PROPOSAL_TYPE:
            raise MalformedProposal(f"unknown proposal type {v['type']!r}, not {PROPOSAL_TYPE!r}")
        chain, base = v["chain"], v["base_version"]
        if not isinstance(chain, bytes) or len(chain) != _CHAIN_ID_SIZE:
            raise MalformedProposal(f"'chain' must be a {_CHAIN_ID_SIZE}-byte chain id")
        if not isinstance(base, int) or isinstance(base, bool) or base < 0:
            raise MalformedProposal("'base_version' must be a non-negative integer")
        try:
            network = Network.from_value(v["network"])
        except (SchemaError, MalformedKey) as exc:
            raise MalformedProposal(f"the proposed network is malformed: {exc}") from exc
        if network.to_value() != v["network"]:
            raise MalformedProposal("the proposed network has fields a network does not have")
        return cls(chain_id=chain, base_version=base, network=network)


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """An admin's Ed25519 signature over a proposal's bytes."""

    admin: PublicKey
    sig: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.sig, bytes) or len(self.sig) != SIGNATURE_SIZE:
            raise ValueError(f"a signature is {SIGNATURE_SIZE} bytes")

    def verify(self, proposal: bytes) -> None:
        """Raise ``BadApproval`` unless this is the admin's signature over ``proposal``."""
        try:
            self.admin.verify(proposal, self.sig)
        except BadSignature as exc:
            raise BadApproval(self.admin) from exc


def sign_proposal(proposal: bytes, key: SigningKey) -> Approval:
    """Approve the proposal whose bytes are ``proposal`` with an admin key."""
    return Approval(admin=key.public_key, sig=key.sign(proposal))


def verify_approvals(proposal: bytes, approvals: Iterable[Approval]) -> frozenset[PublicKey]:
    """The admin keys whose approvals verify over ``proposal``; ``BadApproval`` on the
    first that does not (one forged signature spoils the lot)."""
    keys: set[PublicKey] = set()
    for approval in approvals:
        approval.verify(proposal)
        keys.add(approval.admin)
    return frozenset(keys)


def update_args(proposal: bytes, approvals: Iterable[Approval]) -> dict[str, Any]:
    """The ``args`` of a ``config.update`` transaction, approvals ordered by key."""
    ordered = sorted(approvals, key=lambda a: a.admin.raw)
    return {"proposal": proposal, "approvals": [[a.admin.raw, a.sig] for a in ordered]}


def parse_update_args(args: Mapping[str, Any]) -> tuple[bytes, tuple[Approval, ...]]:
    """The proposal bytes and approvals of a ``config.update``; ``BadUpdateArgs`` when
    ``args`` is not exactly that shape, or names one admin twice."""
    if args.keys() != _ARGS:
        missing, unknown = sorted(_ARGS - args.keys()), sorted(args.keys() - _ARGS)
        raise BadUpdateArgs(
            f"config.update takes proposal and approvals: missing {missing}, unknown {unknown}"
        )
    proposal, items = args["proposal"], args["approvals"]
    if not isinstance(proposal, bytes):
        raise BadUpdateArgs("'proposal' must be the proposal's bytes")
    if not isinstance(items, list):
        raise BadUpdateArgs("'approvals' must be a list of [admin key, signature]")
    approvals: list[Approval] = []
    seen: set[bytes] = set()
    for i, item in enumerate(items):
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], bytes)
            or not isinstance(item[1], bytes)
            or len(item[0]) != PUBLIC_KEY_SIZE
            or len(item[1]) != SIGNATURE_SIZE
        ):
            raise BadUpdateArgs(
                f"approval {i} must be [{PUBLIC_KEY_SIZE}-byte admin key, "
                f"{SIGNATURE_SIZE}-byte signature]"
            )
        if item[0] in seen:
            raise BadUpdateArgs(f"admin key {item[0].hex()} approves twice")
        seen.add(item[0])
        approvals.append(Approval(admin=PublicKey(item[0]), sig=item[1]))
    return proposal, tuple(approvals)
