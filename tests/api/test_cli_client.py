"""The CLI as a client: each command against a real hypercorn server on 127.0.0.1
(port 0) over a FakeNode, run in a worker thread the way a user runs it; every
mistake is one line on stderr and exit status 1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import trio

import p2pledger.cli as cli_module
from p2pledger import config
from p2pledger.cli import EXIT_USER_ERROR, main
from p2pledger.cli_client import CommandError, build_args, register
from p2pledger.crypto import write_signing_key
from p2pledger.ledger import Ledger
from tests.api.fake_node import FakeNode
from tests.api.server import running_api
from tests.api.txs import account, issue
from tests.factory import TestNetwork

CLI_TIMEOUT_S = 30.0


@dataclass
class Outcome:
    code: int
    out: str
    err: str


Run = Callable[..., Awaitable[Outcome]]


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """``p2pledger.cli.cli`` with the client commands, restored after the test."""
    monkeypatch.setattr(cli_module.cli, "commands", dict(cli_module.cli.commands))
    register(cli_module.cli)
    return cli_module.cli


@pytest.fixture
async def api_url(node: FakeNode) -> AsyncIterator[str]:
    node.commit_on_submit = True
    async with running_api(node) as url:
        yield url


@pytest.fixture
def run(registered: click.Group, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``p2pledger ARGS...`` in a worker thread; return its exit code and output."""

    def sync_main(args: list[str]) -> int:
        try:
            main(args)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        raise AssertionError("main() always exits")

    async def call(*args: str | Path) -> Outcome:
        with trio.fail_after(CLI_TIMEOUT_S):
            code = await trio.to_thread.run_sync(
                sync_main, [str(a) for a in args], abandon_on_cancel=True
            )
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return call


def assert_one_line_error(outcome: Outcome, *fragments: str) -> None:
    assert outcome.code == EXIT_USER_ERROR, outcome
    assert "Traceback" not in outcome.err
    assert outcome.err.startswith("error: ") and outcome.err.count("\n") == 1, outcome.err
    for fragment in fragments:
        assert fragment in outcome.err, outcome.err


@pytest.fixture
def keys(net: TestNetwork, tmp_path: Path) -> list[Path]:
    paths = []
    for i, key in enumerate(net.user_keys):
        path = tmp_path / f"user{i}.key"
        write_signing_key(path, key)
        paths.append(path)
    return paths


async def test_status_human_and_json(run: Run, api_url: str, net: TestNetwork) -> None:
    human = await run("status", "--api", api_url)
    assert human.code == 0, human
    assert "member m0: leader, term 1, healthy" in human.out
    assert f"chain test-chain ({net.chain_id.hex()}), height 0" in human.out
    assert "peer m2: disconnected" in human.out
    as_json = await run("status", "--api", api_url, "--json")
    assert json.loads(as_json.out)["chain_id"] == net.chain_id.hex()


async def test_submit_issue_and_transfer_then_balance(
    run: Run, api_url: str, net: TestNetwork, keys: list[Path]
) -> None:
    to1, to2 = account(net, 1).hex(), account(net, 2).hex()
    issued = await run(
        "submit", "--api", api_url, "--key", keys[0], "--op", "fund.issue",
        "--arg", "fund=relief", "--arg", f"to={to1}", "--arg", "amount=100",
    )  # fmt: skip
    assert issued.code == 0, issued
    assert issued.out.startswith("committed ") and issued.out.rstrip().endswith(": valid")

    moved = await run(
        "submit", "--api", api_url, "--key", keys[1], "--op", "fund.transfer",
        "--arg", "fund=relief", "--arg", f"to={to2}", "--arg", "amount=30",
        "--arg", "memo=rent", "--json",
    )  # fmt: skip
    assert moved.code == 0, moved
    payment = json.loads(moved.out)
    assert (payment["status"], payment["valid"], payment["height"]) == ("committed", True, 2)

    shown = await run("balance", "relief", to2, "--api", api_url)
    assert shown.code == 0, shown
    assert f"account {to2}: balance 30 in 1 lot" in shown.out
    assert f"via transfer {payment['id']} (height 2)" in shown.out
    left = await run("balance", "relief", to1, "--api", api_url, "--json")
    assert json.loads(left.out)["balance"] == 70


