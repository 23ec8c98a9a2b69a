"""How the membership in force drives the ordering service and this daemon: pure.

The network in force lives on the ledger (``Ledger.network``). Three questions follow
from it, each answered here without I/O so that they can be tested on their own:

- ``conf_of``: the Raft configuration of a membership (voters vote, observers learn).
- ``conf_change_of``: the single-server Raft change that takes one membership to the
  next, or None when the update leaves the configuration alone (keys, addresses,
  users, limits). The state machine refuses an update that adds, removes or re-roles
  more than one voter or observer, so a committed update never needs two.
- ``hold_back``: which pending transactions the block cutter leaves in the mempool.
  A block carries at most one membership update, and none while a Raft
  configuration change is still uncommitted (Raft would refuse the second one).
- ``standing_of``: whether this daemon is a member (and under which of its keys), a
  member still joining, or a member that was removed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from p2pledger.chain import Transaction
from p2pledger.crypto import SigningKey
from p2pledger.errors import LocalError
from p2pledger.membership import CONFIG_UPDATE_OP, Network, Role
from p2pledger.raft import ConfChange, ConfChangeOp, ConfState

__all__ = [
    "KeyNotInForce",
    "Standing",
    "StandingKind",
    "TooManyConfChanges",
    "conf_change_of",
    "conf_of",
    "hold_back",
    "standing_of",
]


class TooManyConfChanges(LocalError):
    """Two memberships differ by more than one voter or observer (the state machine
    never commits such an update: this is a bug or a diverged ledger)."""


class KeyNotInForce(LocalError):
    """The membership in force gives this daemon's member a node key it does not hold."""


def conf_of(network: Network) -> ConfState:
    """The Raft configuration of a membership: voters vote, observers learn."""
    return ConfState(
        voters=frozenset(m.name for m in network.members if m.role is Role.VOTER),
        learners=frozenset(m.name for m in network.members if m.role is Role.OBSERVER),
    )


def conf_change_of(old: Network, new: Network) -> ConfChange | None:
    """The one Raft change from ``old``'s configuration to ``new``'s, or None if they
    are the same; raise TooManyConfChanges if more than one member is added, removed
    or changes role. The change's ``context`` is empty: the cutter puts the block in."""
    before, after = conf_of(old), conf_of(new)
    changes: list[ConfChange] = []
    for name in sorted(before.members | after.members):
        if name in after.voters and name not in before.voters:
            changes.append(ConfChange(op=ConfChangeOp.ADD_VOTER, node=name))
        elif name in after.learners and name not in before.learners:
            changes.append(ConfChange(op=ConfChangeOp.ADD_LEARNER, node=name))
        elif name not in after.members:
            changes.append(ConfChange(op=ConfChangeOp.REMOVE, node=name))
    if len(changes) > 1:
        what = ", ".join(f"{c.op.name.lower()} {c.node}" for c in changes)
        raise TooManyConfChanges(
            f"membership version {old.version} -> {new.version} makes {len(changes)} "
            f"configuration changes ({what}); Raft takes one at a time"
        )
    return changes[0] if changes else None


def hold_back(
    txs: Sequence[Transaction], *, conf_change_pending: bool
) -> tuple[list[Transaction], list[Transaction]]:
    """Split a candidate batch into what goes into the block and what stays pending:
    at most one membership update (the oldest), and none while ``conf_change_pending``."""
    take: list[Transaction] = []
    held: list[Transaction] = []
    updates = 0
    for tx in txs:
        if tx.op == CONFIG_UPDATE_OP:
            if conf_change_pending or updates:
                held.append(tx)
                continue
            updates += 1
        take.append(tx)
    return take, held


class StandingKind(enum.StrEnum):
    """Where this daemon stands in the membership in force."""

    MEMBER = "member"
    JOINING = "joining"  # not (yet) named: follow, catch up, wait for the update
    REMOVED = "removed"  # was a member, is no longer: take no part


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """This daemon's standing, and the key it speaks with (its identity)."""

    kind: StandingKind
    identity: SigningKey
    problem: str | None = None  # why it takes no part, for /health

    @property
    def member(self) -> bool:
        return self.kind is StandingKind.MEMBER


def standing_of(
    network: Network,
    name: str,
    *,
    key: SigningKey,
    next_key: SigningKey | None,
    was_member: bool,
) -> Standing:
    """Where member ``name`` stands in ``network``, holding ``key`` (and ``next_key``).

    Named with ``key`` or ``next_key``: a member speaking with that key. Named with
    another key: raise KeyNotInForce. Not named: removed if ``was_member`` (some
    earlier membership named it), else joining.
    """
    me = network.member(name)
    if me is None:
        if was_member:
            return Standing(
                kind=StandingKind.REMOVED,
                identity=key,
                problem=f"removed from the membership (version {network.version})",
            )
        return Standing(
            kind=StandingKind.JOINING,
            identity=key,
            problem=f"not yet a member (membership version {network.version} does not name {name})",
        )
    for held in (key, next_key):
        if held is not None and held.public_key == me.node_key:
            return Standing(kind=StandingKind.MEMBER, identity=held)
    held_keys = " or ".join(k.public_key.short for k in (key, next_key) if k is not None)
    raise KeyNotInForce(
        f"membership version {network.version} gives {name} the node key "
        f"{me.node_key.short}, but this daemon holds {held_keys}; set key_file "
        "(or next_key_file, during a rotation) in node.toml to that key"
    )
