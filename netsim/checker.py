"""The verdict of a netsim run: did the members agree, and keep every promise made?

``check`` takes what a tester has after a run: each member's ``p2pledger export``
(``Block.to_json()`` dicts, height 0 first), each member's ``p2pledger audit``
result, the client history and the runner's events. It returns a ``Verdict``
listing every violation of netsim/DESIGN.md's guarantees, each naming the member,
height and transaction a tester should look at, with figures for the report.

How it decides:

- A ledger is first checked for shape: heights 0..n in order, each block's hash is
  SHA-256 of its header bytes, each block's ``prev`` is its parent's hash, as many
  results as transactions. The first block that fails is an ``audit_failed`` and the
  ledger is judged on the blocks before it. (Signatures, roots and re-execution are
  ``p2pledger audit``'s job; its result comes in ``audits``.)
- The *reference* ledger is the longest one; among equally long ones, the one whose
  tip hash most members share, then the first member by name. "Committed" means "on
  the reference ledger".
- ``fork``: two members hold different blocks at a height both have; the lowest such
  height is reported once per pair. If the two blocks order the same transactions
  but record different verdicts or state roots, the members agreed on the order and
  disagreed on its execution: that is ``state_diverged`` instead.
- Transactions are the ``tx_ids`` at heights >= 1 (genesis carries the network
  entry, which no client sent). ``duplicate``, ``phantom``, ``rejected_committed``
  and ``height_mismatch`` are checked on every ledger; when several members show
  the same finding it is one violation naming them all.
- ``lost``: a request answered ``committed`` is missing from a ledger that reached
  the reference height. Members behind it are ``not_converged``, not a flood of
  ``lost``.
- ``dropped_pending``: a ``pending`` request is not on the reference ledger and the
  member it was sent to was not crashed (a ``fault.start`` of ``kill`` or ``wipe``
  naming it in ``target`` or in the resolved ``members``) at or after the time it was
  sent. With such a crash, it is counted in ``stats["pending_lost_with_crash"]``.
- A ``rejected`` answer does not count when another request with the same id was
  accepted (a re-submission of an id already in flight may be refused).
- ``not_converged``: a ``not_converged`` event; neither a ``converged`` nor a
  ``not_converged`` event; tips (height and hash) differing at the end; or recovery
  longer than the bound. Recovery is the time from the last ``fault.end`` to the
  first ``converged`` event after it.
- Membership changes (``fault.start`` events whose ``fault`` is ``membership``): a
  member that joined late is judged like any other (its ledger starts at genesis and
  catches up). A member *removed* (``action`` remove) is not expected to reach the
  final tip: from its removal on it is left out of ``not_converged`` and ``lost``
  (its blocks still count for ``fork``, ``duplicate`` and the rest), and
  ``stats["removed"]`` gives its removal height and where its ledger ends. A
  ``pending`` request sent to a member at or before its removal may be lost with it
  (the runner stops a removed member's daemon, as its operator would: like a crash),
  and is counted in ``stats["pending_lost_with_membership"]``. A request whose
  signer's key was revoked is not excused: accepted before the revocation, it must
  still commit (valid before it, invalid ``unknown_signer`` after); a ``pending`` one
  that never commits is a ``dropped_pending`` that names the revocation. A committed
  transaction that is invalid because its signer was revoked is what the ledger must
  do; the client is told so, and nothing flags it.
- ``membership_failed``: a membership change the run made did not go through (the
  CLI or the ledger refused it, it did not commit, or an added member did not
  become healthy and catch up); the event's ``detail.error`` says which.

``Verdict.stats`` (plain JSON values): ``members``, ``requests``, ``outcomes`` (count
per outcome), ``reference`` and ``reference_height``, ``committed_txs``, ``valid`` and
``invalid`` (on the reference), ``tips`` (member: height and hash),
``pending_committed``, ``pending_lost_with_crash``, ``unknown_committed``,
``verdict_mismatch`` (committed answers whose valid flag differs from the ledger's,
counted per member; each is also a ``verdict_mismatch`` violation: a client was told
something the ledger does not say), ``invalid_reasons`` (count per reason on the
reference), ``membership`` (each change: t, action, member, version, height, error),
``removed``, ``pending_lost_with_membership``,
``last_fault_end``, ``converged_at``, ``recovery_s`` and ``recovery_bound_s``.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from types import MappingProxyType
from typing import Any, Final

from netsim.history import CRASH_FAULTS, Event, Outcome, Request

__all__ = [
    "VIOLATION_KINDS",
    "AuditResult",
    "CheckInputError",
    "Verdict",
    "Violation",
    "check",
    "short",
]

#: The kinds of violation, in the order a verdict lists them (netsim/DESIGN.md).
VIOLATION_KINDS: Final = (
    "audit_failed",
    "fork",
    "state_diverged",
    "not_converged",
    "lost",
    "duplicate",
    "phantom",
    "rejected_committed",
    "dropped_pending",
    "height_mismatch",
    "verdict_mismatch",
    "membership_failed",
)
_KIND_ORDER: Final = {kind: i for i, kind in enumerate(VIOLATION_KINDS)}
_HEX: Final = re.compile(r"(?:[0-9a-f]{2})*")
#: Event times are rounded to the millisecond; a request sent within one of a
#: membership event was sent before the change (its event is written after it).
_EVENT_TICK: Final = 0.001


class CheckInputError(ValueError):
    """``check`` was called with arguments it cannot judge (not a finding about the run)."""


def short(hex_id: str) -> str:
    """The first 12 hex digits of a hash or transaction id, for messages."""
    return hex_id[:12]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditResult:
    """A member's ``p2pledger audit`` outcome; ``message`` says what failed, or a summary."""

    member: str
    ok: bool
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One broken guarantee, with where to look."""

    kind: str
    message: str
    member: str | None = None
    height: int | None = None
    tx: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KIND_ORDER:
            raise CheckInputError(f"violation kind {self.kind!r} is not one of {VIOLATION_KINDS}")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "member": self.member,
            "height": self.height,
            "tx": self.tx,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The checker's answer; ``ok`` exactly when there are no violations."""

    ok: bool
    violations: tuple[Violation, ...]
    stats: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.ok != (not self.violations):
            raise CheckInputError("a verdict is ok exactly when it has no violations")

    def kinds(self) -> Counter[str]:
        """How many violations of each kind."""
        return Counter(v.kind for v in self.violations)