async def test_a_transaction_committed_as_invalid_exits_1(
    run: Run, api_url: str, net: TestNetwork, keys: list[Path]
) -> None:
    outcome = await run(
        "submit", "--api", api_url, "--key", keys[2], "--op", "fund.transfer",
        "--arg", "fund=relief", "--arg", f"to={account(net, 1).hex()}", "--arg", "amount=5",
    )  # fmt: skip
    assert_one_line_error(outcome, "committed at height 1 as invalid: overdraft")


async def test_submit_without_wait_and_a_commit_timeout(
    run: Run, api_url: str, net: TestNetwork, node: FakeNode, keys: list[Path]
) -> None:
    node.commit_on_submit = False
    args = ("--api", api_url, "--key", keys[1], "--op", "notary.anchor")
    accepted = await run(
        "submit", *args, "--arg", f"digest={'11' * 32}", "--arg", "description=x", "--no-wait"
    )
    assert accepted.code == 0, accepted
    assert accepted.out.startswith("accepted ") and accepted.out.rstrip().endswith(": pending")

    late = await run(
        "submit", *args, "--arg", f"digest={'22' * 32}", "--arg", "description=y",
        "--wait-timeout", "0.2",
    )  # fmt: skip
    assert_one_line_error(late, "not committed within 0.2 s; it may still commit")
    assert len(node.pending) == 2


async def test_tx_and_block_online_and_offline(
    run: Run, api_url: str, net: TestNetwork, node: FakeNode, tmp_path: Path
) -> None:
    node.commit_on_submit = False
    tx = issue(net, to=1, amount=3)
    await node.submit(tx.raw)
    node.commit_pending()

    online = await run("tx", tx.id.hex(), "--api", api_url)
    assert online.code == 0, online
    answer = json.loads(online.out)
    assert (answer["status"], answer["height"], answer["receipt"]["tx"]["id"]) == (
        "committed",
        1,
        tx.id.hex(),
    )
    copy = tmp_path / "copy"  # LMDB opens a directory once per process: read a replica
    with Ledger.create(copy, net.network) as replica:
        replica.commit(node.ledger.tip)
    offline = await run("tx", tx.id.hex(), "--data-dir", copy)
    assert offline.code == 0, offline
    assert json.loads(offline.out)["block_hash"] == node.ledger.tip.hash.hex()

    latest = await run("block", "latest", "--api", api_url, "--txs")
    assert latest.code == 0, latest
    assert json.loads(latest.out)["txs"] == [tx.raw.hex()]
    local = await run("block", "1", "--data-dir", copy, "--txs")
    assert json.loads(local.out) == json.loads(latest.out)

    both = await run("tx", tx.id.hex(), "--api", api_url, "--data-dir", copy)
    assert_one_line_error(both, "give --api or --data-dir, not both")
    unknown = await run("tx", "ab" * 32, "--api", api_url)
    assert_one_line_error(unknown, "neither pending nor committed", "unknown_transaction")
    bad = await run("block", "tip", "--api", api_url)
    assert_one_line_error(bad, "is not a block height")


async def test_anchor_then_verify_anchor_with_the_network_file(
    run: Run, api_url: str, net: TestNetwork, keys: list[Path], tmp_path: Path
) -> None:
    document = tmp_path / "contract.pdf"
    document.write_bytes(b"%PDF signed contract")
    anchored = await run(
        "anchor", document, "--description", "signed contract", "--key", keys[1],
        "--api", api_url,
    )  # fmt: skip
    assert anchored.code == 0, anchored
    assert "anchored at height 1" in anchored.out
    assert "sha256 " in anchored.out

    network_file = tmp_path / "network.toml"
    network_file.write_text(config.network_to_toml(net.network))
    receipt_file = tmp_path / "receipt.json"
    verified = await run(
        "verify-anchor", document, "--api", api_url, "--network", network_file,
        "--receipt-out", receipt_file,
    )  # fmt: skip
    assert verified.code == 0, verified
    assert "receipt verified: in block 1" in verified.out
    assert "proposed by m0" in verified.out
    assert json.loads(receipt_file.read_text())["block"]["height"] == 1

    unverified = await run("verify-anchor", document, "--api", api_url, "--json")
    body = json.loads(unverified.out)
    assert (body["verified"], body["record"]["description"]) == (False, "signed contract")

    again = await run(
        "anchor", document, "--description", "again", "--key", keys[2], "--api", api_url
    )
    assert_one_line_error(again, "was already anchored at height 1", "the first anchoring stands")

    other = tmp_path / "other.txt"
    other.write_text("never anchored")
    missing = await run("verify-anchor", other, "--api", api_url)
    assert_one_line_error(missing, "is not anchored on this ledger")


