"""Real members on 127.0.0.1 under open-loop load (the ``make bench`` cluster section).

Three members (or five) run as ``p2pledger run`` processes with durable LMDB and the
default block limits. For each rate the transactions are signed first (signing is
the clients' cost), then offered open-loop: every ``BATCH_INTERVAL_S`` what is due is
sent as one ``POST /v1/transactions {"txs": [...], "wait": true}`` to the next member
in turn (``--single``: one transaction a request, for comparison), from a pool of
client threads, at its scheduled time whatever happened to earlier requests.

Each transaction's commit latency is exact: from its scheduled offer time to the
member's answer that it is committed (the member that received it answers once it
has committed it). Per step: committed tx/s, p50/p99/max latency, rejected (503
mempool full or an entry refusal) and timed-out counts, CPU per member (from
``/proc``), and peak RSS. At the end every ledger is checked as netsim's checker
does: identical tips, no transaction twice, every acknowledged one committed, and
nothing committed that the load generator did not send.

The bound is measured in the same run: B = Ed25519 verifications per second with
every core busy, divided by the number of members (each member verifies each
transaction once, and they share this machine's cores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from p2pledger import config
from p2pledger.chain import Transaction
from p2pledger.membership import BlockLimits
from p2pledger.store import LedgerStore
from tests.bench_perf import PerfRecorder
from tests.factory import GENESIS_TIME_MS
from tests.node.cluster import Cluster, wait_until

STEP_SECONDS = 5.0
BATCH_INTERVAL_S = 0.02
CLIENT_THREADS = 64
WAIT_S = 10.0
HOLD_GRAIN = 250  # tx/s: the hold's rates between steps are multiples of this
HOLD_MARGIN = 0.95  # after a failed hold, try at most this share of what it committed
KEEP_ALIVE_S = 4.0  # below hypercorn's 5 s keep-alive timeout, the API server's default
_CLK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Outcome:
    """What the load generator saw for one step."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    committed_ids: list[bytes] = dataclasses.field(default_factory=list)
    codes: Counter[str] = dataclasses.field(default_factory=Counter)
    last_answer: float = 0.0


def sign(cluster: Cluster, count: int, tag: str) -> list[Transaction]:
    """``count`` notary anchors from the cluster's users, signed now (untimed)."""
    assert cluster.network is not None
    chain_id = cluster.chain_id
    base = cluster.nonce
    cluster.nonce += count

    def one(i: int) -> Transaction:
        digest = hashlib.sha256(f"bench-{tag}-{i}".encode()).digest()
        return Transaction.create(
            cluster.users[i % len(cluster.users)],
            chain_id=chain_id,
            op="notary.anchor",
            args={"digest": digest, "description": f"bench {tag} {i}"},
            nonce=base + i + 1,
            time_ms=GENESIS_TIME_MS + base + i + 1,
        )

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(one, range(count), chunksize=256))