# --- ledgers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Block:
    height: int
    hash: str
    state_root: str
    tx_ids: tuple[str, ...]
    results: tuple[tuple[bool, str | None], ...]


class _Malformed(Exception):
    pass


def _hex(value: object, what: str) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise _Malformed(f"{what} is not lowercase hex")
    return value


def _parse_block(raw: object, index: int, parent: _Block | None) -> _Block:
    if not isinstance(raw, Mapping):
        raise _Malformed("is not a JSON object")
    header = raw.get("header")
    if not isinstance(header, Mapping):
        raise _Malformed("has no header object")
    height = header.get("height")
    if height != index or isinstance(height, bool):
        raise _Malformed(f"has height {height!r} (heights must run 0, 1, 2, ...)")
    block_hash = _hex(raw.get("hash"), "'hash'")
    header_bytes = bytes.fromhex(_hex(raw.get("header_bytes"), "'header_bytes'"))
    if hashlib.sha256(header_bytes).hexdigest() != block_hash:
        raise _Malformed(f"hash {short(block_hash)} is not SHA-256 of its header bytes")
    if parent is not None and header.get("prev") != parent.hash:
        raise _Malformed(
            f"prev {short(str(header.get('prev')))} is not the hash "
            f"{short(parent.hash)} of height {parent.height}"
        )
    state_root = _hex(header.get("state_root"), "header 'state_root'")
    tx_ids = raw.get("tx_ids")
    results = raw.get("results")
    if not isinstance(tx_ids, list) or not isinstance(results, list):
        raise _Malformed("has no 'tx_ids' or 'results' list")
    ids = tuple(_hex(t, "a tx id") for t in tx_ids)
    if len(results) != len(ids) or header.get("tx_count") != len(ids):
        raise _Malformed(
            f"has {len(ids)} tx ids, {len(results)} results and tx_count {header.get('tx_count')}"
        )
    verdicts = []
    for r in results:
        if not isinstance(r, Mapping) or not isinstance(r.get("valid"), bool):
            raise _Malformed("has a result that is not {'valid': bool, 'reason': ...}")
        reason = r.get("reason")
        verdicts.append((bool(r["valid"]), reason if isinstance(reason, str) else None))
    return _Block(index, block_hash, state_root, ids, tuple(verdicts))


