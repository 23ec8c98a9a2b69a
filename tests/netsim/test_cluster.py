"""netsim.cluster against real ``p2pledger run`` daemons on 127.0.0.1: generate,
start, agree on a leader, kill, pause, wipe and catch up, export, audit, stop."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import stat
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from netsim.cluster import Cluster, ClusterError, ClusterSpec, MemberFailed
from p2pledger import config
from p2pledger.chain import Transaction

DEADLINE_S = 30.0


def fresh_seed() -> int:
    seed = random.randrange(2**32)
    print(f"netsim cluster test seed: {seed}")
    return seed


async def wait_for(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll ``check`` until it returns something truthy, or fail at the deadline."""
    last: Any = None
    with trio.move_on_after(DEADLINE_S):
        while True:
            last = await check()
            if last:
                return last
            await trio.sleep(0.1)  # a poll interval
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def agreed_leader(c: Cluster) -> str:
    async def check() -> str | None:
        statuses = await c.statuses()
        running = c.running()
        leaders = {statuses[n]["leader"] if statuses[n] else None for n in running}
        lead = leaders.pop() if len(leaders) == 1 else None
        return lead if lead in running else None

    return str(await wait_for(check, "one leader agreed by every running member"))


async def heights(c: Cluster) -> dict[str, int | None]:
    return {n: (s["height"] if s else None) for n, s in (await c.statuses()).items()}


async def anchor(c: Cluster, member: str, k: int) -> int:
    tx = Transaction.create(
        c.users[member],
        chain_id=c.chain_id,
        op="notary.anchor",
        args={"digest": os.urandom(32), "description": f"test {k}"},
        nonce=k,
        time_ms=1,
    )
    api = c.api(member, timeout_s=20)
    answer = await trio.to_thread.run_sync(lambda: api.submit(tx.raw, wait=True, timeout_s=15))
    assert answer["status"] == "committed" and answer["valid"] is True
    return int(answer["height"])


