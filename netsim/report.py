"""A netsim run's report: ``report.json``, ``report.txt`` (verdict first) and ``timeline.png``.

``summarize`` turns the checker's verdict, the history and the events into one
plain-JSON dict, the content of ``report.json``; everything else reads only that
dict, so a report can be re-rendered or re-plotted later from the JSON alone.
``summarize`` and ``render_text`` are pure; ``plot_timeline`` and ``write_report``
write files.

Definitions used throughout:

- load window: from the first request sent to the last request answered;
  throughput is committed requests over its length.
- latency: ``done - sent`` of committed requests; percentiles are nearest-rank (the
  smallest value with at least p% of the values at or below it).
- leader change: a ``leader`` event naming another leader than the one before (the
  first leader is not a change; a new term for the same leader is listed, not counted).
- a fault recovers at the first ``sample`` after its ``fault.end`` in which every
  member reports the same height and that height is above the highest height sampled
  at or before the fault's end, or at the first ``converged`` event after its end,
  whichever comes first.
- timeline bins: committed requests per ``bin_s`` seconds by ``done``, with the p50
  and p99 latency of the requests in each bin.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

from netsim.checker import Verdict
from netsim.history import Event, Outcome, Request

__all__ = [
    "ReportFiles",
    "fault_windows",
    "percentile",
    "plot_timeline",
    "render_text",
    "summarize",
    "write_report",
]

BIN_S: Final = 1.0
PERCENTILES: Final = (50, 90, 99)
#: Violations of one kind listed in report.txt before "... and N more" (report.json has all).
MAX_LISTED: Final = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFiles:
    """Where ``write_report`` put the report."""

    json: Path
    text: Path
    timeline: Path


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of non-empty ``values``."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 < p <= 100:
        raise ValueError(f"a percentile is in (0, 100], not {p}")
    ordered = sorted(values)
    rank = math.ceil(Fraction(p) * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def _plain(value: Any) -> Any:
    """``value`` with mappings as dicts and tuples as lists: what JSON writes."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _latency(requests: Sequence[Request]) -> dict[str, Any]:
    lat = [r.latency for r in requests]
    out: dict[str, Any] = {"count": len(lat)}
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(lat, p) if lat else None
    out["max"] = max(lat) if lat else None
    return out


#: Samples taken this soon after the run starts are left out of the idle figures
#: (the daemons are still starting and the workload funds its accounts).
IDLE_SETTLE_S: Final = 5.0


def resource_figures(events: Sequence[Event]) -> dict[str, Any]:
    """Per member: the largest resident memory sampled, and the CPU it used while idle
    (samples from ``IDLE_SETTLE_S`` until the load started: what a member costs when
    nothing happens, which is what lets a tester run many of them on one machine)."""
    started = next((e for e in events if e.kind == "run.start"), None)
    load_start = started.data.get("load_start_s") if started else None
    samples = [e for e in events if e.kind == "sample" and "resources" in e.data]
    members: dict[str, Any] = {}
    for e in samples:
        for name, r in e.data["resources"].items():
            m = members.setdefault(name, {"rss_max_bytes": 0, "idle": []})
            m["rss_max_bytes"] = max(m["rss_max_bytes"], int(r["rss_bytes"]))
            idle = isinstance(load_start, int | float) and IDLE_SETTLE_S <= e.t <= load_start
            if idle:
                m["idle"].append((e.t, float(r["cpu_s"]), int(r["rss_bytes"])))
    out: dict[str, Any] = {}
    for name, m in members.items():
        idle = m["idle"]
        cpu = None
        if len(idle) >= 2 and idle[-1][0] > idle[0][0]:
            cpu = (idle[-1][1] - idle[0][1]) / (idle[-1][0] - idle[0][0])
        out[name] = {
            "rss_max_bytes": m["rss_max_bytes"],
            "idle_rss_bytes": idle[-1][2] if idle else None,
            "idle_cpu_fraction": cpu,
            "idle_window_s": (idle[-1][0] - idle[0][0]) if len(idle) >= 2 else None,
        }
    return out


def _leaders(events: Sequence[Event]) -> dict[str, Any]:
    listed, changes, last = [], 0, None
    for e in events:
        if e.kind != "leader":
            continue
        leader = e.data["leader"]
        changed = last is not None and leader != last
        changes += changed
        listed.append({"t": e.t, "leader": leader, "term": e.data["term"], "change": changed})
        last = leader
    return {"changes": changes, "events": listed}


