"""Bounded open-loop load through the members' HTTP APIs, recorded in history.jsonl.

Open loop: request ``k`` is sent at ``start + k / rate`` whatever happened to the
requests before it, so a slow or partitioned cluster sees the load a real client
population would offer, not a load that politely backs off (a closed loop hides
latency behind its own waiting). Bounded: at most ``clients`` requests are in flight;
a request whose time comes while all of them are busy is *skipped*: not sent, not in
the history, counted in ``statistics().skipped``. The schedule is uniform (arrivals
exactly ``1 / rate`` apart), so the spacing of ``sent`` in the history can be checked.

Each request is a fresh transaction signed by the user key of the member it is sent
to: ``fund.transfer`` of a few units to another member's user, or ``notary.anchor``
of 32 random bytes. Transactions are built and signed before their send time, and
everything random (operation, recipient, amount, digest) comes from the seeded rng in
schedule order, so the same seed offers the same operations whatever the answers.
``setup`` first issues a large amount of fund "relief" to every user (signed by the
issuer u0) so the transfers never overdraw.

The members change while the load runs (membership faults): ``add_member`` points
load at a member added as a voter and funds its user; ``remove_member`` stops sending
to a removed member and signing with its user; ``replace_user`` signs a member's
later requests with its new user key (after a revocation) once that key is funded;
``set_issuer`` follows the fund's issuer when it moves. A user whose funding has not
committed (or could not: no issuer left) only anchors documents. Requests already
signed with a revoked or removed user's key when the change commits are still sent:
they commit invalid (``unknown_signer``) or are refused, which the API tells the
client and the history records, and the checker accepts (netsim/DESIGN.md).

Every request sent gets exactly one line in the history once its outcome is final
(netsim/DESIGN.md): 200 -> ``committed``; 504 ``commit_timeout`` -> ``pending``; other
4xx and 503 -> ``rejected`` with the API's code; no answer (timeout, unreachable,
garbage, another 5xx, or the workload cancelled while waiting) -> ``unknown``.
Blocking HTTP calls run in worker threads (``trio.to_thread``, at most ``clients``).
"""

from __future__ import annotations

import functools
import heapq
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import trio

from netsim.history import HistoryWriter, Outcome, Request
from p2pledger.chain import Transaction
from p2pledger.client import (
    ApiClient,
    ApiRequestFailed,
    ApiResponseInvalid,
    ApiTimeout,
    ApiUnreachable,
    BadApiUrl,
)
from p2pledger.crypto import SigningKey
from p2pledger.errors import P2PLedgerError

__all__ = [
    "ANCHOR_OP",
    "FUND",
    "ISSUE_AMOUNT",
    "ISSUE_OP",
    "TRANSFER_OP",
    "Answer",
    "LoadTarget",
    "Submitter",
    "Workload",
    "WorkloadError",
    "WorkloadSetupFailed",
    "WorkloadSpec",
    "WorkloadStatistics",
    "outcome_of",
]

FUND: Final = "relief"
ISSUE_OP: Final = "fund.issue"
TRANSFER_OP: Final = "fund.transfer"
ANCHOR_OP: Final = "notary.anchor"
#: Units issued to every user at setup: far more than any run transfers.
ISSUE_AMOUNT: Final = 10**12
#: How long setup waits for each issue to commit (a leader may still be elected).
SETUP_WAIT_S: Final = 30.0
#: Seconds the HTTP client waits beyond the API's own commit timeout.
HTTP_MARGIN_S: Final = 5.0
_MAX_TRANSFER: Final = 10


class WorkloadError(Exception):
    """The workload cannot run as specified."""


class WorkloadSetupFailed(WorkloadError):
    """A setup transaction (funding a user) did not commit as valid."""


class Submitter(Protocol):
    """What the workload needs of an API client (``ApiClient`` is one)."""

    def submit(self, raw: bytes, *, wait: bool = False, timeout_s: float = 10.0) -> dict[str, Any]:
        """Send a signed transaction; see ``ApiClient.submit``."""
        ...