async def test_the_api_comes_from_node_toml(
    run: Run, api_url: str, net: TestNetwork, tmp_path: Path
) -> None:
    host_port = api_url.removeprefix("http://")
    node_file = tmp_path / "node.toml"
    node_file.write_text(
        config.node_to_toml(
            config.NodeConfig(
                name="m0",
                network=tmp_path / "network.toml",
                key_file=tmp_path / "m0.key",
                data_dir=tmp_path / "data",
                listen="127.0.0.1:7000",
                api=host_port,
            )
        )
    )
    outcome = await run("status", "--config", node_file, "--json")
    assert outcome.code == 0, outcome
    assert json.loads(outcome.out)["member"] == "m0"


async def test_an_unreachable_api_is_one_line(run: Run, node: FakeNode) -> None:
    async with running_api(node) as url:  # a port that was just in use, now closed
        pass
    outcome = await run("status", "--api", url)
    assert_one_line_error(outcome, f"cannot reach the API at {url}: is the node running?")


async def test_usage_mistakes_are_one_line(
    run: Run, api_url: str, keys: list[Path], tmp_path: Path
) -> None:
    base = ("submit", "--api", api_url, "--key", keys[0])
    cases = [
        ((*base, "--op", "fund.issue", "--arg", "fund"), "write NAME=VALUE"),
        ((*base, "--op", "fund.issue", "--arg", "colour=red"), "takes no argument 'colour'"),
        ((*base, "--op", "fund.issue", "--arg", "fund=relief"), "fund.issue needs --arg to="),
        ((*base, "--op", "x.y", "--arg", "n:float=1"), "unknown type 'float'"),
        ((*base, "--op", "fund.issue", "--arg", "amount=ten"), "'ten' is not an integer"),
        (("submit", "--api", api_url, "--key", tmp_path / "nokey", "--op", "x.y"), "nokey"),
        (("balance", "relief", "zz", "--api", api_url), "is not an account"),
        (("status", "--api", "ftp://example"), "is not an API URL"),
        (("verify-anchor", tmp_path / "absent", "--api", api_url), "cannot read"),
    ]
    for args, fragment in cases:
        assert_one_line_error(await run(*args), fragment)


def test_build_args_types_defaults_and_annotations() -> None:
    me = bytes(range(32))
    assert build_args("fund.transfer", ["fund=relief", f"to={'aa' * 32}", "amount=5"], me) == {
        "fund": "relief",
        "from": me,
        "to": bytes.fromhex("aa" * 32),
        "amount": 5,
        "memo": "",
    }
    assert build_args("custom.op", ["n:int=-3", "b:bool=true", "h:hex=00ff", "s=7"], me) == {
        "n": -3,
        "b": True,
        "h": b"\x00\xff",
        "s": "7",
    }
    with pytest.raises(CommandError, match="more than once"):
        build_args("custom.op", ["a=1", "a=2"], me)


def test_register_is_idempotent_and_keeps_the_offline_commands() -> None:
    group = click.Group()
    group.add_command(cli_module.tx)
    group.add_command(cli_module.block)
    register(group)
    merged = group.commands["tx"]
    register(group)
    assert group.commands["tx"] is merged
    names = {p.name for p in merged.params}
    assert {"data_dir", "node_file", "api", "timeout"} <= names
    assert {"submit", "status", "balance", "anchor", "verify-anchor", "block"} <= set(
        group.commands
    )
