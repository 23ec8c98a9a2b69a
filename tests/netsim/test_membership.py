"""netsim's membership changes: the pure edits and signer choice (netsim.admin), a
generated cluster's admin keys and spares, and on real daemons the changes made
through the config CLI (a 4th member added as a voter catches up and matches, a
revoked user key signs nothing valid) and a short grow-and-shrink run."""

from __future__ import annotations

import json
import os
import random
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio

from netsim import admin
from netsim.admin import MembershipEditError, parse_submitted, signers
from netsim.cluster import Cluster, ClusterError, ClusterSpec
from netsim.history import read_events
from netsim.runner import agreed_leader, run_scenario
from netsim.scenario import load_scenario
from p2pledger import config
from p2pledger.chain import Transaction
from p2pledger.client import ApiRequestFailed
from p2pledger.crypto import load_signing_key

SCENARIOS = Path(__file__).resolve().parents[2] / "netsim" / "scenarios"
DEADLINE_S = 60.0


def fresh_seed() -> int:
    seed = random.randrange(2**32)
    print(f"netsim membership test seed: {seed}")
    return seed


def doc() -> dict[str, Any]:
    return {
        "members": [
            {"name": "m0", "role": "voter", "users": ["u0"], "node_key": "k0"},
            {"name": "m1", "role": "voter", "users": ["u1"], "node_key": "k1"},
            {"name": "m2", "role": "observer", "users": ["u2"], "node_key": "k2"},
        ],
        "funds": [{"name": "relief", "issuers": ["u0"]}],
    }


# --- the edits and who signs (pure) -----------------------------------------------


def test_removing_the_fund_issuers_member_hands_the_fund_to_the_next_user() -> None:
    d = doc()
    admin.remove_member(d, "m0")
    assert [m["name"] for m in d["members"]] == ["m1", "m2"]
    assert d["funds"][0]["issuers"] == ["u1"]
    with pytest.raises(MembershipEditError, match="not a member"):
        admin.remove_member(d, "m0")


def test_a_revoked_user_key_is_replaced_in_users_and_issuers() -> None:
    d = doc()
    admin.replace_user(d, "m0", "u0", "u0b")
    assert d["members"][0]["users"] == ["u0b"] and d["funds"][0]["issuers"] == ["u0b"]
    with pytest.raises(MembershipEditError, match="not a user key of m1"):
        admin.replace_user(d, "m1", "u0", "x")


def test_roles_node_keys_and_new_members() -> None:
    d = doc()
    admin.set_role(d, "m2", "voter")
    with pytest.raises(MembershipEditError, match="already a voter"):
        admin.set_role(d, "m2", "voter")
    admin.set_node_key(d, "m1", "k1b")
    admin.add_member(
        d, name="m3", node_key="k3", address="127.0.0.1:1", role="observer", admins=["a"], users=[]
    )
    assert admin.member_table(d, "m3")["role"] == "observer"
    assert admin.member_table(d, "m1")["node_key"] == "k1b"
    with pytest.raises(MembershipEditError, match="already a member"):
        admin.add_member(
            d, name="m3", node_key="k", address="a:1", role="voter", admins=[], users=[]
        )


def test_signers_are_the_required_members_and_enough_for_a_majority() -> None:
    members = ["m0", "m1", "m2", "m3"]
    assert signers({"majority": False, "members": ["m2"]}, members, prefer=["m0"]) == ["m2"]
    assert signers({"majority": True, "members": []}, members, prefer=["m3"]) == ["m3", "m0", "m1"]
    assert signers({"majority": True, "members": ["m1"]}, members) == ["m1", "m0", "m2"]
    with pytest.raises(MembershipEditError, match="not members"):
        signers({"majority": False, "members": ["m9"]}, members)


def test_the_submitted_update_is_read_from_config_submits_output() -> None:
    tx = "ab" * 32
    done = parse_submitted(f"membership version 3 in force from height 41 (transaction {tx})\n")
    assert done is not None and (done.version, done.height, done.tx_id) == (3, 40, tx)
    assert parse_submitted("the ledger refused the update") is None


# --- a generated cluster ------------------------------------------------------------


def test_every_member_has_an_admin_key_and_spares_join_later(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "work", ClusterSpec(members=3, spares=2, seed=fresh_seed()))
    c.generate()
    assert c.names == ["m0", "m1", "m2"] and c.spares == ["m3", "m4"]
    network = config.load_network(tmp_path / "work" / "network.toml")
    assert [m.name for m in network.members] == ["m0", "m1", "m2"]
    for i, name in enumerate(c.all_names):
        key = tmp_path / "work" / "admins" / f"a{i}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert c.member(name).admin_key_file == key
    assert all(len(m.admins) == 1 for m in network.members)
    lowest = min(m.node_key.raw for m in network.members)
    for spare in c.spares:
        node = config.load_node(c.member(spare).node_file)
        assert node.join and node.name == spare
        config.check_node_against_network(node, network, spare)
        public = tomllib.loads(c.member(spare).node_file.read_text())["key_file"]
        assert public == "node.key"
        key = c.member(spare).directory / "node.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # a spare's dials win against every founding member's (see netsim.cluster)
    for spare in c.spares:
        raw = load_signing_key(c.member(spare).directory / "node.key").public_key.raw
        assert raw < lowest
    with pytest.raises(ClusterError, match="founding network"):
        c.set_dial({"m0": {"m3": ("127.0.0.1", 9003)}})