class LoadTarget(Protocol):
    """What the workload needs of a cluster (``netsim.cluster.Cluster`` is one)."""

    @property
    def names(self) -> list[str]: ...

    @property
    def users(self) -> dict[str, SigningKey]: ...

    @property
    def chain_id(self) -> bytes: ...

    def api_url(self, name: str) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSpec:
    """The load: how much, for how long, how concurrent, which operations, where."""

    #: Transactions offered per second (open loop).
    rate: float = 20.0
    duration_s: float = 10.0
    #: The most requests in flight; a request beyond it is skipped (not sent).
    clients: int = 4
    #: The share of ``fund.transfer``; the rest are ``notary.anchor``.
    transfer: float = 0.7
    #: Each submit waits this long for the commit (then 504 ``commit_timeout``).
    wait_timeout_s: float = 5.0
    #: Whose APIs receive the load, round robin; () = every member.
    members: tuple[str, ...] = ()
    #: Seeds the rng when the workload is not given one.
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise WorkloadError(f"rate must be a positive number, not {self.rate!r}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise WorkloadError(f"duration_s must be >= 0, not {self.duration_s!r}")
        if self.clients < 1:
            raise WorkloadError(f"clients must be at least 1, not {self.clients}")
        if not 0.0 <= self.transfer <= 1.0:
            raise WorkloadError(f"transfer is a share in [0, 1], not {self.transfer!r}")
        if not (math.isfinite(self.wait_timeout_s) and self.wait_timeout_s > 0):
            raise WorkloadError(f"wait_timeout_s must be positive, not {self.wait_timeout_s!r}")

    @property
    def requests(self) -> int:
        """How many requests the schedule holds: those due before ``duration_s``."""
        return max(0, math.ceil(self.duration_s * self.rate - 1e-9))


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadStatistics:
    """Counts of the load so far (setup requests are not counted, but are in the
    history). ``scheduled = sent + skipped``; ``sent = in_flight + the outcomes``."""

    scheduled: int
    sent: int
    skipped: int
    in_flight: int
    committed: int
    invalid: int  # committed, but judged invalid by the state machine
    pending: int
    rejected: int
    unknown: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The final outcome of one request as the history records it."""

    outcome: Outcome
    height: int | None = None
    valid: bool | None = None
    reason: str | None = None


def outcome_of(result: Mapping[str, Any] | P2PLedgerError, *, tx_id: str) -> Answer:
    """Map the API's answer to a ``submit`` with ``wait`` (or the client's error) to
    the request's outcome (netsim/DESIGN.md, history.jsonl)."""
    if isinstance(result, ApiRequestFailed):
        if result.code == "commit_timeout":
            return Answer(outcome=Outcome.PENDING, reason=result.code)
        if 400 <= result.status < 500 or result.status == 503:
            return Answer(outcome=Outcome.REJECTED, reason=result.code or "http_error")
        # A 500 may come after the member admitted the transaction: it may commit.
        return Answer(outcome=Outcome.UNKNOWN, reason=result.code or "http_error")
    if isinstance(result, ApiTimeout):
        return Answer(outcome=Outcome.UNKNOWN, reason="timeout")
    if isinstance(result, ApiUnreachable):
        return Answer(outcome=Outcome.UNKNOWN, reason="unreachable")
    if isinstance(result, ApiResponseInvalid):
        return Answer(outcome=Outcome.UNKNOWN, reason="invalid_answer")
    if isinstance(result, P2PLedgerError):
        return Answer(outcome=Outcome.UNKNOWN, reason=type(result).__name__)
    height, valid, reason = result.get("height"), result.get("valid"), result.get("reason")
    if (
        result.get("status") != "committed"
        or result.get("id") != tx_id
        or not isinstance(height, int)
        or isinstance(height, bool)
        or height < 1
        or not isinstance(valid, bool)
        or not (reason is None or isinstance(reason, str))
    ):
        return Answer(outcome=Outcome.UNKNOWN, reason="invalid_answer")
    if valid:
        reason = None
    elif not reason:
        reason = "invalid"
    return Answer(outcome=Outcome.COMMITTED, height=height, valid=valid, reason=reason)


@dataclass(frozen=True, slots=True)
class _Planned:
    """A signed request waiting for its send time."""

    member: str
    op: str
    raw: bytes
    id: str


def _default_client(url: str, wait_timeout_s: float) -> Submitter:
    return ApiClient(url, timeout_s=wait_timeout_s + HTTP_MARGIN_S)