def _membership_lines(stats: Mapping[str, Any]) -> list[str]:
    """The membership changes, removed members, and what the changes did to the load."""
    lines: list[str] = []
    changes = stats.get("membership") or []
    if changes:
        lines.append(f"membership changes: {len(changes)}")
    for c in changes:
        if c.get("error"):
            lines.append(f"  t={c['t']:.3f} {c['action']} {c['member']}: FAILED: {c['error']}")
        else:
            lines.append(
                f"  t={c['t']:.3f} {c['action']} {c['member']}: version {c['version']} "
                f"from height {(c['height'] or 0) + 1}"
            )
    for member, r in (stats.get("removed") or {}).items():
        lines.append(
            f"  {member} removed at height {r['height']}, its ledger ends at {r['ledger_ends']}: "
            "not expected at the final tip (left out of not_converged and lost)"
        )
    reasons = stats.get("invalid_reasons") or {}
    if reasons:
        listed = ", ".join(f"{k} {n}" for k, n in reasons.items())
        lines.append(f"invalid on the reference ledger: {listed}")
    if stats.get("pending_lost_with_membership"):
        lines.append(
            f"pending requests lost with their member, stopped after its removal: "
            f"{stats['pending_lost_with_membership']}"
        )
    return lines


def fault_windows(events: Sequence[Event], members: Sequence[str]) -> list[dict[str, Any]]:
    """Each fault with its window and recovery (see the module docstring)."""
    samples = [e for e in events if e.kind == "sample"]
    converged = [e.t for e in events if e.kind == "converged"]
    out = []
    for start in (e for e in events if e.kind == "fault.start"):
        end = next(
            (
                e
                for e in events
                if e.kind == "fault.end" and e.data["id"] == start.data["id"] and e.t >= start.t
            ),
            None,
        )
        fault: dict[str, Any] = {
            "id": start.data["id"],
            "fault": start.data["fault"],
            "target": start.data["target"],
            "start": start.t,
            "end": end.t if end is not None else None,
            "height_at_end": None,
            "recovered_at": None,
            "recovery_s": None,
        }
        detail = start.data.get("detail")
        if start.data["fault"] == "membership" and isinstance(detail, Mapping):
            fault["action"] = detail.get("action")
        out.append(fault)
        if end is None:
            continue
        before = [s for s in samples if s.t <= end.t]
        heights = (
            [h for h in before[-1].data["heights"].values() if h is not None] if before else []
        )
        base = max(heights, default=-1)
        fault["height_at_end"] = base if heights else None
        candidates = [t for t in converged if t >= end.t]
        for s in samples:
            if s.t < end.t:
                continue
            h = s.data["heights"]
            names = members or list(h)
            seen = {h.get(m) for m in names}
            if len(seen) == 1 and None not in seen and seen.pop() > base:
                candidates.append(s.t)
                break
        if candidates:
            fault["recovered_at"] = min(candidates)
            fault["recovery_s"] = fault["recovered_at"] - end.t
    return sorted(out, key=lambda f: (f["start"], f["id"]))