# --- on real daemons ------------------------------------------------------------------


async def leader_of(c: Cluster) -> str:
    with trio.fail_after(DEADLINE_S):
        while True:
            lead, _ = agreed_leader(await c.statuses())
            if lead is not None:
                return lead
            await trio.sleep(0.1)  # a poll interval


def anchor_tx(c: Cluster, key: Any, nonce: int) -> Transaction:
    return Transaction.create(
        key,
        chain_id=c.chain_id,
        op="notary.anchor",
        args={"digest": os.urandom(32), "description": f"test {nonce}"},
        nonce=nonce,
        time_ms=1,
    )


async def submit(c: Cluster, member: str, tx: Transaction) -> dict[str, Any]:
    api = c.api(member, timeout_s=30)
    return await trio.to_thread.run_sync(lambda: api.submit(tx.raw, wait=True, timeout_s=20))


async def test_a_fourth_voter_is_added_and_a_user_key_revoked(tmp_path: Path) -> None:
    seed = fresh_seed()
    work = tmp_path / "work"
    async with Cluster(work, ClusterSpec(members=3, spares=1, seed=seed)) as c:
        c.generate()
        await c.start_all()
        await c.wait_healthy(timeout_s=DEADLINE_S)
        lead = await leader_of(c)
        assert (await submit(c, lead, anchor_tx(c, c.user_of("m0"), 1)))["valid"]

        update = await c.add_member("m3", role="voter", via=lead)
        assert update.version == 1 and c.names == ["m0", "m1", "m2", "m3"] and not c.spares
        assert update.signers[0] == lead and len(update.signers) == 2  # 2 of 3 organisations
        assert any(line.startswith("+ member m3 (voter") for line in update.changes)
        status = await c.status("m3")
        assert status is not None and status["height"] >= update.height
        # m3's own user signs valid transactions, through m3's API
        assert (await submit(c, "m3", anchor_tx(c, c.user_of("m3"), 2)))["valid"]

        old = c.user_of("m1")
        revoked = await c.revoke_user("m1", via=lead)
        assert revoked.version == 2 and revoked.signers == ("m1",)  # m1's own admin
        assert c.user_of("m1").public_key != old.public_key
        try:
            answer = await submit(c, "m1", anchor_tx(c, old, 3))
        except ApiRequestFailed as exc:  # refused at entry: the key is no user now
            assert exc.code == "unknown_signer", exc
        else:  # or committed, invalid
            assert (answer["valid"], answer["reason"]) == (False, "unknown_signer")
        assert (await submit(c, "m1", anchor_tx(c, c.user_of("m1"), 4)))["valid"]

        # every member holds the same blocks: m3 caught up from genesis
        top = max(h["height"] for h in [s for s in (await c.statuses()).values() if s])
        with trio.fail_after(DEADLINE_S):
            while any(s is None or s["height"] < top for s in (await c.statuses()).values()):
                await trio.sleep(0.1)  # a poll interval
        await c.stop_all()
        exports = {n: await c.export(n, work / "ledgers" / f"{n}.jsonl") for n in c.names}
        hashes = {
            n: [json.loads(line)["hash"] for line in p.read_text().splitlines()][: top + 1]
            for n, p in exports.items()
        }
        assert len({tuple(h) for h in hashes.values()}) == 1
        ok, text = await c.audit("m3")
        assert ok, text


async def test_a_short_grow_and_shrink_run_adds_a_member_and_passes(tmp_path: Path) -> None:
    """The first 20 s of grow-and-shrink: m3 is added under load as a voter."""
    scenario = load_scenario(SCENARIOS / "grow-and-shrink.toml")
    print(f"scenario {scenario.name} seed {scenario.seed}")
    result = await run_scenario(scenario, tmp_path / "work", duration_override=20, progress=False)
    assert result.ok, result.text
    events = read_events(result.paths.events)
    changes = [e for e in events if e.kind == "fault.start" and e.data["fault"] == "membership"]
    assert [(e.data["detail"]["action"], e.data["target"]) for e in changes] == [("add", "m3")]
    tips = result.verdict.stats["tips"]
    assert set(tips) == {"m0", "m1", "m2", "m3"}
    assert len({(t["height"], t["hash"]) for t in tips.values()}) == 1
    assert "add m3: version 1" in result.text