class Workload:
    """Drives ``spec``'s load at ``target`` and writes each request to ``history``.

    ``started_at`` is the run's start on the trio clock: history times are seconds
    since then. ``client_factory`` makes the API client of a member's URL (tests pass
    a fake).
    """

    def __init__(
        self,
        target: LoadTarget,
        spec: WorkloadSpec,
        history: HistoryWriter,
        *,
        started_at: float,
        rng: random.Random | None = None,
        client_factory: Callable[[str], Submitter] | None = None,
    ) -> None:
        self.spec = spec
        self._history = history
        self._started_at = started_at
        self._rng = rng if rng is not None else random.Random(spec.seed)
        names = list(target.names)
        users = target.users
        self._members = list(spec.members) or names
        unknown = [m for m in self._members if m not in names]
        if unknown:
            raise WorkloadError(
                f"workload members {unknown} are not in the cluster ({', '.join(names)})"
            )
        missing = [m for m in names if m not in users]
        if missing:
            raise WorkloadError(f"members {missing} have no user key")
        self._names = names
        self._users = {m: users[m] for m in names}
        self._issuer: SigningKey | None = users[names[0]]
        #: Users whose funding committed (they may transfer); setup funds every one.
        self._funded: set[str] = set(names)
        self._chain_id = target.chain_id
        self._target = target
        factory = client_factory or functools.partial(
            _default_client, wait_timeout_s=max(spec.wait_timeout_s, SETUP_WAIT_S)
        )
        self._factory = factory
        self._clients = {m: factory(target.api_url(m)) for m in names}
        self._threads = trio.CapacityLimiter(spec.clients + len(names))
        self._free_slots = list(range(spec.clients))  # a heap: the lowest free client id
        self._nonce = self._rng.getrandbits(40) << 20
        self._scheduled = 0
        self._skipped = 0
        self._sent = 0
        self._in_flight = 0
        self._outcomes = dict.fromkeys(Outcome, 0)
        self._invalid = 0

    def statistics(self) -> WorkloadStatistics:
        return WorkloadStatistics(
            scheduled=self._scheduled,
            sent=self._sent,
            skipped=self._skipped,
            in_flight=self._in_flight,
            committed=self._outcomes[Outcome.COMMITTED],
            invalid=self._invalid,
            pending=self._outcomes[Outcome.PENDING],
            rejected=self._outcomes[Outcome.REJECTED],
            unknown=self._outcomes[Outcome.UNKNOWN],
        )

    # --- setup -------------------------------------------------------------------------

    async def setup(self) -> None:
        """Issue ``ISSUE_AMOUNT`` of "relief" to every user, signed by the issuer (u0),
        and wait for each to commit as valid; WorkloadSetupFailed otherwise."""
        answers: dict[str, tuple[str, Answer]] = {}
        issuer = self._issuer
        if issuer is None:
            raise WorkloadSetupFailed("no user key may issue the fund")

        async def one(index: int, name: str) -> None:
            member = self._members[index % len(self._members)]
            args = {
                "fund": FUND,
                "to": self._users[name].public_key.raw,
                "amount": ISSUE_AMOUNT,
                "memo": f"netsim setup {name}",
            }
            planned = self._sign(member, issuer, ISSUE_OP, args)
            answer = await self._send(planned, 0, wait_s=SETUP_WAIT_S, count=False)
            answers[name] = (member, answer)

        async with trio.open_nursery() as nursery:
            for index, name in enumerate(self._names):
                nursery.start_soon(one, index, name)
        failed = [
            f"{name} (sent to {member}): {a.outcome} {a.reason or ''}".strip()
            for name, (member, a) in sorted(answers.items())
            if a.outcome is not Outcome.COMMITTED or not a.valid
        ]
        if failed:
            raise WorkloadSetupFailed(
                "funding the users did not commit: " + "; ".join(failed) + "; is the cluster "
                "healthy, with a leader? (see the members' logs)"
            )

    # --- the members change -------------------------------------------------------------

    @property
    def members(self) -> list[str]:
        """The members receiving load now."""
        return list(self._members)

    def add_member(self, name: str, user: SigningKey, *, target: bool) -> None:
        """``name`` was added with ``user``: with ``target``, send it a share of the
        load from now on (its user only anchors until ``fund`` commits)."""
        if name not in self._clients:
            self._clients[name] = self._factory(self._target.api_url(name))
        if name not in self._names:
            self._names.append(name)
        self._users[name] = user
        self._funded.discard(name)
        if target and name not in self._members:
            self._members.append(name)

    def remove_member(self, name: str) -> None:
        """``name`` was removed: no more load to it, nor signed or paid to its user."""
        if name in self._members and len(self._members) > 1:
            self._members.remove(name)
        if name in self._names:
            self._names.remove(name)
        self._users.pop(name, None)
        self._funded.discard(name)

    def replace_user(self, name: str, user: SigningKey) -> None:
        """``name``'s user key was revoked and ``user`` registered instead: sign its
        later requests with ``user`` (only anchors until ``fund`` commits)."""
        self._users[name] = user
        self._funded.discard(name)

    def set_issuer(self, issuer: SigningKey | None) -> None:
        """The key that issues the fund now (None: no user may)."""
        self._issuer = issuer

    async def fund(self, name: str, *, via: str) -> bool:
        """Issue ``ISSUE_AMOUNT`` to ``name``'s user through ``via``'s API and wait for
        it to commit valid (recorded in the history like setup's); then ``name`` may
        transfer. Whether it did."""
        if self._issuer is None or name not in self._users:
            return False
        if self._issuer.public_key == self._users[name].public_key:
            self._funded.add(name)
            return True
        if via not in self._clients:
            self._clients[via] = self._factory(self._target.api_url(via))
        args = {
            "fund": FUND,
            "to": self._users[name].public_key.raw,
            "amount": ISSUE_AMOUNT,
            "memo": f"netsim funds {name}",
        }
        planned = self._sign(via, self._issuer, ISSUE_OP, args)
        answer = await self._send(planned, 0, wait_s=SETUP_WAIT_S, count=False)
        if answer.outcome is Outcome.COMMITTED and answer.valid:
            self._funded.add(name)
            return True
        return False

    # --- the load ----------------------------------------------------------------------

    async def run(self) -> None:
        """Offer the schedule's requests at their times; return once every request
        sent has its final outcome in the history."""
        start = trio.current_time()
        interval = 1.0 / self.spec.rate
        async with trio.open_nursery() as nursery:
            for k in range(self.spec.requests):
                planned = self._plan(k)  # signed before its time comes
                await trio.sleep_until(start + k * interval)
                self._scheduled += 1
                if not self._free_slots:
                    self._skipped += 1
                    continue
                slot = heapq.heappop(self._free_slots)
                nursery.start_soon(self._send_load, planned, slot)

    def _plan(self, k: int) -> _Planned:
        member = self._members[k % len(self._members)]
        key = self._users[member]
        others = [m for m in self._names if m != member]
        transfer = bool(others) and self._rng.random() < self.spec.transfer
        if transfer and member in self._funded:
            to = self._users[self._rng.choice(others)].public_key.raw
            args: dict[str, Any] = {
                "fund": FUND,
                "from": key.public_key.raw,
                "to": to,
                "amount": self._rng.randint(1, _MAX_TRANSFER),
                "memo": f"netsim {k}",
            }
            return self._sign(member, key, TRANSFER_OP, args)
        digest = self._rng.randbytes(32)
        return self._sign(member, key, ANCHOR_OP, {"digest": digest, "description": f"doc {k}"})

    def _sign(self, member: str, key: SigningKey, op: str, args: dict[str, Any]) -> _Planned:
        self._nonce += 1
        tx = Transaction.create(
            key,
            chain_id=self._chain_id,
            op=op,
            args=args,
            nonce=self._nonce,
            time_ms=time.time_ns() // 1_000_000,
        )
        return _Planned(member=member, op=op, raw=tx.raw, id=tx.id.hex())

    async def _send_load(self, planned: _Planned, slot: int) -> None:
        try:
            await self._send(planned, slot, wait_s=self.spec.wait_timeout_s, count=True)
        finally:
            heapq.heappush(self._free_slots, slot)

    async def _send(self, planned: _Planned, slot: int, *, wait_s: float, count: bool) -> Answer:
        """Submit one request with ``wait`` and write its history record; the record
        is written even when the wait is cancelled (then its outcome is unknown)."""
        client = self._clients[planned.member]
        call = functools.partial(client.submit, planned.raw, wait=True, timeout_s=wait_s)
        sent = self._now()
        if count:
            self._sent += 1
            self._in_flight += 1
        answer = Answer(outcome=Outcome.UNKNOWN, reason="cancelled")
        try:
            try:
                result = await trio.to_thread.run_sync(
                    call, abandon_on_cancel=True, limiter=self._threads
                )
            except BadApiUrl:
                raise
            except P2PLedgerError as exc:
                answer = outcome_of(exc, tx_id=planned.id)
            else:
                answer = outcome_of(result, tx_id=planned.id)
        finally:
            done = max(sent, self._now())
            self._history.write(
                Request(
                    id=planned.id,
                    client=slot,
                    member=planned.member,
                    op=planned.op,
                    sent=sent,
                    done=done,
                    outcome=answer.outcome,
                    height=answer.height,
                    valid=answer.valid,
                    reason=answer.reason,
                )
            )
            if count:
                self._in_flight -= 1
                self._outcomes[answer.outcome] += 1
                if answer.valid is False:
                    self._invalid += 1
        return answer

    def _now(self) -> float:
        return max(0.0, trio.current_time() - self._started_at)