def _parse_ledger(blocks: Sequence[Mapping[str, Any]]) -> tuple[list[_Block], str | None]:
    """The well-formed prefix of an export and what is wrong with the rest, if anything."""
    out: list[_Block] = []
    if not blocks:
        return out, "the export is empty (no genesis block)"
    for index, raw in enumerate(blocks):
        try:
            out.append(_parse_block(raw, index, out[-1] if out else None))
        except (_Malformed, ValueError) as exc:
            return out, f"export block #{index} {exc}"
    return out, None


def _member_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: m2 before m10."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|\D+", name))


def _pick_reference(chains: Mapping[str, list[_Block]]) -> str | None:
    live = {m: c for m, c in chains.items() if c}
    if not live:
        return None
    tips = Counter(c[-1].hash for c in live.values())
    return min(live, key=lambda m: (-len(live[m]), -tips[live[m][-1].hash], _member_key(m)))


# --- findings shared by several members ---------------------------------------------


class _Findings:
    """Per-transaction findings, merged when several members show the same one."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, int | None, str], list[str]] = defaultdict(list)

    def add(self, kind: str, member: str, *, tx: str, height: int | None, what: str) -> None:
        self._seen[(kind, tx, height, what)].append(member)

    def violations(self) -> Iterable[Violation]:
        for (kind, tx, height, what), members in self._seen.items():
            yield Violation(
                kind=kind,
                member=members[0] if len(members) == 1 else None,
                height=height,
                tx=tx,
                message=f"tx {short(tx)} {what} (on {', '.join(members)})",
            )


def _positions(chain: Sequence[_Block]) -> dict[str, list[tuple[int, int]]]:
    """Each transaction id's (height, index in block), genesis left out."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for block in chain[1:]:
        for i, tx in enumerate(block.tx_ids):
            out[tx].append((block.height, i))
    return out


# --- the check ---------------------------------------------------------------------


