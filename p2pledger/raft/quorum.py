"""Majority arithmetic over a set of voters: the committed index and vote outcomes.

With single-server membership changes there is only ever one voter set in force, so
a simple majority is all the core needs (no joint quorums). Learners never appear
here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping

__all__ = ["VoteResult", "committed_index", "majority", "vote_result"]


def majority(voters: Collection[str]) -> int:
    """How many voters form a quorum."""
    return len(voters) // 2 + 1


def committed_index(voters: Collection[str], match: Callable[[str], int]) -> int:
    """The largest index held by a quorum of ``voters`` (0 if there are no voters)."""
    if not voters:
        return 0
    indexes = sorted((match(v) for v in voters), reverse=True)
    return indexes[majority(voters) - 1]


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def vote_result(voters: Collection[str], votes: Mapping[str, bool]) -> VoteResult:
    """WON once a quorum granted; LOST once a quorum can no longer be reached."""
    granted = sum(1 for v in voters if votes.get(v) is True)
    missing = sum(1 for v in voters if v not in votes)
    quorum = majority(voters)
    if granted >= quorum:
        return VoteResult.WON
    if granted + missing >= quorum:
        return VoteResult.PENDING
    return VoteResult.LOST
