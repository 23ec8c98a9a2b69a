"""``make bench``: the project's benchmarks, measured in one run with their baselines.

Each section prints a table and adds its figures to ``bench-results/bench.json``.
Ratios against a bound measured in the same run matter more than absolute numbers
on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.table import Table

from p2pledger.audit import audit_data_dir
from p2pledger.chain import Block, Transaction
from p2pledger.chain.tx import MAX_TX_SIZE
from p2pledger.crypto import SigningKey
from p2pledger.ledger import Ledger
from p2pledger.node.verify import Verifier
from p2pledger.store import LedgerStore
from tests.bench_cluster import best_row as best_cluster_row
from tests.bench_cluster import run_steps as run_cluster_steps
from tests.bench_cluster import sustained
from tests.factory import GENESIS_TIME_MS, TestNetwork
from tests.raft.bench_core import bench as bench_raft_core
from tests.wire.bench_wire import report as bench_wire_report
from tests.wire.bench_wire import run as bench_wire_run

console = Console(width=max(140, Console().width))
RESULTS = Path("bench-results")


def ed25519_verify_rate(threads: int, count: int = 8000) -> float:
    """Raw Ed25519 verifications per second with ``threads`` busy threads."""
    key = SigningKey.generate()
    msgs = [(i.to_bytes(8, "big") * 24) for i in range(count)]
    sigs = [key.sign(m) for m in msgs]
    pub = key.public_key

    def work(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            pub.verify(msgs[i], sigs[i])

    step = count // threads
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: work(i * step, (i + 1) * step), range(threads)))
    return step * threads / (time.perf_counter() - started)


def make_blocks(net: TestNetwork, blocks: int, txs_per_block: int) -> list[Block]:
    """A valid chain (with real state roots) of ``blocks`` blocks of notary anchors."""
    tmp = Path(tempfile.mkdtemp(prefix="p2pledger-bench-"))
    try:
        with Ledger.create(tmp / "data", net.network) as ledger:
            out = [ledger.tip]
            nonce = 0
            for height in range(1, blocks + 1):
                txs: list[Transaction] = []
                for _ in range(txs_per_block):
                    nonce += 1
                    txs.append(net.tx(nonce, user=nonce % net.n))
                block = ledger.propose(
                    txs, key=net.node_keys[0], time_ms=GENESIS_TIME_MS + height, term=1
                )
                ledger.commit(block, verified_tx_ids={t.id for t in txs})
                out.append(block)
            return out
    finally:
        shutil.rmtree(tmp)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def bench_foundation(blocks: int, txs_per_block: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    net = TestNetwork(n=3)
    console.print(f"building {blocks} blocks of {txs_per_block} signed transactions…")
    chain = make_blocks(net, blocks, txs_per_block)
    n_txs = blocks * txs_per_block
    tmp = Path(tempfile.mkdtemp(prefix="p2pledger-bench-"))
    try:
        data = tmp / "data"
        with LedgerStore.open(data, create=True) as store:
            store.append_block(chain[0])
            secs, _ = timed(lambda: [store.append_block(b) for b in chain[1:]])
        appends_per_s = blocks / secs

        data2 = tmp / "data2"
        ledger = Ledger.create(data2, net.network)
        with ledger:
            commit_secs, _ = timed(lambda: [ledger.commit(b) for b in chain[1:]])
        commit_tx_per_s = n_txs / commit_secs

        raw_1 = ed25519_verify_rate(1)
        raw_all = ed25519_verify_rate(cores)
        audit_secs, report = timed(lambda: audit_data_dir(data))
        assert report.ok, report.error
        audit_tx_per_s = n_txs / audit_secs
    finally:
        shutil.rmtree(tmp)
    return {
        "blocks": blocks,
        "txs_per_block": txs_per_block,
        "cores": cores,
        "durable_appends_per_s": appends_per_s,
        "durable_append_tx_per_s": appends_per_s * txs_per_block,
        "commit_tx_per_s": commit_tx_per_s,
        "audit_tx_per_s": audit_tx_per_s,
        "ed25519_verify_per_s_1_core": raw_1,
        "ed25519_verify_per_s_all_cores": raw_all,
        "audit_vs_raw_all_cores": audit_tx_per_s / raw_all,
        "audit_vs_raw_1_core": audit_tx_per_s / raw_1,
    }


def show(title: str, figures: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in figures.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    console.print(table)


def bench_wire() -> dict[str, Any]:
    """Member transport over one loopback connection, plain framing as the base."""
    results = trio.run(bench_wire_run, False)
    console.print(bench_wire_report(results))
    return {
        f"{r.mode}_{r.size}B": {
            "msgs_per_s": r.rate,
            "mb_per_s": r.count * r.size / r.seconds / 1e6,
        }
        for r in results
    }


def bench_verify_pool(count: int = 6000) -> dict[str, Any]:
    """One member's entry checks (decode, signer, Ed25519) through its verification
    pool with 1, 2, ... threads, and on the event loop's thread (0, worker_threads off):
    does a member use more cores when it has them?"""
    net = TestNetwork(n=3)
    chain_id = net.chain_id
    raws = [net.tx(i + 1, user=i % net.n).raw for i in range(count)]
    out: dict[str, Any] = {}
    for threads in range(0, (os.cpu_count() or 1) + 1):

        async def run(threads: int = threads) -> float:
            verifier = Verifier(threads=threads, cache_size=2 * count)
            started = time.perf_counter()
            for lo in range(0, count, 500):  # in gossip-sized batches, as a member gets them
                checked, _ = await verifier.check(
                    raws[lo : lo + 500],
                    chain_id=chain_id,
                    network=net.network,
                    max_tx_bytes=MAX_TX_SIZE,
                )
                assert all(isinstance(t, Transaction) for t in checked)
            return count / (time.perf_counter() - started)

        out[f"checks_per_s_{threads}_threads" if threads else "checks_per_s_on_loop"] = trio.run(
            run
        )
    out["speedup_all_threads"] = (
        out[f"checks_per_s_{os.cpu_count() or 1}_threads"] / out["checks_per_s_1_threads"]
    )
    show("verification pool: entry checks per second by threads", out)
    return out


def bench_raft() -> dict[str, Any]:
    """The pure Raft core in an in-memory 3-member cluster (no I/O)."""
    out: dict[str, Any] = {}
    for use_codec in (False, True):
        for size, count in ((1024, 50_000), (256 * 1024, 2_000)):
            r = bench_raft_core(size, count, use_codec=use_codec)
            key = f"{size // 1024}KiB{'_codec' if use_codec else ''}"
            out[key] = {"entries_per_s": r.per_second, "mib_per_s": r.per_second * size / 2**20}
    show("raft core: committed entries per second", {k: v["entries_per_s"] for k, v in out.items()})
    return out


def _worker_threads(choice: str, members: int, cores: int, verify_threads: int) -> bool:
    """The members' ``worker_threads``: as asked, or (auto) off when they outnumber the
    cores, so that no member has a core to spare for its threads (on when verification
    threads are asked for)."""
    if choice == "auto":
        return members <= cores or verify_threads > 0
    if choice == "off" and verify_threads:
        raise SystemExit("--verify-threads needs worker threads; drop --worker-threads off")
    return choice == "on"


def bench_cluster(args: argparse.Namespace) -> dict[str, Any]:
    """Members as processes under rising open-loop load, against the bound B."""
    cores = os.cpu_count() or 1
    members = args.members
    RESULTS.mkdir(exist_ok=True)
    raw_before = ed25519_verify_rate(cores, 20_000)
    result = run_cluster_steps(
        [int(r) for r in args.rates.split(",")],
        members=members,
        verify_threads=args.verify_threads,
        worker_threads=_worker_threads(args.worker_threads, members, cores, args.verify_threads),
        single=args.single,
        profile=RESULTS / "leader-profile.txt" if args.profile else None,
        perf=RESULTS / "perf.data" if args.perf else None,
        overload_s=args.overload_seconds,
        step_s=args.step_seconds,
        hold_s=args.hold_seconds,
        batch_s=args.batch_ms / 1000,
    )
    raw_after = ed25519_verify_rate(cores, 20_000)
    raw = (raw_before + raw_after) / 2
    bound = raw / members
    rows = result["steps"]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:,.0f}"

    table = Table(
        title=f"{members} members on 127.0.0.1: open-loop load, a request every "
        f"{args.batch_ms:g} ms, worker threads {'on' if result['worker_threads'] else 'off'} "
        f"(B = {bound:,.0f} tx/s)"
    )
    for col in (
        "offered/s",
        "committed/s",
        "÷ B",
        "p50 ms",
        "p99 ms",
        "max ms",
        "rejected",
        "timed out",
        "client errors",
        "CPU/member",
        "CPU µs/tx",
        "RSS MiB",
        "sustained",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["offered_per_s"]),
            f"{r['committed_per_s']:,.0f}",
            f"{r['committed_per_s'] / bound:.2f}",
            ms(r["p50_s"]),
            ms(r["p99_s"]),
            ms(r["max_s"]),
            str(r["rejected"]),
            str(r["timed_out"]),
            str(r["client_errors"]),
            " ".join(f"{c:.2f}" for c in r["cpu_cores"].values()),
            f"{r['cpu_us_per_tx']:,.0f}" if r["cpu_us_per_tx"] else "-",
            " ".join(f"{m:.0f}" for m in r["rss_mib"].values()),
            "yes" if sustained(r) else "no",
        )
    console.print(table)
    best = best_cluster_row(rows)
    held = result["hold"]["held"] if "hold" in result else best
    # the latency target is p50 at half the best sustained rate (the held one
    # when a hold ran): the step nearest it
    target = held or best
    half = (
        min(rows, key=lambda r: abs(r["offered_per_s"] - target["offered_per_s"] / 2))
        if target
        else None
    )
    summary: dict[str, Any] = {
        "ed25519_verify_per_s_all_cores_before": raw_before,
        "ed25519_verify_per_s_all_cores_after": raw_after,
        "bound_B_tx_per_s": bound,
        "best_sustained_offered_per_s": best["offered_per_s"] if best else None,
        "best_sustained_committed_per_s": best["committed_per_s"] if best else None,
        "best_vs_B": best["committed_per_s"] / bound if best else None,
        "best_offered_vs_B": best["offered_per_s"] / bound if best else None,
        "held_seconds": result["hold"]["seconds"] if "hold" in result else None,
        "held_offered_per_s": held["offered_per_s"] if held else None,
        "held_committed_per_s": held["committed_per_s"] if held else None,
        "held_p99_ms": 1000 * held["p99_s"] if held and held["p99_s"] else None,
        "held_vs_B": held["committed_per_s"] / bound if held else None,
        "held_cpu_us_per_tx": held["cpu_us_per_tx"] if held else None,
        "half_rate_step_offered_per_s": half["offered_per_s"] if half else None,
        "half_rate_step_p50_ms": 1000 * half["p50_s"] if half and half["p50_s"] else None,
        "ledger_check_ok": result["check"]["ok"],
        "term_unchanged": result["terms"]["same"],
        "peak_rss_mib": result["peak_rss_mib"],
    }
    show("cluster summary", {k: v for k, v in summary.items() if k != "peak_rss_mib"})
    if not result["check"]["ok"]:
        console.print(f"[red]ledger check FAILED: {result['check']['problems']}[/red]")
    if "overload" in result:
        show(
            "overload (twice the best sustainable rate)",
            {k: v for k, v in result["overload"].items() if not isinstance(v, dict)},
        )
        console.print(result["overload"])
    top = result["steps"][-1] if result["steps"] else {}
    if "cpu_breakdown" in top:
        breakdown = top["cpu_breakdown"]
        rate = top["offered_per_s"]
        if "error" in breakdown:
            console.print(f"[yellow]no CPU breakdown: {breakdown['error']}[/yellow]")
        else:
            show(
                f"machine CPU at {rate}/s by process (% of samples)",
                breakdown["percent_by_process"],
            )
            jobs = breakdown["all_members_by_job"]
            show(f"members' CPU at {rate}/s by thread job (% of the machine's samples)", jobs)
            codes = breakdown["all_members_by_code"]
            show(f"members' CPU at {rate}/s by code (% of the machine's samples)", codes)
    if "profile" in result:
        show(
            f"leader profile at {result['profile'].get('rate')}/s: self % of samples",
            result["profile"].get("self_percent", {}),
        )
    return {**summary, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--txs-per-block", type=int, default=500)
    parser.add_argument(
        "--only",
        choices=["foundation", "verify", "wire", "raft", "cluster"],
        default=None,
        help="one section",
    )
    parser.add_argument(
        "--rates",
        default="500,1000,2000,3000,3500,4000,4500,5000",
        help="cluster load steps (tx/s)",
    )
    parser.add_argument("--members", type=int, default=3, choices=[3, 5])
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=20.0,
        help="the load generator sends what is due every this many ms, as one request",
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=20.0,
        help="then hold the best sustained rate this long (0: do not), stepping down if it fails",
    )
    parser.add_argument(
        "--verify-threads", type=int, default=0, help="node.toml verify_threads (0: one per core)"
    )
    parser.add_argument(
        "--worker-threads",
        choices=("auto", "on", "off"),
        default="auto",
        help="node.toml worker_threads: checks and block apply in threads (on) or on each "
        "member's event loop (off); auto: off when the members outnumber the cores",
    )
    parser.add_argument(
        "--single", action="store_true", help="one transaction a request (no batches)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the leader at the top rate")
    parser.add_argument(
        "--perf",
        action="store_true",
        help="perf record the whole machine at the top rate: CPU by process, thread job and code",
    )
    parser.add_argument(
        "--overload-seconds",
        type=float,
        default=0.0,
        help="then offer twice the best sustainable rate this long (term, RSS, 503s)",
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.only in (None, "foundation"):
        results["foundation"] = bench_foundation(args.blocks, args.txs_per_block)
        show("foundation: store, audit and Ed25519", results["foundation"])
    if args.only in (None, "verify"):
        results["verify_pool"] = bench_verify_pool()
    if args.only in (None, "wire"):
        results["wire"] = bench_wire()
    if args.only in (None, "raft"):
        results["raft"] = bench_raft()
    if args.only in (None, "cluster"):
        results["cluster"] = bench_cluster(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"results written to {RESULTS / 'bench.json'}")


if __name__ == "__main__":
    main()