def check(
    *,
    ledgers: Mapping[str, Sequence[Mapping[str, Any]]],
    audits: Mapping[str, AuditResult],
    history: Sequence[Request],
    events: Sequence[Event],
    recovery_bound_s: float,
) -> Verdict:
    """Judge a run; see the module docstring for every rule."""
    if not math.isfinite(recovery_bound_s) or recovery_bound_s < 0:
        raise CheckInputError(f"recovery_bound_s must be finite and >= 0, not {recovery_bound_s}")
    listed = {
        m for e in events if e.kind == "run.start" for m in e.data["members"] if isinstance(m, str)
    }
    members = sorted(set(ledgers) | set(audits) | listed, key=_member_key)
    violations: list[Violation] = []
    chains = _read_ledgers(members, ledgers, audits, violations)
    violations += _forks(chains)

    reference = _pick_reference(chains)
    ref_chain = chains[reference] if reference is not None else []
    top = len(ref_chain) - 1
    positions = {m: _positions(c) for m, c in chains.items()}
    ref_pos = positions[reference] if reference is not None else {}
    by_id: dict[str, list[Request]] = defaultdict(list)
    for r in history:
        by_id[r.id].append(r)
    committed = {r.id: r for r in history if r.outcome is Outcome.COMMITTED}

    changes = _membership(events, violations)
    removed = {c["member"]: c for c in changes if c["action"] == "remove" and not c["error"]}
    findings = _Findings()
    verdict_mismatch = _tx_findings(chains, positions, by_id, findings)
    for member, chain in chains.items():
        if top >= 0 and len(chain) - 1 == top and member not in removed:
            _lost(member, positions[member], committed, findings)
    violations += findings.violations()
    pending = _pending(by_id, committed, ref_pos, events, reference, top, violations, changes)
    staying = {m: c for m, c in chains.items() if m not in removed}
    recovery = _convergence(staying, events, recovery_bound_s, violations)
    invalid_reasons = Counter(
        reason or "invalid" for b in ref_chain[1:] for valid, reason in b.results if not valid
    )

    outcomes = Counter(str(r.outcome) for r in history)
    ref_results = [valid for b in ref_chain[1:] for valid, _ in b.results]
    unknown_committed = sum(
        1
        for tx, rs in by_id.items()
        if tx in ref_pos and tx not in committed and any(r.outcome is Outcome.UNKNOWN for r in rs)
    )
    stats: dict[str, Any] = {
        "members": members,
        "requests": len(history),
        "outcomes": {str(o): outcomes.get(str(o), 0) for o in Outcome},
        "reference": reference,
        "reference_height": top if reference is not None else None,
        "committed_txs": len(ref_results),
        "valid": sum(ref_results),
        "invalid": len(ref_results) - sum(ref_results),
        "tips": {m: {"height": len(c) - 1, "hash": c[-1].hash} for m, c in chains.items() if c},
        **pending,
        "unknown_committed": unknown_committed,
        "verdict_mismatch": verdict_mismatch,
        "invalid_reasons": dict(sorted(invalid_reasons.items())),
        "membership": changes,
        "removed": {
            m: {
                "t": c["t"],
                "height": c["height"],
                "ledger_ends": len(chains[m]) - 1 if chains.get(m) else None,
            }
            for m, c in removed.items()
        },
        **recovery,
    }
    violations.sort(
        key=lambda v: (
            _KIND_ORDER[v.kind],
            -1 if v.height is None else v.height,
            _member_key(v.member or ""),
            v.tx or "",
            v.message,
        )
    )
    return Verdict(ok=not violations, violations=tuple(violations), stats=MappingProxyType(stats))


def _read_ledgers(
    members: Sequence[str],
    ledgers: Mapping[str, Sequence[Mapping[str, Any]]],
    audits: Mapping[str, AuditResult],
    violations: list[Violation],
) -> dict[str, list[_Block]]:
    """Each exported member's well-formed chain; shape and audit failures as violations."""
    chains: dict[str, list[_Block]] = {}

    def failed(member: str, message: str, height: int | None = None) -> None:
        violations.append(
            Violation(kind="audit_failed", member=member, height=height, message=message)
        )

    for member in members:
        if member not in ledgers:
            failed(member, f"{member}: no export")
        else:
            chain, problem = _parse_ledger(ledgers[member])
            chains[member] = chain
            if problem is not None:
                failed(member, f"{member}: {problem}", len(chain))
        audit = audits.get(member)
        if audit is None:
            failed(member, f"{member}: no audit result")
        elif not audit.ok:
            failed(member, f"{member}: audit failed: {audit.message}")
    return chains


