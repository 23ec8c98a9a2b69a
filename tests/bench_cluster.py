"""Three real members on 127.0.0.1 under open-loop load (a ``make bench`` section).

Transactions are signed before each timed step (signing is the clients' cost), then
offered at a fixed rate, spread over the members' APIs by a pool of client threads.
Commit latency is what each member measures from accepting a transaction to
committing it (its ``p2pledger_commit_latency_seconds`` histogram), read from
``/metrics`` before and after each step.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from p2pledger.chain import Transaction
from p2pledger.membership import BlockLimits
from tests.node.cluster import Cluster

STEP_SECONDS = 5.0
CLIENT_THREADS = 16


def histogram(text: str) -> tuple[dict[float, float], float]:
    """Cumulative bucket counts and the total count of the commit-latency histogram."""
    buckets: dict[float, float] = {}
    count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "p2pledger_commit_latency_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return buckets, count


def committed_total(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "p2pledger_transactions_committed":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def quantile(deltas: dict[float, float], total: float, q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` (coarse but honest)."""
    for bound in sorted(deltas):
        if deltas[bound] >= q * total:
            return bound
    return float("inf")


def offer(cluster: Cluster, txs: list[Transaction], rate: float) -> dict[str, int]:
    """Submit ``txs`` open-loop at ``rate`` per second; count the answers. Each client
    thread keeps one HTTP/1.1 connection per member, as a real client would."""
    outcome = {"accepted": 0, "rejected": 0, "errors": 0}
    lock = threading.Lock()
    start = time.monotonic() + 0.2
    names = cluster.names
    local = threading.local()

    def connection(name: str) -> http.client.HTTPConnection:
        conns = getattr(local, "conns", None)
        if conns is None:
            conns = local.conns = {}
        if name not in conns:
            url = urllib.parse.urlsplit(cluster.apis[name])
            conns[name] = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        return conns[name]  # type: ignore[no-any-return]

    def send(i: int) -> None:
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the schedule of an open-loop load, not a wait on state
        name = names[i % len(names)]
        body = json.dumps({"tx": txs[i].raw.hex()})
        try:
            conn = connection(name)
            conn.request("POST", "/v1/transactions", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            key = "accepted" if response.status == 202 else "rejected"
        except OSError:
            local.conns.pop(name, None)
            key = "errors"
        with lock:
            outcome[key] += 1

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(send, range(len(txs))))
    return outcome


def run_steps(rates: Iterable[int]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="p2pledger-bench-") as tmp:
        cluster = Cluster(Path(tmp), n=3, limits=BlockLimits())
        try:
            cluster.start_all()
            cluster.leader()
            for rate in rates:
                count = int(rate * STEP_SECONDS)
                txs = [cluster.tx(user=i % 3) for i in range(count)]
                before = {n: cluster.api(n).metrics() for n in cluster.names}
                started = time.monotonic()
                answers = offer(cluster, txs, rate)
                # let what was accepted commit (bounded)
                deadline = time.monotonic() + 15
                target = committed_total(before["m0"]) + answers["accepted"]
                while time.monotonic() < deadline:
                    if committed_total(cluster.api("m0").metrics()) >= target:
                        break
                    time.sleep(0.1)  # polling with a deadline
                elapsed = time.monotonic() - started
                after = {n: cluster.api(n).metrics() for n in cluster.names}
                deltas: dict[float, float] = {}
                total = 0.0
                for n in cluster.names:
                    b0, c0 = histogram(before[n])
                    b1, c1 = histogram(after[n])
                    total += c1 - c0
                    for bound, value in b1.items():
                        deltas[bound] = deltas.get(bound, 0.0) + value - b0.get(bound, 0.0)
                committed = committed_total(after["m0"]) - committed_total(before["m0"])
                rows.append(
                    {
                        "offered_per_s": rate,
                        "accepted": answers["accepted"],
                        "rejected": answers["rejected"],
                        "errors": answers["errors"],
                        "committed": int(committed),
                        "committed_per_s": committed / max(elapsed, STEP_SECONDS),
                        "p50_s": quantile(deltas, total, 0.5) if total else None,
                        "p99_s": quantile(deltas, total, 0.99) if total else None,
                    }
                )
        finally:
            cluster.close()
    return rows
