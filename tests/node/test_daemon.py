"""Three members as separate ``p2pledger run`` processes on 127.0.0.1."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.cluster import Cluster, wait_until


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, n=3)
    try:
        c.start_all()
        yield c
    finally:
        c.close()


def block_hashes(c: Cluster, name: str, upto: int) -> list[str]:
    api = c.api(name)
    return [api.block(h)["hash"] for h in range(1, upto + 1)]


def test_a_transaction_sent_to_any_member_commits_on_all(cluster: Cluster) -> None:
    ids = []
    for name in cluster.names:
        tx = cluster.tx()
        answer = cluster.api(name).submit(tx.raw, wait=True, timeout_s=20)
        assert answer["status"] == "committed" and answer["valid"] is True
        ids.append(tx.id.hex())
    top = max(cluster.height(n) for n in cluster.names)
    cluster.wait_height(cluster.names, top)
    hashes = {name: block_hashes(cluster, name, top) for name in cluster.names}
    assert hashes["m0"] == hashes["m1"] == hashes["m2"]
    for name in cluster.names:
        for tx_id in ids:
            assert cluster.api(name).transaction(bytes.fromhex(tx_id))["status"] == "committed"


def test_killed_leader_is_replaced_and_nothing_acknowledged_is_lost(cluster: Cluster) -> None:
    leader = cluster.leader()
    acked = []
    for _ in range(5):
        tx = cluster.tx()
        assert cluster.api(leader).submit(tx.raw, wait=True, timeout_s=20)["status"] == "committed"
        acked.append(tx.id)
    assert cluster.signal(leader, signal.SIGKILL) == -signal.SIGKILL
    rest = [n for n in cluster.names if n != leader]
    new_leader = cluster.leader(rest)
    assert new_leader != leader
    for name in rest:
        tx = cluster.tx()
        assert cluster.api(name).submit(tx.raw, wait=True, timeout_s=20)["status"] == "committed"
        acked.append(tx.id)
    for name in rest:
        for tx_id in acked:
            assert cluster.api(name).transaction(tx_id)["status"] == "committed"
    # The old leader comes back and catches up.
    cluster.start(leader)
    cluster.wait_healthy(leader)
    cluster.wait_height([leader], cluster.height(new_leader))
    for tx_id in acked:
        assert cluster.api(leader).transaction(tx_id)["status"] == "committed"


def test_a_wiped_follower_catches_up_from_the_others(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.names if n != leader)
    for _ in range(4):
        cluster.api(leader).submit(cluster.tx().raw, wait=True, timeout_s=20)
    assert cluster.signal(follower, signal.SIGKILL) == -signal.SIGKILL
    cluster.wipe(follower)
    for _ in range(3):
        cluster.api(leader).submit(cluster.tx().raw, wait=True, timeout_s=20)
    top = cluster.height(leader)
    cluster.start(follower)
    cluster.wait_healthy(follower)
    cluster.wait_height([follower], top)
    assert block_hashes(cluster, follower, top) == block_hashes(cluster, leader, top)


def test_sigterm_everyone_then_restart_loses_nothing(cluster: Cluster) -> None:
    acked = []
    for name in cluster.names * 2:
        tx = cluster.tx()
        assert cluster.api(name).submit(tx.raw, wait=True, timeout_s=20)["status"] == "committed"
        acked.append(tx.id)
    for name in cluster.names:
        assert cluster.signal(name, signal.SIGTERM) == 0  # a graceful exit
    cluster.start_all()
    cluster.leader()
    for name in cluster.names:
        for tx_id in acked:
            assert cluster.api(name).transaction(tx_id)["status"] == "committed"
    # And it still orders new work.
    tx = cluster.tx()
    assert cluster.api("m2").submit(tx.raw, wait=True, timeout_s=20)["status"] == "committed"


def test_health_reports_the_cluster(cluster: Cluster) -> None:
    status = cluster.api("m0").status()
    assert status["member"] == "m0"
    assert {p["name"]: p["connected"] for p in status["peers"]} == {"m1": True, "m2": True}
    leader = cluster.leader()
    cluster.api(leader).submit(cluster.tx().raw, wait=True, timeout_s=20)
    lags = wait_until(
        lambda: [p["lag"] for p in cluster.api(leader).status()["peers"]] == [0, 0],
        "followers to report no lag to the leader",
    )
    assert lags
    wait_until(lambda: "p2pledger_height" in cluster.api("m1").metrics(), "metrics")