def _tx_findings(
    chains: Mapping[str, list[_Block]],
    positions: Mapping[str, Mapping[str, list[tuple[int, int]]]],
    by_id: Mapping[str, list[Request]],
    findings: _Findings,
) -> int:
    """duplicate, phantom, rejected_committed and height_mismatch on every ledger; returns
    how many committed answers disagree with the ledger's verdict (valid or not)."""
    verdict_mismatch = 0
    for member, pos in positions.items():
        chain = chains[member]
        for tx, places in pos.items():
            heights = [h for h, _ in places]
            first = heights[0]
            if len(places) > 1:
                where = ", ".join(f"height {h} #{i}" for h, i in places)
                what = f"committed {len(places)} times: {where}"
                findings.add("duplicate", member, tx=tx, height=heights[1], what=what)
            records = by_id.get(tx)
            if not records:
                what = f"at height {first} was sent by no client"
                findings.add("phantom", member, tx=tx, height=first, what=what)
                continue
            if all(r.outcome is Outcome.REJECTED for r in records):
                r = records[0]
                what = (
                    f"rejected by {r.member} ({r.reason}) at t={r.done:.3f}, committed at {first}"
                )
                findings.add("rejected_committed", member, tx=tx, height=first, what=what)
            for r in records:
                if r.outcome is not Outcome.COMMITTED:
                    continue
                if r.height not in heights:
                    what = f"reported committed at height {r.height} by {r.member}, is at {first}"
                    findings.add("height_mismatch", member, tx=tx, height=first, what=what)
                elif (ledger := chain[r.height].results[places[heights.index(r.height)][1]][0]) != (
                    r.valid
                ):
                    verdict_mismatch += 1
                    what = (
                        f"was answered {'valid' if r.valid else 'invalid'} by {r.member}, "
                        f"the ledger records it {'valid' if ledger else 'invalid'}"
                    )
                    findings.add("verdict_mismatch", member, tx=tx, height=first, what=what)
    return verdict_mismatch


def _lost(
    member: str,
    pos: Mapping[str, list[tuple[int, int]]],
    committed: Mapping[str, Request],
    findings: _Findings,
) -> None:
    for tx, r in committed.items():
        if tx not in pos:
            what = (
                f"reported committed at height {r.height} by {r.member} (t={r.done:.3f}) is missing"
            )
            findings.add("lost", member, tx=tx, height=None, what=what)


def _membership(events: Sequence[Event], violations: list[Violation]) -> list[dict[str, Any]]:
    """Each membership change of the run; membership_failed for each that failed."""
    out: list[dict[str, Any]] = []
    for e in events:
        if e.kind != "fault.start" or e.data.get("fault") != "membership":
            continue
        detail = e.data.get("detail")
        detail = detail if isinstance(detail, Mapping) else {}
        target = e.data.get("target")
        resolved = e.data.get("members")
        member = (
            resolved[0]
            if isinstance(resolved, list) and resolved and isinstance(resolved[0], str)
            else str(detail.get("member") or target)
        )
        error = detail.get("error")
        change = {
            "t": e.t,
            "action": str(detail.get("action")),
            "member": member,
            "version": detail.get("version"),
            "height": detail.get("height"),
            "error": str(error) if error else None,
        }
        out.append(change)
        if error:
            violations.append(
                Violation(
                    kind="membership_failed",
                    member=member,
                    message=(
                        f"membership change #{e.data.get('id')} ({change['action']} {member}) at "
                        f"t={e.t:.3f} did not go through: {error}"
                    ),
                )
            )
    return out


def _pending(
    by_id: Mapping[str, list[Request]],
    committed: Mapping[str, Request],
    ref_pos: Mapping[str, list[tuple[int, int]]],
    events: Sequence[Event],
    reference: str | None,
    top: int,
    violations: list[Violation],
    changes: Sequence[Mapping[str, Any]] = (),
) -> dict[str, int]:
    """dropped_pending, and the counts of pending requests committed, lost to a crash,
    or lost to the removal of their member or the revocation of their signer."""
    crashes = [e for e in events if e.kind == "fault.start" and e.data["fault"] in CRASH_FAULTS]
    removals = [
        (c["member"], c["t"]) for c in changes if c["action"] == "remove" and not c["error"]
    ]
    revocations = [
        (c["member"], c["t"]) for c in changes if c["action"] == "revoke-user" and not c["error"]
    ]
    committed_n = crashed_n = membership_n = 0
    for tx, records in by_id.items():
        pending = [r for r in records if r.outcome is Outcome.PENDING]
        if not pending or tx in committed:
            continue
        if tx in ref_pos:
            committed_n += 1
        elif any(e.is_crash_of(r.member) and e.t >= r.sent for r in pending for e in crashes):
            crashed_n += 1
        elif any(r.member == m and t + _EVENT_TICK >= r.sent for r in pending for m, t in removals):
            membership_n += 1
        else:
            r = pending[0]
            message = (
                f"tx {short(tx)} accepted by {r.member} (sent t={r.sent:.3f}, pending) is not on "
                f"{reference} (height {top}), and {r.member} did not crash after it was sent"
            )
            revoked = [t for m, t in revocations if m == r.member and t + _EVENT_TICK >= r.sent]
            if revoked:
                message += (
                    f"; its signer, {r.member}'s user key, was revoked at t={revoked[0]:.3f}: "
                    "it should have committed invalid (unknown_signer), not vanished"
                )
            violations.append(
                Violation(kind="dropped_pending", member=r.member, tx=tx, message=message)
            )
    return {
        "pending_committed": committed_n,
        "pending_lost_with_crash": crashed_n,
        "pending_lost_with_membership": membership_n,
    }