def offer(
    cluster: Cluster,
    txs: list[Transaction],
    rate: float,
    *,
    single: bool = False,
    threads: int = CLIENT_THREADS,
    batch_s: float = BATCH_INTERVAL_S,
) -> Outcome:
    """Offer ``txs`` open-loop at ``rate`` per second; see the module docstring.
    ``threads`` bounds the requests in flight: past saturation, when each waits up to
    ``WAIT_S``, it must be at least ``WAIT_S / batch_s`` or the load generator
    slows down to the members' pace and stops being open-loop. ``batch_s``: how
    often what is due goes out as one request (a client's batching interval)."""
    out = Outcome()
    lock = threading.Lock()
    names = cluster.names
    local = threading.local()
    start = time.monotonic() + 0.2
    due = [start + i / rate for i in range(len(txs))]
    groups: list[list[int]] = []
    if single:
        groups = [[i] for i in range(len(txs))]
    else:
        k = 0
        current: list[int] = []
        for i, t in enumerate(due):
            while t >= start + (k + 1) * batch_s:
                if current:
                    groups.append(current)
                    current = []
                k += 1
            current.append(i)
        if current:
            groups.append(current)

    def connection(name: str) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to ``name``, and whether it was used before. One
        idle for nearly the server's keep-alive timeout is replaced, not reused."""
        conns: dict[str, tuple[http.client.HTTPConnection, float]] = local.__dict__.setdefault(
            "conns", {}
        )
        now = time.monotonic()
        if name in conns and now - conns[name][1] < KEEP_ALIVE_S:
            conns[name] = (conns[name][0], now)
            return conns[name][0], True
        if name in conns:
            conns[name][0].close()
        url = urllib.parse.urlsplit(cluster.apis[name])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=WAIT_S + 20)
        conns[name] = (conn, now)
        return conn, False

    def post(name: str, payload: str) -> dict[str, Any]:
        """The answer to one POST. A reused connection the server closed meanwhile
        fails before any answer: that one is retried once on a new connection."""
        for _ in range(2):
            conn, reused = connection(name)
            try:
                conn.request(
                    "POST", "/v1/transactions", payload, {"Content-Type": "application/json"}
                )
                data: dict[str, Any] = json.loads(conn.getresponse().read())
                return data
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                local.conns.pop(name)[0].close()
                if not reused:
                    raise
        raise AssertionError("unreachable: the second try uses a new connection")

    def send(g: int) -> None:
        group = groups[g]
        send_at = due[group[-1]]  # the last one is due: every one of the group is
        delay = send_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the schedule of an open-loop load, not a wait on state
        name = names[g % len(names)]
        if single:
            body = {"tx": txs[group[0]].raw.hex(), "wait": True, "timeout_s": WAIT_S}
        else:
            body = {"txs": [txs[i].raw.hex() for i in group], "wait": True, "timeout_s": WAIT_S}
        try:
            data = post(name, json.dumps(body))
            done = time.monotonic()
        except (OSError, ValueError, http.client.HTTPException) as e:
            stale = local.conns.pop(name, None)
            if stale is not None:
                stale[0].close()
            with lock:
                out.codes[f"client_{type(e).__name__}"] += len(group)
            return
        items = data["results"] if not single else [data]
        with lock:
            out.last_answer = max(out.last_answer, done)
            for i, item in zip(group, items, strict=True):
                if item.get("status") == "committed":
                    out.latencies.append(done - due[i])
                    out.committed_ids.append(txs[i].id)
                else:
                    out.codes[item.get("error", {}).get("code", "error")] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, range(len(groups))))
    return out


def quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def memory_kib(pid: int) -> dict[str, int]:
    """Resident memory (``VmRSS``, its peak ``VmHWM``) and its two parts: ``RssAnon``
    (the heap: mempool, queues, caches) and ``RssFile`` (mapped files, mostly the
    LMDB map, which grows with the ledger and is page cache the kernel can reclaim)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def set_limits(cluster: Cluster, **changes: Any) -> None:
    """Change every member's node.toml ``[limits]`` (before the members start)."""
    for name in cluster.names:
        path = cluster.root / name / "node.toml"
        node = config.load_node(path)
        limits = dataclasses.replace(node.limits, **changes)
        node = dataclasses.replace(node, limits=limits)
        path.write_text(config.node_to_toml(node, relative_to=path.parent))


def check_ledgers(cluster: Cluster, sent: set[bytes], acknowledged: set[bytes]) -> dict[str, Any]:
    """After a graceful stop: every ledger the same, each acknowledged transaction
    exactly once, nothing that was not sent."""
    tips: dict[str, tuple[int, str]] = {}
    problems: list[str] = []
    counts: dict[str, int] = {}
    for name in cluster.names:
        with LedgerStore.open(cluster.root / name / "data", readonly=True) as store:
            ids: list[bytes] = []
            tip_hash = ""
            height = 0
            for block in store.blocks(1):
                ids.extend(hashlib.sha256(raw).digest() for raw in block.txs)
                tip_hash, height = block.hash.hex(), block.height
        tips[name] = (height, tip_hash)
        counts[name] = len(ids)
        unique = set(ids)
        if len(unique) != len(ids):
            problems.append(f"{name}: {len(ids) - len(unique)} transactions committed twice")
        if missing := acknowledged - unique:
            problems.append(f"{name}: {len(missing)} acknowledged transactions missing")
        if foreign := unique - sent:
            problems.append(f"{name}: {len(foreign)} committed transactions nobody sent")
    if len(set(tips.values())) != 1:
        problems.append(f"tips differ: {tips}")
    return {"ok": not problems, "problems": problems, "tips": tips, "committed": counts}