def _timeline(committed: Sequence[Request], bin_s: float, until: float) -> list[dict[str, Any]]:
    n = max(math.ceil(until / bin_s), 1)
    per: list[list[float]] = [[] for _ in range(n)]
    for r in committed:
        per[min(int(r.done // bin_s), n - 1)].append(r.latency)
    return [
        {
            "t": i * bin_s,
            "committed": len(lat),
            "tx_per_s": len(lat) / bin_s,
            "p50": percentile(lat, 50) if lat else None,
            "p99": percentile(lat, 99) if lat else None,
        }
        for i, lat in enumerate(per)
    ]


def summarize(
    *,
    scenario: str,
    seed: int | None,
    verdict: Verdict,
    history: Sequence[Request],
    events: Sequence[Event],
    bin_s: float = BIN_S,
) -> dict[str, Any]:
    """The content of report.json: plain JSON values only."""
    if not math.isfinite(bin_s) or bin_s <= 0:
        raise ValueError(f"bin_s must be > 0, not {bin_s}")
    started = next((e for e in events if e.kind == "run.start"), None)
    ended = next((e for e in reversed(events) if e.kind == "run.end"), None)
    members = [str(m) for m in started.data["members"]] if started else []
    if not members:
        members = [str(m) for m in verdict.stats.get("members", ())]
    committed = [r for r in history if r.outcome is Outcome.COMMITTED]
    load_start = min((r.sent for r in history), default=None)
    load_end = max((r.done for r in history), default=None)
    seconds = load_end - load_start if load_start is not None and load_end is not None else None
    outcomes = Counter(str(r.outcome) for r in history)
    last_t = max([e.t for e in events] + [r.done for r in history], default=0.0)
    samples = [e for e in events if e.kind == "sample"]
    if "tips" in verdict.stats:
        tips = {m: dict(t) for m, t in verdict.stats["tips"].items()}
    elif samples:
        tips = {m: {"height": h, "hash": None} for m, h in samples[-1].data["heights"].items()}
    else:
        tips = {}
    report: dict[str, Any] = _plain(
        {
            "scenario": scenario,
            "seed": seed,
            "verdict": {
                "ok": verdict.ok,
                "counts": dict(Counter(v.kind for v in verdict.violations)),
                "violations": [v.to_json() for v in verdict.violations],
            },
            "members": members,
            "run": {
                "start": started.t if started else 0.0,
                "end": ended.t if ended else last_t,
            },
            # the load generator's own counts: offered, sent, skipped (no free client)
            "workload": dict(ended.data.get("workload") or {}) if ended else {},
            "resources": resource_figures(events),
            "load": {
                "start": load_start,
                "end": load_end,
                "seconds": seconds,
                "requests": len(history),
                "committed": len(committed),
                "tx_per_s": len(committed) / seconds if seconds else None,
            },
            "latency_s": _latency(committed),
            "outcomes": {str(o): outcomes.get(str(o), 0) for o in Outcome},
            "leaders": _leaders(events),
            "faults": fault_windows(events, members),
            "tips": tips,
            "timeline": {"bin_s": bin_s, "bins": _timeline(committed, bin_s, last_t)},
            "stats": verdict.stats,
        }
    )
    return report


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _target(target: Any) -> str:
    return ",".join(map(str, target)) if isinstance(target, list) else str(target)


def render_text(report: Mapping[str, Any]) -> str:
    """report.txt: the verdict and each violation first, then the run's figures."""
    verdict = report["verdict"]
    head = f"scenario {report['scenario']}, seed {report['seed']}"
    lines = []
    if verdict["ok"]:
        lines.append(f"PASS: {head}")
    else:
        counts = ", ".join(f"{k} {n}" for k, n in verdict["counts"].items())
        lines.append(f"FAIL: {head}: {len(verdict['violations'])} violations ({counts})")
        shown: Counter[str] = Counter()
        for v in verdict["violations"]:
            shown[v["kind"]] += 1
            if shown[v["kind"]] <= MAX_LISTED:
                lines.append(f"  - {v['kind']}: {v['message']}")
        for kind, n in shown.items():
            if n > MAX_LISTED:
                lines.append(f"  ... and {n - MAX_LISTED} more {kind} (all in report.json)")
    lines.append("")
    load = report["load"]
    rate = "-" if load["tx_per_s"] is None else f"{load['tx_per_s']:.2f}"
    lines.append(
        f"throughput: {rate} committed tx/s over {_s(load['seconds'])} s "
        f"(load {_s(load['start'])}-{_s(load['end'])} s, {load['committed']} committed)"
    )
    lat = report["latency_s"]
    figures = ", ".join(f"{k} {_s(lat[k])} s" for k in ("p50", "p90", "p99", "max"))
    lines.append(f"latency (sent->done, committed, n={lat['count']}): {figures}")
    lines.append("outcomes: " + ", ".join(f"{k} {n}" for k, n in report["outcomes"].items()))
    work = report.get("workload") or {}
    if work.get("skipped"):
        lines.append(
            f"not sent: {work['skipped']} of {work.get('scheduled', '?')} scheduled requests "
            "found every client busy (raise [workload] clients to offer the full rate)"
        )
    leaders = report["leaders"]
    lines.append(f"leader changes: {leaders['changes']}")
    for e in leaders["events"]:
        mark = " (change)" if e["change"] else ""
        lines.append(f"  t={e['t']:.3f} {e['leader']} term {e['term']}{mark}")
    res = report.get("resources") or {}
    idle = [r["idle_cpu_fraction"] for r in res.values() if r["idle_cpu_fraction"] is not None]
    if res:
        rss = [r["rss_max_bytes"] for r in res.values()]
        mean = sum(rss) / len(rss) / 2**20
        line = f"members' memory: RSS max {max(rss) / 2**20:.0f} MiB (mean {mean:.0f} MiB)"
        if idle:
            line += (
                f"; CPU at idle: mean {100 * sum(idle) / len(idle):.1f}% of a core, "
                f"max {100 * max(idle):.1f}%"
            )
        lines.append(line)
    lines.append(f"faults: {len(report['faults'])}")
    for f in report["faults"]:
        if f["end"] is None:
            recovery = "never ended"
        elif f["recovered_at"] is None:
            recovery = "did not recover"
        else:
            recovery = f"recovered t={f['recovered_at']:.3f} ({f['recovery_s']:.3f} s after end)"
        window = (
            f"from {_s(f['start'])} s" if f["end"] is None else f"{_s(f['start'])}-{_s(f['end'])} s"
        )
        kind = f"{f['fault']} {f['action']}" if f.get("action") else f["fault"]
        lines.append(f"  #{f['id']} {kind} {_target(f['target'])}: {window}, {recovery}")
    lines += _membership_lines(report.get("stats") or {})
    lines.append("final tips:")
    for member, tip in report["tips"].items():
        digest = f" {tip['hash'][:12]}" if tip.get("hash") else ""
        lines.append(f"  {member} {tip['height']}{digest}")
    return "\n".join(lines) + "\n"


def plot_timeline(report: Mapping[str, Any], path: Path) -> None:
    """timeline.png from a report: committed tx/s and latency per bin, with faults
    shaded and labelled and leader changes marked."""
    # Imported here: matplotlib is the optional "plot" extra, and slow to import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    timeline = report["timeline"]
    bin_s = timeline["bin_s"]
    bins = timeline["bins"]
    xs = [b["t"] + bin_s / 2 for b in bins]
    end = max(report["run"]["end"], len(bins) * bin_s)
    nan = float("nan")

    fig = Figure(figsize=(12, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(xs, [b["tx_per_s"] for b in bins], width=bin_s * 0.9, color="tab:blue")
    top.set_ylabel("committed tx/s")
    verdict = "PASS" if report["verdict"]["ok"] else "FAIL"
    top.set_title(f"{report['scenario']} (seed {report['seed']}): {verdict}")
    for key, style in (("p50", "-"), ("p99", "--")):
        ys = [nan if b[key] is None else b[key] * 1000 for b in bins]
        bottom.plot(xs, ys, style, marker=".", label=f"{key} latency")
    bottom.set_ylabel("commit latency (ms)")
    bottom.set_xlabel("seconds since run start")
    bottom.legend(loc="upper right")
    for f in report["faults"]:
        stop = f["end"] if f["end"] is not None else end
        label = f"{f['fault']} {_target(f['target'])}"
        for ax in (top, bottom):
            ax.axvspan(f["start"], stop, color="tab:red", alpha=0.15)
        top.annotate(
            label,
            xy=(f["start"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -12),
            textcoords="offset points",
            fontsize=8,
            color="tab:red",
        )
    for i, e in enumerate(report["leaders"]["events"]):
        style = "-" if e["change"] or i == 0 else ":"  # dotted: the same leader, a new term
        for ax in (top, bottom):
            ax.axvline(e["t"], color="tab:green", linestyle=style, linewidth=1, alpha=0.8)
        bottom.annotate(
            e["leader"],
            xy=(e["t"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -12),
            textcoords="offset points",
            fontsize=8,
            color="tab:green",
        )
    top.set_xlim(0, end)
    fig.savefig(path, format="png", dpi=100)


def write_report(
    workdir: Path,
    *,
    scenario: str,
    seed: int | None,
    verdict: Verdict,
    history: Sequence[Request],
    events: Sequence[Event],
) -> ReportFiles:
    """Write report.json, report.txt and timeline.png into ``workdir``."""
    report = summarize(
        scenario=scenario, seed=seed, verdict=verdict, history=history, events=events
    )
    files = ReportFiles(
        json=workdir / "report.json",
        text=workdir / "report.txt",
        timeline=workdir / "timeline.png",
    )
    files.json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    files.text.write_text(render_text(report), encoding="utf-8")
    plot_timeline(report, files.timeline)
    return files