def _forks(chains: Mapping[str, list[_Block]]) -> list[Violation]:
    out = []
    for a, b in combinations(chains, 2):
        ca, cb = chains[a], chains[b]
        for x, y in zip(ca, cb, strict=False):
            if x.hash == y.hash:
                continue
            h = x.height
            if x.tx_ids == y.tx_ids:
                what = []
                if x.results != y.results:
                    diff = sum(1 for p, q in zip(x.results, y.results, strict=True) if p != q)
                    what.append(f"{diff} of {len(x.results)} verdicts differ")
                if x.state_root != y.state_root:
                    what.append(f"state root {short(x.state_root)} vs {short(y.state_root)}")
                if what:
                    out.append(
                        Violation(
                            kind="state_diverged",
                            height=h,
                            message=(
                                f"{a} and {b} applied the same {len(x.tx_ids)} txs at height {h} "
                                f"differently: {'; '.join(what)}"
                            ),
                        )
                    )
                    break
            out.append(
                Violation(
                    kind="fork",
                    height=h,
                    message=(
                        f"{a} and {b} differ at height {h}: block {short(x.hash)} "
                        f"({len(x.tx_ids)} txs) vs {short(y.hash)} ({len(y.tx_ids)} txs)"
                    ),
                )
            )
            break
    return out


def _convergence(
    chains: Mapping[str, list[_Block]],
    events: Sequence[Event],
    bound: float,
    violations: list[Violation],
) -> dict[str, Any]:
    tips = {m: (len(c) - 1, c[-1].hash) for m, c in chains.items() if c}
    if len(set(tips.values())) > 1:
        listing = ", ".join(f"{m} {h} {short(x)}" for m, (h, x) in tips.items())
        violations.append(
            Violation(kind="not_converged", message=f"tips differ at the end: {listing}")
        )
    for e in events:
        if e.kind == "not_converged":
            detail = ", ".join(f"{k}={v}" for k, v in e.data.items())
            violations.append(
                Violation(
                    kind="not_converged",
                    message=f"the runner gave up on convergence at t={e.t:.3f}"
                    + (f" ({detail})" if detail else ""),
                )
            )
    ends = [e.t for e in events if e.kind == "fault.end"]
    last_end = max(ends) if ends else None
    converged = [
        e for e in events if e.kind == "converged" and (last_end is None or e.t >= last_end)
    ]
    at = converged[0].t if converged else None
    recovery = at - last_end if at is not None and last_end is not None else None
    if not any(e.kind in ("converged", "not_converged") for e in events):
        violations.append(
            Violation(kind="not_converged", message="the run recorded no converged event")
        )
    elif at is None and not any(e.kind == "not_converged" for e in events):
        violations.append(
            Violation(
                kind="not_converged",
                message=f"no converged event after the last fault ended at t={last_end:.3f}",
            )
        )
    if recovery is not None and recovery > bound:
        violations.append(
            Violation(
                kind="not_converged",
                message=(
                    f"recovery took {recovery:.3f} s (last fault ended t={last_end:.3f}, "
                    f"converged t={at:.3f}), more than the bound of {bound:.3f} s"
                ),
            )
        )
    return {
        "last_fault_end": last_end,
        "converged_at": at,
        "recovery_s": recovery,
        "recovery_bound_s": bound,
    }