class Profiler:
    """py-spy on the leader for one step (raw collapsed stacks, summarised)."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--threads",
                "--gil",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=10)
        return summarize_profile(self.out)


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Share of samples (of the thread holding the GIL) by function, self and total."""
    if not path.exists():
        return {"error": "no profile recorded"}
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("thread (")]
        if not frames:
            continue
        samples += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            total[frame] += count
    share = lambda c: round(100 * c / max(samples, 1), 1)  # noqa: E731
    return {
        "samples": samples,
        "self_percent": {k: share(v) for k, v in own.most_common(top)},
        "total_percent": {k: share(v) for k, v in total.most_common(top)},
    }


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(where.split('/')[-2:])})"


def _step(
    cluster: Cluster,
    rate: int,
    seconds: float,
    tag: str,
    *,
    single: bool,
    leader: str,
    profile: Path | None,
    sent: set[bytes],
    acknowledged: set[bytes],
    batch_s: float,
    perf: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One load step's row (and the leader's profile when ``profile`` is given;
    with ``perf``, the whole machine's CPU by process, thread job and code, in the
    row's ``cpu_breakdown``)."""
    txs = sign(cluster, int(rate * seconds), tag)
    sent.update(t.id for t in txs)
    pids = {n: p.pid for n, p in cluster.procs.items()}
    cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
    profiler = Profiler(pids[leader], seconds, profile) if profile is not None else None
    recorder = PerfRecorder(seconds, perf) if perf is not None else None
    started = time.monotonic()
    outcome = offer(cluster, txs, rate, single=single, batch_s=batch_s)
    elapsed = max(outcome.last_answer, started + seconds) - started
    cpu_s = {n: cpu_seconds(p) - cpu0[n] for n, p in pids.items()}
    cpu = {n: v / elapsed for n, v in cpu_s.items()}
    acknowledged.update(outcome.committed_ids)
    lat = sorted(outcome.latencies)
    row = {
        "offered_per_s": rate,
        "seconds": seconds,
        "batch_ms": 1000 * batch_s,
        "offered": len(txs),
        "committed": len(lat),
        "committed_per_s": len(lat) / elapsed,
        "p50_s": quantile(lat, 0.50),
        "p99_s": quantile(lat, 0.99),
        "max_s": lat[-1] if lat else None,
        "rejected": sum(
            v
            for c, v in outcome.codes.items()
            if c != "commit_timeout" and not c.startswith("client_")
        ),
        "timed_out": outcome.codes.get("commit_timeout", 0),
        "client_errors": sum(v for c, v in outcome.codes.items() if c.startswith("client_")),
        "codes": dict(outcome.codes),
        "cpu_cores": cpu,
        "cpu_us_per_tx": 1e6 * sum(cpu_s.values()) / len(lat) if lat else None,
        "rss_mib": {n: memory_kib(p)["VmRSS"] / 1024 for n, p in pids.items()},
        "leader": leader,
    }
    if recorder is not None:
        roles = {pid: name for name, pid in pids.items()} | {os.getpid(): "load generator"}
        row["cpu_breakdown"] = recorder.finish(roles, members=list(pids))
    prof = None
    if profiler is not None:
        prof = profiler.finish()
        prof["rate"] = rate
    return row, prof


def hold(
    cluster: Cluster,
    rows: list[dict[str, Any]],
    seconds: float,
    *,
    leader: str,
    single: bool,
    sent: set[bytes],
    acknowledged: set[bytes],
    batch_s: float,
    tries: int = 5,
) -> dict[str, Any]:
    """Hold the best sustained step's rate for ``seconds``: a short step can hide a
    backlog that grows a little every second. If the hold is not sustained, the
    next rate tried is halfway down to the next lower sustained step (the steps are
    coarse, and the knee is often between them), and with one try left that step
    itself, but never more than the failed hold could commit (``next_hold_rate``);
    at most ``tries`` rates in all, and the first one held is the result."""
    below = sorted({r["offered_per_s"] for r in rows if sustained(r)}, reverse=True)
    tried: list[dict[str, Any]] = []
    rate: int | None = below[0] if below else None
    while rate is not None and len(tried) < tries:
        row, _ = _step(
            cluster,
            rate,
            seconds,
            f"hold-{rate}",
            single=single,
            leader=leader,
            profile=None,
            sent=sent,
            acknowledged=acknowledged,
            batch_s=batch_s,
        )
        print("  hold " + _row_line(row).strip(), flush=True)
        tried.append(row)
        if sustained(row):
            return {"seconds": seconds, "held": row, "tried": tried}
        rate = next_hold_rate(
            rate, below, tries - len(tried), committed_per_s=row["committed_per_s"]
        )
    return {"seconds": seconds, "held": None, "tried": tried}


def next_hold_rate(
    failed: int,
    sustained_rates: Iterable[int],
    left: int,
    *,
    committed_per_s: float | None = None,
) -> int | None:
    """The rate to hold after ``failed`` did not hold: halfway (rounded down to a
    multiple of ``HOLD_GRAIN``) to the next lower of ``sustained_rates`` while more
    than one try is ``left``, else that lower rate; None when there is none or no
    try is left. A hold that fell behind committed what the cluster could do at
    that point, and the ledger only grows: so the rate is also at most
    ``HOLD_MARGIN`` of the failed hold's ``committed_per_s`` (rounded down), and
    that cap is tried even below every sustained step. A load that is not
    absorbed would otherwise spend the tries a little under it, far above what holds."""
    if left < 1:
        return None
    lower = max((r for r in sustained_rates if r < failed), default=None)
    rate = lower
    if lower is not None and left > 1:
        mid = (failed + lower) // 2 // HOLD_GRAIN * HOLD_GRAIN
        if lower < mid < failed:
            rate = mid
    if committed_per_s is not None:
        cap = int(committed_per_s * HOLD_MARGIN) // HOLD_GRAIN * HOLD_GRAIN
        if HOLD_GRAIN <= cap < failed and (rate is None or cap < rate):
            rate = cap
    return rate


def run_steps(
    rates: Iterable[int],
    *,
    members: int = 3,
    verify_threads: int = 0,
    worker_threads: bool = True,
    single: bool = False,
    profile: Path | None = None,
    perf: Path | None = None,
    overload_s: float = 0.0,
    step_s: float = STEP_SECONDS,
    hold_s: float = 0.0,
    batch_s: float = BATCH_INTERVAL_S,
) -> dict[str, Any]:
    """Every step's figures, the ledger check, (with ``hold_s``) the best sustained
    rate held that long, and (with ``overload_s``) an overload at twice the best
    sustainable rate."""
    rates = list(rates)
    rows: list[dict[str, Any]] = []
    sent: set[bytes] = set()
    acknowledged: set[bytes] = set()
    result: dict[str, Any] = {
        "members": members,
        "verify_threads": verify_threads,
        "worker_threads": worker_threads,
    }
    with tempfile.TemporaryDirectory(prefix="p2pledger-bench-") as tmp:
        cluster = Cluster(Path(tmp), n=members, limits=BlockLimits())
        try:
            set_limits(cluster, verify_threads=verify_threads, worker_threads=worker_threads)
            cluster.start_all()
            leader = cluster.leader()
            term0 = {n: cluster.api(n).status()["term"] for n in cluster.names}
            for k, rate in enumerate(rates):
                last = k == len(rates) - 1
                row, prof = _step(
                    cluster,
                    rate,
                    step_s,
                    f"{rate}-{k}",
                    single=single,
                    leader=leader,
                    profile=profile if last else None,
                    sent=sent,
                    acknowledged=acknowledged,
                    batch_s=batch_s,
                    perf=perf if last else None,
                )
                if prof is not None:
                    result["profile"] = prof
                rows.append(row)
                print(_row_line(row), flush=True)
            if hold_s:
                result["hold"] = hold(
                    cluster,
                    rows,
                    hold_s,
                    leader=leader,
                    single=single,
                    sent=sent,
                    acknowledged=acknowledged,
                    batch_s=batch_s,
                )
            best = best_row(rows)
            if hold_s:
                # twice the rate held; if none held, twice the lowest one tried, so
                # that the overload still runs past what the members sustain
                tried = result["hold"]["tried"]
                best = result["hold"]["held"] or min(
                    tried, key=lambda r: r["offered_per_s"], default=None
                )
            if overload_s and best is not None:
                result["overload"] = overload(
                    cluster, 2 * best["offered_per_s"], overload_s, batch_s=batch_s
                )
                sent.update(result["overload"].pop("sent"))
                acknowledged.update(result["overload"].pop("acknowledged"))
            term1 = {n: cluster.api(n).status()["term"] for n in cluster.names}
            result["terms"] = {"before": term0, "after": term1, "same": term0 == term1}
            result["peak_rss_mib"] = {
                n: memory_kib(p.pid)["VmHWM"] / 1024 for n, p in cluster.procs.items()
            }
            # let the members agree on one tip, then stop them gracefully
            wait_until(
                lambda: len({cluster.height(n) for n in cluster.names}) == 1,
                "every member at the same height",
            )
            for name in cluster.names:
                cluster.signal(name, signal.SIGTERM)
            result["check"] = check_ledgers(cluster, sent, acknowledged)
        finally:
            cluster.close()
    result["steps"] = rows
    return result


def sustained(r: dict[str, Any]) -> bool:
    """A step is sustained when its p99 is under 1 s and every transaction it had
    accepted committed (none timed out or failed), with at most 1% refused (503), and
    the load generator itself had no failed requests."""
    accepted = r["offered"] - r["rejected"]
    return (
        r["p99_s"] is not None
        and r["p99_s"] < 1.0
        and r["timed_out"] == 0
        and r.get("client_errors", 0) == 0
        and r["rejected"] <= 0.01 * r["offered"]
        and r["committed"] >= accepted
    )


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest sustained step (see ``sustained``). Its committed/s is measured
    over the step plus its drain (until the last answer), so it sits a little under
    the offered rate; it is not compared with it."""
    ok = [r for r in rows if sustained(r)]
    return max(ok, key=lambda r: r["offered_per_s"]) if ok else None


def overload(
    cluster: Cluster, rate: float, seconds: float, *, batch_s: float = BATCH_INTERVAL_S
) -> dict[str, Any]:
    """Offer ``rate`` (twice what is sustainable) for ``seconds``: the term must not
    move, 503s must appear instead of growth, and RSS must stay bounded: the heap
    (``anon``) by the mempool's and queues' limits; the mapped ledger (``file``)
    grows with what commits, as the ledger on disk does."""
    pids = {n: p.pid for n, p in cluster.procs.items()}
    term0 = {n: cluster.api(n).status()["term"] for n in cluster.names}
    readings: dict[str, list[dict[str, int]]] = {n: [] for n in pids}  # one a second
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for n, p in pids.items():
                readings[n].append(memory_kib(p))
            stop.wait(1.0)

    def mib(key: str) -> dict[str, list[float]]:
        return {n: [r[key] / 1024 for r in rs] for n, rs in readings.items() if rs}

    # All signed first, then offered without a pause: signing between chunks would
    # let the members drain their queues and hide the overload.
    txs = sign(cluster, int(rate * seconds), "overload")
    sent = {t.id for t in txs}
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    threads = int(WAIT_S / batch_s) + CLIENT_THREADS  # (see ``offer``)
    outcome = offer(cluster, txs, rate, threads=threads, batch_s=batch_s)
    acknowledged = set(outcome.committed_ids)
    codes = outcome.codes
    committed = len(outcome.latencies)
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    term1 = {n: cluster.api(n).status()["term"] for n in cluster.names}
    rss, anon, mapped = mib("VmRSS"), mib("RssAnon"), mib("RssFile")
    return {
        "offered_per_s": rate,
        "seconds": elapsed,
        "committed": committed,
        "codes": dict(codes),
        "term_same": term0 == term1,
        "terms": {"before": term0, "after": term1},
        "rss_mib_max": {n: max(v) for n, v in rss.items()},
        "rss_mib_last": {n: v[-1] for n, v in rss.items()},
        "anon_mib_first": {n: v[0] for n, v in anon.items()},
        "anon_mib_max": {n: max(v) for n, v in anon.items()},
        "anon_mib_last": {n: v[-1] for n, v in anon.items()},
        "anon_mib_every_10s": {n: [round(x) for x in v[::10]] for n, v in anon.items()},
        "file_mib_first": {n: v[0] for n, v in mapped.items()},
        "file_mib_max": {n: max(v) for n, v in mapped.items()},
        "sent": sent,
        "acknowledged": acknowledged,
    }


def _row_line(r: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:.0f}ms"

    return (
        f"  offered {r['offered_per_s']}/s: committed {r['committed_per_s']:.0f}/s "
        f"p50 {ms(r['p50_s'])} p99 {ms(r['p99_s'])} max {ms(r['max_s'])} "
        f"rejected {r['rejected']} timed out {r['timed_out']} "
        f"client errors {r['client_errors']} "
        f"cpu {' '.join(f'{c:.2f}' for c in r['cpu_cores'].values())}"
    )
