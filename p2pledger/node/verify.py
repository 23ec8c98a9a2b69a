"""Signature checks off the event loop, in a bounded pool of worker threads.

Ed25519 verification is a member's main cost per transaction, and PyNaCl releases
the GIL while it verifies, so ``Verifier`` splits each batch of transactions (from the
API or from gossip) into one chunk per thread and checks the chunks in parallel in
``trio.to_thread.run_sync`` calls bounded by a ``CapacityLimiter`` of ``threads``:
the trio loop itself never verifies, and a member on a bigger machine uses its cores.
Each chunk is decoded and checked first and its signatures verified after, one after
another: a thread that alternated would hand the GIL back and forth at every
transaction, and two threads would then verify little faster than one.

With ``threads=0`` the checks run on the event loop's own thread instead, a slice at
a time with the loop let in between: a member whose cores are all busy with other
members (several on one machine, as netsim and the benchmark run them) gains nothing
from threads there, and the hand-offs and GIL contention cost it CPU.

Each member verifies each transaction's signature once: the ids that passed are kept
in a bounded cache (``verified``), which the apply step passes to block validation,
so a committed block only re-verifies the transactions this member has not seen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Iterable, Sequence

import trio

from p2pledger.api.admission import check_signature, check_unsigned
from p2pledger.api.errors import TxRejected
from p2pledger.chain import Transaction
from p2pledger.gossip import SeenCache
from p2pledger.membership import Network

__all__ = ["Checked", "Verifier", "default_verify_threads"]

#: What an entry check gives for one raw transaction.
Checked = Transaction | TxRejected

#: Below this many transactions a chunk is not worth another thread.
_MIN_CHUNK = 16
#: Checked on the loop's thread, this many at a time (about 10 ms) between yields.
_INLINE_SLICE = 128


def default_verify_threads() -> int:
    """One verification thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Verifier:
    """Entry checks (decode, chain, signer, signature) in ``threads`` worker threads
    (0: on the event loop's thread), and the bounded cache of ids whose signatures
    passed."""

    def __init__(self, *, threads: int, cache_size: int) -> None:
        if threads < 0:
            raise ValueError("threads must be 0 (the event loop's thread) or more")
        self.threads = threads
        self._limiter = trio.CapacityLimiter(max(1, threads))
        self._verified = SeenCache(cache_size)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._verified

    def remember(self, tx_ids: Iterable[bytes]) -> None:
        """Record ids whose signatures were checked elsewhere (call from the trio loop)."""
        for tx_id in tx_ids:
            self._verified.add(tx_id)

    @property
    def verified(self) -> Container[bytes]:
        """The verified ids, for block validation in a worker thread. Only the trio
        loop adds to it; a lookup that races an eviction can only miss, which costs a
        verification, never a wrong answer (an id is added only after it passed)."""
        return self._verified

    async def check(
        self,
        raws: Sequence[bytes],
        *,
        chain_id: bytes,
        network: Network,
        max_tx_bytes: int,
        committed: Callable[[list[bytes]], set[bytes]] | None = None,
        former_signers: Container[bytes] = frozenset(),
    ) -> tuple[list[Checked], set[bytes]]:
        """Check every one of ``raws`` (results in order), and, when ``committed`` is
        given, which of the ids that passed it says are already committed (it runs in
        the same worker thread, so one LMDB read follows each chunk's checks)."""
        if not raws:
            return [], set()
        if self.threads == 0:
            chunks = -(-len(raws) // _INLINE_SLICE)
        else:
            chunks = max(1, min(self.threads, len(raws) // _MIN_CHUNK))
        size = -(-len(raws) // chunks)
        parts: list[tuple[list[Checked], set[bytes]]] = [([], set())] * chunks

        def work(part: Sequence[bytes]) -> tuple[list[Checked], set[bytes]]:
            out: list[Checked] = []
            for raw in part:
                try:
                    out.append(
                        check_unsigned(
                            raw,
                            chain_id=chain_id,
                            network=network,
                            max_tx_bytes=max_tx_bytes,
                            former_signers=former_signers,
                        )
                    )
                except TxRejected as exc:
                    out.append(exc)
            for i, tx in enumerate(out):  # then the signatures, one after another
                if isinstance(tx, Transaction):
                    try:
                        check_signature(tx)
                    except TxRejected as exc:
                        out[i] = exc
            done: set[bytes] = set()
            if committed is not None:
                ids = [t.id for t in out if isinstance(t, Transaction)]
                if ids:
                    done = committed(ids)
            return out, done

        async def run(i: int) -> None:
            part = raws[i * size : (i + 1) * size]
            parts[i] = await trio.to_thread.run_sync(work, part, limiter=self._limiter)

        if self.threads == 0:
            await trio.lowlevel.checkpoint()
            for i in range(chunks):
                if i:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                parts[i] = work(raws[i * size : (i + 1) * size])
        elif chunks == 1:
            await run(0)
        else:
            async with trio.open_nursery() as nursery:
                for i in range(chunks):
                    nursery.start_soon(run, i)
        results: list[Checked] = []
        already: set[bytes] = set()
        for out, done in parts:
            results.extend(out)
            already |= done
        self.remember(t.id for t in results if isinstance(t, Transaction))
        return results, already
