"""The Raft paper's safety properties, checked incrementally as a cluster runs.

``Checker`` is told about every Ready a member processes and every role it is seen
in, and raises ``SafetyViolation`` the moment one of these breaks:

- Election Safety: at most one leader per term (over the whole run).
- Leader Append-Only: while a member leads a term, it never loses an entry it had.
- Log Matching: checked by induction. Every persisted entry ``(index, term)`` is
  recorded with its data and the term of the entry before it; any other log holding
  ``(index, term)`` must agree on both, so logs that share an entry share the prefix.
- Leader Completeness: an entry known to be committed while some member was in term
  T is in the log of every leader of a term after T.
- State Machine Safety: no two members apply different entries at one index, and
  each member applies indexes in order with no gaps or repeats.
- Commit agreement: no two members ever consider different entries committed at one
  index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from p2pledger.raft import Entry, EntryKind, RawNode, Ready, Role

__all__ = ["Checker", "SafetyViolation"]


class SafetyViolation(AssertionError):
    """A Raft safety property does not hold."""


@dataclass(frozen=True, slots=True)
class _Applied:
    term: int
    kind: EntryKind
    data: bytes


class Checker:
    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self._leading: dict[str, tuple[int, int, int]] = {}  # id -> (term, last, last_term)
        self._entries: dict[tuple[int, int], tuple[int, EntryKind, bytes]] = {}
        self._committed: dict[int, int] = {}  # index -> term
        self._committed_in: dict[int, int] = {}  # index -> lowest term it was seen committed
        self._commit_seen: dict[str, int] = {}
        self.applied: dict[int, _Applied] = {}
        self.checks = 0

    def _fail(self, what: str) -> NoReturn:
        raise SafetyViolation(what)

    # --- after each Ready ---------------------------------------------------------------

    def on_persist(self, member: str, node: RawNode, rd: Ready) -> None:
        """``rd``'s entries and hard state were just persisted by ``member``."""
        for e in rd.entries:
            prev = node.term_at(e.index - 1)
            if prev is None:
                self._fail(f"{member} persisted {e} without the entry before it")
            key = (e.index, e.term)
            value = (prev, e.kind, e.data)
            seen = self._entries.setdefault(key, value)
            if seen != value:
                self._fail(
                    f"Log Matching: {member} holds {e.term}/{e.index} with prev term {prev}, "
                    f"another log holds it with prev term {seen[0]} or other data"
                )
        self.checks += len(rd.entries)
        if rd.hard_state is not None:
            self._on_commit(member, node, rd.hard_state.commit)

    def _on_commit(self, member: str, node: RawNode, commit: int) -> None:
        start = self._commit_seen.get(member, 0)
        if commit <= start:
            return
        first = max(start + 1, node.first_index)
        term_now = node.term
        for i in range(first, commit + 1):
            t = node.term_at(i)
            if t is None:
                self._fail(f"{member} committed {i} but has no entry there")
            known = self._committed.setdefault(i, t)
            if known != t:
                self._fail(f"{member} committed term {t} at {i}, another member term {known}")
            if self._committed_in.get(i, term_now + 1) > term_now:
                self._committed_in[i] = term_now
        self._commit_seen[member] = commit

    def on_apply(self, member: str, applied_count: int, e: Entry) -> None:
        """``member`` applied ``e`` after ``applied_count`` earlier entries."""
        if e.index != applied_count + 1:
            self._fail(f"{member} applied {e.index} after {applied_count}: out of order")
        value = _Applied(e.term, e.kind, e.data)
        seen = self.applied.setdefault(e.index, value)
        if seen != value:
            self._fail(
                f"State Machine Safety: {member} applied {e.term}/{e.index}, another member "
                f"applied {seen.term}/{e.index} there"
            )
        self.checks += 1

    def on_restart(self, member: str) -> None:
        self._leading.pop(member, None)
        self._commit_seen.pop(member, None)

    # --- roles ------------------------------------------------------------------------

    def observe(self, member: str, node: RawNode) -> None:
        """Check the leader properties against ``member``'s current state."""
        if node.role is not Role.LEADER:
            self._leading.pop(member, None)
            return
        term = node.term
        holder = self.leaders.setdefault(term, member)
        if holder != member:
            self._fail(f"Election Safety: {holder} and {member} both lead term {term}")
        last = node.last_index
        last_term = node.term_at(last)
        assert last_term is not None
        before = self._leading.get(member)
        if before is None or before[0] != term:
            self._check_completeness(member, node, term)
        else:
            _, prev_last, prev_term = before
            now = node.term_at(prev_last)
            if last < prev_last or (now is not None and now != prev_term):
                self._fail(
                    f"Leader Append-Only: {member} leading term {term} lost entry "
                    f"{prev_term}/{prev_last}"
                )
        self._leading[member] = (term, last, last_term)
        self.checks += 1

    def _check_completeness(self, member: str, node: RawNode, term: int) -> None:
        first = node.first_index
        for i, committed_in in self._committed_in.items():
            if committed_in >= term or i < first:
                continue
            if node.term_at(i) != self._committed[i]:
                self._fail(
                    f"Leader Completeness: {member} leads term {term} without committed "
                    f"entry {self._committed[i]}/{i}"
                )
