"""Three members as separate ``p2pledger run`` processes on 127.0.0.1."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pledger.chain import Transaction, chain_id_of
from p2pledger.client import ApiRequestFailed
from p2pledger.crypto import SigningKey
from tests.factory import seeded_key
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
    cluster.api("m1").submit(cluster.tx().raw, wait=True, timeout_s=20)
    for name in cluster.names:  # every member, leader or not, knows every lag
        wait_until(
            lambda name=name: [p["lag"] for p in cluster.api(name).status()["peers"]] == [0, 0],
            f"{name} to see the others at its height",
        )
    wait_until(lambda: "p2pledger_height" in cluster.api("m1").metrics(), "metrics")


def test_state_rules_hold_through_the_api_of_a_running_member(cluster: Cluster) -> None:
    api = cluster.api("m1")
    issuer, holder = cluster.users[0], cluster.users[1]
    assert cluster.network is not None
    chain_id = chain_id_of(cluster.network)

    def send(key: SigningKey, op: str, **args: object) -> dict[str, object]:
        cluster.nonce += 1
        tx = Transaction.create(
            key, chain_id=chain_id, op=op, args=dict(args), nonce=cluster.nonce, time_ms=1
        )
        return api.submit(tx.raw, wait=True, timeout_s=20)

    not_issuer = send(
        holder, "fund.issue", fund="relief", to=holder.public_key.raw, amount=5, memo=""
    )
    assert (not_issuer["valid"], not_issuer["reason"]) == (False, "unauthorized_issuer")
    issued = send(
        issuer, "fund.issue", fund="relief", to=holder.public_key.raw, amount=100, memo=""
    )
    assert issued["valid"] is True
    overdraft = send(
        holder,
        "fund.transfer",
        fund="relief",
        to=issuer.public_key.raw,
        amount=500,
        memo="",
        **{"from": holder.public_key.raw},
    )
    assert (overdraft["valid"], overdraft["reason"]) == (False, "overdraft")
    digest = bytes(range(32))
    assert send(holder, "notary.anchor", digest=digest, description="a")["valid"] is True
    again = send(issuer, "notary.anchor", digest=digest, description="b")
    assert (again["valid"], again["reason"]) == (False, "already_anchored")
    assert api.anchor(digest)["record"]["description"] == "a"  # type: ignore[index]
    assert api.balance("relief", holder.public_key.raw)["balance"] == 100
    stranger = seeded_key("not-a-registered-user")
    with pytest.raises(ApiRequestFailed) as refused:
        send(stranger, "notary.anchor", digest=bytes(32), description="x")
    assert refused.value.code == "unknown_signer"
