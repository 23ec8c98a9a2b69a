"""Seeded fault simulations of the Raft core (the machinery is in ``sim.py``).

``make test`` runs ``DEFAULT_SEEDS`` schedules; ``make sim`` (``pytest -m slow``) runs
``SLOW_SEEDS`` more. A failure names its seed and the command that replays it::

    RAFT_SEED=1234 .venv/bin/pytest tests/raft/test_sim.py -k replay -s
    .venv/bin/python -m tests.raft.sim --seed 1234 --trace
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from p2pledger.raft.log import RaftLog
from tests.raft import sim

#: Short schedules in ``make test`` (seeds 0 to DEFAULT_SEEDS - 1).
DEFAULT_SEEDS = int(os.environ.get("RAFT_SIM_SEEDS", "1000"))
BLOCK = 50
#: ``make sim``: more short schedules, then long ones (seeds from sim.LONG_SEEDS).
SWEEP_SEEDS = int(os.environ.get("RAFT_SIM_SWEEP_SEEDS", "10000"))
LONG_SEEDS = int(os.environ.get("RAFT_SIM_LONG_SEEDS", "2000"))
SLOW_BLOCK = 500
#: Processes for the slow sweeps (the default run stays in one process).
WORKERS = int(os.environ.get("RAFT_SIM_WORKERS", str(min(4, os.cpu_count() or 1))))


def run_block(first: int, count: int, workers: int = 1) -> list[sim.Outcome]:
    seeds = range(first, first + count)
    if workers <= 1:
        return [sim.run(seed) for seed in seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(sim.run, seeds, chunksize=10))


def assert_faults_exercised(outcomes: list[sim.Outcome]) -> None:
    """A block of schedules really did hit the cluster with every kind of fault."""
    total = {
        name: sum(getattr(o, name) for o in outcomes)
        for name in (
            "dropped",
            "duplicated",
            "partitions",
            "crashes",
            "restarts",
            "conf_changes",
            "transfers",
            "compactions",
            "catch_ups",
            "acked",
        )
    }
    assert all(total.values()), f"some faults never happened: {total}"
    assert {o.voters for o in outcomes} == {3, 5, 7}
    assert max(o.max_term for o in outcomes) >= 4  # many elections happened
    assert max(o.recovery_ticks for o in outcomes) <= sim.LIVENESS_TICKS


@pytest.mark.parametrize("block", range(DEFAULT_SEEDS // BLOCK))
def test_seeded_schedules(block: int) -> None:
    outcomes = run_block(block * BLOCK, BLOCK)
    assert_faults_exercised(outcomes)


@pytest.mark.slow
@pytest.mark.parametrize("block", range(SWEEP_SEEDS // SLOW_BLOCK))
def test_seeded_schedules_sweep(block: int) -> None:
    first = DEFAULT_SEEDS + block * SLOW_BLOCK
    assert_faults_exercised(run_block(first, SLOW_BLOCK, WORKERS))


@pytest.mark.slow
@pytest.mark.parametrize("block", range(LONG_SEEDS // SLOW_BLOCK))
def test_long_schedules_sweep(block: int) -> None:
    first = sim.LONG_SEEDS + block * SLOW_BLOCK
    assert_faults_exercised(run_block(first, SLOW_BLOCK, WORKERS))


@pytest.mark.skipif("RAFT_SEED" not in os.environ, reason="set RAFT_SEED=<seed> to replay")
def test_replay() -> None:
    seed = int(os.environ["RAFT_SEED"])
    out = sim.run(seed, trace=print if os.environ.get("RAFT_TRACE") else None)
    print(out)
    assert out.seed == seed


def test_a_seed_replays_exactly_whatever_the_hash_seed() -> None:
    root = Path(__file__).resolve().parents[2]
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-m", "tests.raft.sim", "--seed", "17", "--trace"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(done.stdout.splitlines()[:-1])  # the last line is the timing
    assert len(runs[0]) > 100
    assert runs[0][-1].startswith("Outcome(seed=17")
    assert runs[0] == runs[1]


def test_the_simulation_catches_a_broken_core(monkeypatch: pytest.MonkeyPatch) -> None:
    # A negative control: votes granted without the up-to-date check must be caught.
    monkeypatch.setattr(RaftLog, "is_up_to_date", lambda self, index, term: True)
    caught = []
    for seed in range(200):
        try:
            sim.run(seed)
        except sim.SimulationFailed as exc:
            caught.append((seed, str(exc)))
            break
    assert caught, "no seed in 200 found the planted bug"
    assert f"--seed {caught[0][0]}" in caught[0][1]  # the failure says how to replay it
