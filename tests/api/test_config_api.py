"""The membership endpoints against a FakeNode over a real ledger: the membership in
force as JSON and as network.toml, the history, and the entry rule that a
``config.update`` is signed by an admin key and every other transaction by a user."""

from __future__ import annotations

from p2pledger.chain import Transaction
from p2pledger.config import parse_network
from p2pledger.membership import Network
from tests.api.conftest import Call, submit_body
from tests.api.fake_node import FakeNode
from tests.api.txs import anchoring
from tests.factory import GENESIS_TIME_MS, TestNetwork, config_update, edit_member


def revoke_m1_user(net: TestNetwork) -> Network:
    return edit_member(net.network, "m1", users=())


async def commit_update(api: Call, net: TestNetwork, node: FakeNode) -> Network:
    new = revoke_m1_user(net)
    tx = config_update(
        net.chain_id, net.network, new, approvers=[net.admin_keys[1]], submitter=net.admin_keys[1]
    )
    answer = await api("POST", "/v1/transactions", json_body=submit_body(tx.raw))
    assert answer.status == 202, answer.json()
    node.commit_pending()
    return new


async def test_config_at_genesis(api: Call, net: TestNetwork) -> None:
    answer = await api("GET", "/v1/config")
    assert answer.status == 200
    body = answer.json()
    assert body["version"] == 0
    assert body["chain_id"] == net.chain_id.hex()
    assert body["network"] == net.network.to_json()
    assert body["network"]["members"][0]["node_key"] == net.node_keys[0].public_key.hex
    assert parse_network(body["toml"], source="answer") == net.network
    history = (await api("GET", "/v1/config/history")).json()
    assert [v["version"] for v in history["versions"]] == [0]
    assert history["versions"][0]["tx_id"] is None
    assert history["versions"][0]["height"] == 0


async def test_config_follows_a_committed_update(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    new = await commit_update(api, net, node)
    body = (await api("GET", "/v1/config")).json()
    assert body["version"] == 1
    assert "version = 1" in body["toml"]
    assert parse_network(body["toml"], source="answer") == new
    versions = (await api("GET", "/v1/config/history")).json()["versions"]
    assert [(v["version"], v["height"]) for v in versions] == [(0, 0), (1, 1)]
    assert versions[1]["changes"] == [f"- m1 user {net.user_keys[1].public_key.hex}"]
    assert versions[1]["approvals"] == [{"member": "m1", "admin": net.admin_keys[1].public_key.hex}]


async def test_a_revoked_user_key_is_refused_at_entry(
    api: Call, net: TestNetwork, node: FakeNode
) -> None:
    await commit_update(api, net, node)
    answer = await api(
        "POST", "/v1/transactions", json_body=submit_body(anchoring(net, b"\x01" * 32).raw)
    )
    assert (answer.status, answer.error_code) == (422, "unknown_signer")


async def test_a_config_update_is_signed_by_an_admin(api: Call, net: TestNetwork) -> None:
    by_user = config_update(
        net.chain_id,
        net.network,
        revoke_m1_user(net),
        approvers=[net.admin_keys[1]],
        submitter=net.user_keys[1],
    )
    answer = await api("POST", "/v1/transactions", json_body=submit_body(by_user.raw))
    assert (answer.status, answer.error_code) == (422, "unknown_signer")
    assert "admin key" in answer.json()["error"]["message"]


async def test_other_transactions_are_not_signed_by_an_admin(api: Call, net: TestNetwork) -> None:
    tx = Transaction.create(
        net.admin_keys[0],
        chain_id=net.chain_id,
        op="notary.anchor",
        args={"digest": b"\x02" * 32, "description": "x"},
        nonce=1,
        time_ms=GENESIS_TIME_MS,
    )
    answer = await api("POST", "/v1/transactions", json_body=submit_body(tx.raw))
    assert (answer.status, answer.error_code) == (422, "unknown_signer")


async def test_config_takes_no_query(api: Call) -> None:
    for path in ("/v1/config?x=1", "/v1/config/history?y=2"):
        answer = await api("GET", path)
        assert answer.status == 400