def read_export(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_cluster_runs_fails_recovers_and_stops_cleanly(tmp_path: Path) -> None:
    seed = fresh_seed()
    work = tmp_path / "work"
    pids: list[int] = []
    async with Cluster(work, ClusterSpec(members=3, seed=seed)) as c:
        c.generate()
        assert (work / "network.toml").is_file()
        for info in c.members:
            assert stat.S_IMODE(info.user_key_file.stat().st_mode) == 0o600
            node = config.load_node(info.node_file)
            assert node.log.format.value == "json" and not node.dial
        await c.start_all()
        await c.wait_healthy(timeout_s=DEADLINE_S)
        pids = [p for p in (c.pid(n) for n in c.names) if p is not None]
        assert len(pids) == 3
        state = json.loads((work / "cluster.json").read_text())
        assert [m["state"] for m in state["members"]] == ["running"] * 3
        assert c.resources()["m0"]["rss_bytes"] > 0

        leader = await agreed_leader(c)
        followers = [n for n in c.names if n != leader]
        await anchor(c, leader, 1)

        # A follower killed and started again rejoins.
        await c.kill(followers[0])
        assert followers[0] not in c.running() and await c.status(followers[0]) is None
        await c.restart(followers[0], graceful=False)  # down already: just starts it
        await c.wait_healthy([followers[0]], timeout_s=DEADLINE_S)

        # A paused follower does not answer; resumed, it does.
        await c.pause(followers[1])
        assert c.paused() == [followers[1]] and await c.status(followers[1]) is None
        await c.resume(followers[1])
        await c.wait_healthy([followers[1]], timeout_s=DEADLINE_S)

        # A wiped follower starts from genesis and catches up with the others.
        for k in range(2, 5):
            await anchor(c, leader, k)
        await c.wipe(followers[0])
        top = max(h for h in (await heights(c)).values() if h is not None)
        assert top >= 2

        async def caught_up() -> bool:
            h = await heights(c)
            return all(v is not None and v >= top for v in h.values())

        await wait_for(caught_up, f"every member at height {top} after the wipe")

        for name in c.names:
            out = await c.export(name, work / "ledgers" / f"{name}.jsonl")
            blocks = read_export(out)
            assert [b["header"]["height"] for b in blocks] == list(range(len(blocks)))
            assert len(blocks) - 1 >= top
            ok, text = await c.audit(name)
            assert ok, text

        assert await c.stop(followers[1]) == 0  # SIGTERM: a clean exit
        await c.stop_all()
        assert c.running() == [] and c.paused() == []
        assert all(gone(p) for p in pids)
    state = json.loads((work / "cluster.json").read_text())
    assert [m["state"] for m in state["members"]] == ["down"] * 3


async def test_an_exception_inside_the_context_still_stops_every_member(tmp_path: Path) -> None:
    seed = fresh_seed()
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Cluster(tmp_path / "work", ClusterSpec(members=2, seed=seed)) as c:
            c.generate()
            await c.start_all()
            await c.pause("m1")  # a paused member must be stopped too
            pids = [p for p in (c.pid(n) for n in c.names) if p is not None]
            assert len(pids) == 2
            raise RuntimeError("boom")
    assert all(gone(p) for p in pids)


async def test_a_cancelled_context_still_stops_every_member(tmp_path: Path) -> None:
    seed = fresh_seed()
    pids: list[int] = []
    with trio.CancelScope() as scope:
        async with Cluster(tmp_path / "work", ClusterSpec(members=1, seed=seed)) as c:
            c.generate()
            await c.start_all()
            pids = [p for p in (c.pid(n) for n in c.names) if p is not None]
            scope.cancel()  # as a runner's deadline or Ctrl-C would
            await trio.sleep_forever()
    assert scope.cancelled_caught and len(pids) == 1
    assert all(gone(p) for p in pids)


async def test_a_member_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    seed = fresh_seed()
    async with Cluster(tmp_path / "work", ClusterSpec(members=1, seed=seed)) as c:
        c.generate()
        node_file = c.member("m0").node_file
        node_file.write_text(node_file.read_text() + "\nbogus_key = 1\n")
        await c.start("m0")
        with pytest.raises(MemberFailed, match="m0 exited") as err:
            await c.wait_healthy(timeout_s=DEADLINE_S)
        assert "bogus_key" in err.value.tail
        assert c.running() == []


def test_generate_is_deterministic_and_refuses_an_existing_cluster(tmp_path: Path) -> None:
    spec = ClusterSpec(members=2, observers=1, seed=7, base_port=41000)
    a, b = Cluster(tmp_path / "a", spec), Cluster(tmp_path / "b", spec)
    a.generate()
    b.generate()
    assert a.chain_id == b.chain_id
    assert [k.public_key for k in a.users.values()] == [k.public_key for k in b.users.values()]
    assert [m.role.value for m in a.network.members] == ["voter", "observer"]
    with pytest.raises(ClusterError, match="already holds a cluster"):
        Cluster(tmp_path / "a", spec).generate()


def test_set_dial_rewrites_the_dial_table(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "work", ClusterSpec(members=3, seed=1))
    c.generate()
    c.set_dial({"m0": {"m1": ("127.0.0.1", 9001), "m2": ("127.0.0.1", 9002)}})
    node = config.load_node(c.member("m0").node_file)
    assert dict(node.dial) == {"m1": "127.0.0.1:9001", "m2": "127.0.0.1:9002"}
    assert tomllib.loads(c.member("m0").node_file.read_text())["log"]["format"] == "json"
    c.set_dial({"m0": {}})
    assert not config.load_node(c.member("m0").node_file).dial
    with pytest.raises(ClusterError, match="no member"):
        c.set_dial({"m0": {"m9": ("127.0.0.1", 9009)}})
    with pytest.raises(ClusterError, match="itself"):
        c.set_dial({"m0": {"m0": ("127.0.0.1", 9009)}})


async def test_statuses_answer_for_the_members_asked_when_one_joins_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A membership change adopted while the members are being asked (netsim's sampler
    # runs beside the admin step) must not break the answer: it was a KeyError once.
    c = Cluster(tmp_path / "work", ClusterSpec(members=2, seed=fresh_seed()))
    c.generate()
    before = c.names
    founding = c.network
    grown = dataclasses.replace(
        founding, members=(*founding.members, dataclasses.replace(founding.members[0], name="m9"))
    )

    async def status(name: str) -> dict[str, Any] | None:
        c._network = grown  # the change lands while the first answers are awaited
        await trio.lowlevel.checkpoint()
        return {"name": name}

    monkeypatch.setattr(c, "status", status)
    answers = await c.statuses()
    assert list(answers) == before == ["m0", "m1"]
    assert answers == {n: {"name": n} for n in before}
    assert "m9" in c.names  # and the next answer asks the new member too


@pytest.mark.parametrize("worker_threads", [True, False])
def test_generate_writes_the_worker_threads_setting(tmp_path: Path, worker_threads: bool) -> None:
    spec = ClusterSpec(members=2, spares=1, seed=3, worker_threads=worker_threads)
    c = Cluster(tmp_path / "work", spec)
    c.generate()
    for name in ("m0", "m1", "m2"):  # the founding members and the spare
        node = config.load_node(c.member(name).node_file)
        assert node.limits.worker_threads is worker_threads, name
        assert node.log.format.value == "json"
