"""Membership updates: the ``config.update`` operation and the history it leaves.

``config.update {proposal, approvals}`` replaces the membership in force (version N)
by the proposal's network (version N+1) once enough admins approved it. The update
takes effect from the next block: this block is still checked and applied against
version N (its other transactions, even one by a user key the update revokes, are
judged by N), and ``ApplyOutcome.network`` tells the caller that the next one is
checked against N+1.

The signer must be an admin key of version N (``machine`` checks that, as
``unknown_signer``). Then, in this order, which fixes the reason a transaction with
several faults gets:

1. ``bad_args``: the args are not ``{proposal: bytes, approvals: [[key, sig], ...]}``
   or name one admin twice; ``bad_config``: the proposal is not its canonical
   encoding;
2. ``wrong_chain``: the proposal is for another chain;
3. ``stale_config``: the proposal is not based on version N, or version N+1 was
   already made (by an earlier transaction of this block: at most one update a block);
4. the codes of ``membership.check_update`` (``immutable_field``, ``bad_version``,
   ``bad_config``, ``collision``, ``no_voter``, ``config_unchanged``,
   ``too_many_conf_changes``);
5. ``unauthorized_admin``: an approval's key is no admin key of version N;
6. ``bad_approval``: an approval's signature does not verify over the proposal;
7. ``insufficient_approvals``: the approvals do not meet the policy.

A valid update writes the new network at ``config/network`` and a ``ConfigRecord``
at ``config/version/<N+1>``: the version, the block's height and time, the
transaction id, the changes as text, and the approving admins with their members.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from p2pledger.chain.tx import Transaction
from p2pledger.codec import Value
from p2pledger.crypto import PublicKey
from p2pledger.errors import MalformedKey, SchemaError
from p2pledger.membership import (
    CONFIG_UPDATE_OP,
    BadApproval,
    BadUpdateArgs,
    InsufficientApprovals,
    InvalidUpdate,
    MalformedProposal,
    Network,
    Proposal,
    check_approvals,
    check_update,
    founding_changes,
    parse_update_args,
    verify_approvals,
)
from p2pledger.state import keys
from p2pledger.state.context import BlockContext
from p2pledger.state.errors import CorruptState, Rejected
from p2pledger.state.view import Overlay, StateView, Writes, decode_stored

__all__ = [
    "CONFIG_REASONS",
    "CONFIG_UPDATE_OP",
    "ConfigRecord",
    "apply_config_update",
    "config_records",
    "decode_network",
    "founding_record",
    "network_in_force",
]

#: The reasons a ``config.update`` can be rejected with (beyond ``unknown_signer``).
CONFIG_REASONS: Final = (
    "bad_config",
    "wrong_chain",
    "stale_config",
    "immutable_field",
    "bad_version",
    "collision",
    "no_voter",
    "config_unchanged",
    "too_many_conf_changes",
    "unauthorized_admin",
    "bad_approval",
    "insufficient_approvals",
)
_RECORD_KEYS: Final = frozenset({"version", "height", "time", "tx_id", "changes", "approvals"})
_ID_SIZE: Final = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigRecord:
    """How membership version ``version`` came about: committed in the block at
    ``height`` (time ``time_ms``) by transaction ``tx_id``, with these changes (one
    line each, as admins reviewed them) approved by these (member, admin key) pairs.

    Version 0 is the founding network: height 0, no transaction, no approvals.
    """

    version: int
    height: int
    time_ms: int
    tx_id: bytes | None
    changes: tuple[str, ...]
    approvals: tuple[tuple[str, PublicKey], ...]

    def to_value(self) -> Value:
        return {
            "version": self.version,
            "height": self.height,
            "time": self.time_ms,
            "tx_id": self.tx_id,
            "changes": list(self.changes),
            "approvals": [[member, key.raw] for member, key in self.approvals],
        }

    @classmethod
    def decode(cls, raw: bytes) -> ConfigRecord:
        v = decode_stored(raw, "config record")
        if not isinstance(v, dict) or v.keys() != _RECORD_KEYS:
            raise CorruptState(f"stored config record is not a map of {sorted(_RECORD_KEYS)}")
        changes, approvals, tx_id = v["changes"], v["approvals"], v["tx_id"]
        if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
            raise CorruptState("stored config record's changes are not a list of text")
        if not (tx_id is None or (isinstance(tx_id, bytes) and len(tx_id) == _ID_SIZE)):
            raise CorruptState("stored config record's tx_id is not a transaction id")
        try:
            pairs = tuple((_text(p[0]), PublicKey(p[1])) for p in _pairs(approvals))
        except (MalformedKey, TypeError) as exc:
            raise CorruptState(f"stored config record's approvals are malformed: {exc}") from exc
        return cls(
            version=_uint(v["version"]),
            height=_uint(v["height"]),
            time_ms=_uint(v["time"]),
            tx_id=tx_id,
            changes=tuple(changes),
            approvals=pairs,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "height": self.height,
            "time_ms": self.time_ms,
            "tx_id": None if self.tx_id is None else self.tx_id.hex(),
            "changes": list(self.changes),
            "approvals": [{"member": member, "admin": key.hex} for member, key in self.approvals],
        }


def _pairs(value: Any) -> list[list[Any]]:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise CorruptState("stored config record's approvals are not [member, key] pairs")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a member name")
    return value


def _uint(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptState("stored config record has a field that is not a non-negative integer")
    return value


def decode_network(raw: bytes) -> Network:
    """The network stored at ``config/network``."""
    try:
        return Network.from_value(decode_stored(raw, "network"))
    except (SchemaError, MalformedKey) as exc:
        raise CorruptState(f"stored network is malformed: {exc}") from exc


def network_in_force(view: StateView) -> Network | None:
    """The network the last membership update put in force; None if none did (the
    founding network, in the genesis block, is then in force)."""
    raw = view.get(keys.NETWORK_KEY)
    return None if raw is None else decode_network(raw)


def founding_record(network: Network) -> ConfigRecord:
    """Version 0 as the history shows it: the founding network, at genesis."""
    return ConfigRecord(
        version=0,
        height=0,
        time_ms=network.genesis_time_ms,
        tx_id=None,
        changes=tuple(c.describe() for c in founding_changes(network)),
        approvals=(),
    )


def config_records(items: Iterable[tuple[bytes, bytes]]) -> list[ConfigRecord]:
    """The records among state ``items`` (key, value) under ``config/version/``, by
    version."""
    records = [
        ConfigRecord.decode(value)
        for key, value in items
        if key.startswith(keys.CONFIG_VERSION_PREFIX)
    ]
    return sorted(records, key=lambda r: r.version)


def apply_config_update(tx: Transaction, ctx: BlockContext, state: Overlay) -> Writes:
    """``config.update {proposal, approvals}``: see the module docstring."""
    try:
        proposal_bytes, approvals = parse_update_args(tx.args)
        proposal = Proposal.decode(proposal_bytes)
    except (BadUpdateArgs, MalformedProposal) as exc:
        raise Rejected(exc.code, exc.message) from exc
    if proposal.chain_id != ctx.chain_id:
        raise Rejected("wrong_chain", f"the proposal is for chain {proposal.chain_id.hex()[:16]}")
    base = ctx.network
    next_key = keys.config_version_key(base.version + 1)
    if proposal.base_version != base.version:
        raise Rejected(
            "stale_config",
            f"the proposal is based on version {proposal.base_version}, the membership in "
            f"force is version {base.version}; re-propose from the current membership",
        )
    if state.load(next_key, ConfigRecord.decode) is not None:
        raise Rejected("stale_config", f"version {base.version + 1} was already made in this block")
    try:
        changes = check_update(base, proposal.network)
    except InvalidUpdate as exc:
        raise Rejected(exc.code, exc.message) from exc
    strangers = [a.admin for a in approvals if not base.is_admin(a.admin)]
    if strangers:
        raise Rejected(
            "unauthorized_admin",
            f"{strangers[0].hex} is not an admin key of membership version {base.version}",
        )
    try:
        signers = verify_approvals(proposal_bytes, approvals)
        check_approvals(base, changes, signers)
    except (BadApproval, InsufficientApprovals) as exc:
        raise Rejected(exc.code, exc.message) from exc
    approved = sorted(
        ((member.name, key) for key in signers if (member := base.member_by_admin(key))),
        key=lambda pair: (pair[0], pair[1].raw),
    )
    record = ConfigRecord(
        version=proposal.network.version,
        height=ctx.height,
        time_ms=ctx.time_ms,
        tx_id=tx.id,
        changes=tuple(c.describe() for c in changes),
        approvals=tuple(approved),
    )
    return {keys.NETWORK_KEY: proposal.network, next_key: record}
