"""The benchmark's pure helpers: the whole-machine CPU breakdown from ``perf script``
text, and the rates a failed hold tries next."""

from __future__ import annotations

import random

import pytest

from tests.bench_cluster import next_hold_rate
from tests.bench_perf import summarize_perf

SODIUM = "/venv/lib/python3.11/site-packages/nacl/_sodium.abi3.so"
PYTHON = "/usr/lib/libpython3.11.so.1.0"
LMDB = "/venv/lib/python3.11/site-packages/lmdb/cpython.cpython-311-x86_64-linux-gnu.so"


def line(comm: str, pid: int, sym: str, dso: str) -> str:
    return f" {comm:<16} {pid}/{pid + 7}     7f4d7deba754 {sym} ({dso})"


def test_samples_split_by_process_thread_job_and_code() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    kinds = [
        (("work from p2ple", 101, "fe25519_mul", SODIUM), "verify", "libsodium (Ed25519, AEAD)"),
        (("python", 101, "_PyEval_EvalFrameDefault", PYTHON), "main (trio loop)", "interpreter"),
        (("_apply_sync fro", 102, "mdb_node_search", LMDB), "apply", "lmdb"),
        (("Trio thread 3", 102, "do_syscall_64", "[kernel.kallsyms]"), "other threads", "kernel"),
    ]
    counts = [rng.randrange(1, 50) for _ in kinds]
    idle, bench, stranger = rng.randrange(1, 20), rng.randrange(1, 20), rng.randrange(1, 20)
    lines = [line(*k[0]) for k, n in zip(kinds, counts, strict=True) for _ in range(n)]
    lines += [line("swapper", 0, "intel_idle", "[kernel.kallsyms]")] * idle
    lines += [line("python", 300, "_PyEval_EvalFrameDefault", PYTHON)] * bench
    lines += [line("kworker/1:1H-kb", 55, "memcpy", "[kernel.kallsyms]")] * stranger
    rng.shuffle(lines)
    lines.insert(0, "not a perf line")
    total = sum(counts) + idle + bench + stranger

    def pct(n: int) -> float:
        return round(100 * n / total, 1)

    out = summarize_perf(
        "\n".join(lines), {101: "m0", 102: "m1", 300: "load generator"}, members=["m0", "m1"]
    )
    assert out["samples"] == total, f"seed {seed}"
    by_process = out["percent_by_process"]
    assert by_process["m0"] == pct(counts[0] + counts[1]), f"seed {seed}"
    assert by_process["m1"] == pct(counts[2] + counts[3]), f"seed {seed}"
    assert by_process["load generator"] == pct(bench), f"seed {seed}"
    assert by_process["idle"] == pct(idle), f"seed {seed}"
    assert by_process["other processes"] == pct(stranger), f"seed {seed}"
    for (_, job, code), n in zip(kinds, counts, strict=True):
        assert out["all_members_by_job"][job] == pct(n), f"seed {seed}"
        assert out["all_members_by_code"][code] == pct(n), f"seed {seed}"
    assert out["percent_by_job"]["m0"] == {
        k: v for k, v in {"verify": pct(counts[0]), "main (trio loop)": pct(counts[1])}.items()
    }
    # the load generator is split too, but not added to the members' totals
    assert out["percent_by_code"]["load generator"] == {"interpreter": pct(bench)}
    assert out["all_members_by_code"]["interpreter"] == pct(counts[1]), f"seed {seed}"


@pytest.mark.parametrize("text", ["", "garbage\nmore garbage"])
def test_no_samples_says_so(text: str) -> None:
    assert summarize_perf(text, {1: "m0"}, members=["m0"]) == {"error": "perf recorded no samples"}


def test_a_failed_hold_tries_halfway_down_then_the_lower_step() -> None:
    steps = [500, 1000, 2000, 3000]
    assert next_hold_rate(3000, steps, left=2) == 2500
    assert next_hold_rate(2500, steps, left=1) == 2000  # the last try: a sustained step
    assert next_hold_rate(2500, steps, left=2) == 2250
    assert next_hold_rate(2250, steps, left=2) == 2000  # no multiple of 250 in between
    assert next_hold_rate(1000, steps, left=2) == 750
    assert next_hold_rate(500, steps, left=2) is None  # nothing sustained below
    assert next_hold_rate(3000, steps, left=0) is None


def test_a_failed_hold_is_followed_by_at_most_what_it_committed() -> None:
    steps = [1000, 2000, 3000, 4000, 4500, 5000]
    # A hold far behind its load: the next try goes to 95% of what it committed.
    assert next_hold_rate(5000, steps, left=4, committed_per_s=4297) == 4000
    assert next_hold_rate(4000, steps, left=3, committed_per_s=3689) == 3500
    # Close to its load, with a wide gap to the step below: the halfway rule stands.
    assert next_hold_rate(5000, [1000, 3000, 5000], left=4, committed_per_s=4990) == 4000
    # Below every sustained step, the cap is still a rate to try.
    assert next_hold_rate(1000, steps, left=2, committed_per_s=800) == 750
    assert next_hold_rate(1000, steps, left=2, committed_per_s=200) is None
    assert next_hold_rate(5000, steps, left=0, committed_per_s=3000) is None
