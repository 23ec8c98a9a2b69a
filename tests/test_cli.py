"""The command line as a new institution uses it: set-up, inspection, audit and
receipts, and a one-line message with a non-zero exit for every mistake."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2pledger import config
from p2pledger.chain import Block
from p2pledger.cli import EXIT_AUDIT_FAILED, EXIT_USER_ERROR, main
from p2pledger.crypto import load_signing_key, write_signing_key
from p2pledger.ledger import Ledger
from p2pledger.store import LEDGER_DIR
from p2pledger.store.env import LmdbEnvironment, Txn
from tests.factory import GENESIS_TIME_MS, TestNetwork


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    def call(*args: str | Path) -> Outcome:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        code = exit_info.value.code
        return Outcome(code if isinstance(code, int) else 1, captured.out, captured.err)

    return call


def assert_user_error(outcome: Outcome, *fragments: str) -> None:
    assert outcome.code == EXIT_USER_ERROR, outcome
    assert "Traceback" not in outcome.err
    assert outcome.err.startswith("error: ")
    for fragment in fragments:
        assert fragment in outcome.err


@pytest.fixture
def member(tmp_path: Path, run: Callable[..., Outcome]) -> tuple[TestNetwork, Path]:
    """A network of three, written to network.toml, with member m0 initialized."""
    net = TestNetwork(n=3)
    (tmp_path / "network.toml").write_text(config.network_to_toml(net.network))
    write_signing_key(tmp_path / "m0.key", net.node_keys[0])
    done = run(
        "init",
        "--network",
        tmp_path / "network.toml",
        "--name",
        "m0",
        "--key",
        tmp_path / "m0.key",
        "--dir",
        tmp_path / "m0",
    )
    assert done.code == 0, done
    return net, tmp_path


def write_blocks(net: TestNetwork, data_dir: Path, heights: int) -> list[Block]:
    blocks = []
    with Ledger.open(data_dir) as ledger:
        for h in range(1, heights + 1):
            txs = [net.tx(h * 100 + i, user=i % net.n) for i in range(4)]
            block = ledger.propose(
                txs, key=net.node_keys[h % net.n], time_ms=GENESIS_TIME_MS + h, term=1
            )
            ledger.commit(block)
            blocks.append(block)
    return blocks


def test_keygen_writes_a_private_key_only_its_owner_can_read(
    tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    done = run("keygen", "--out", tmp_path / "k.key")
    assert done.code == 0
    key = load_signing_key(tmp_path / "k.key")
    assert done.out.strip() == key.public_key.hex
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert (tmp_path / "k.key.pub").read_text() == key.public_key.to_pem()
    again = run("keygen", "--out", tmp_path / "k.key")
    assert_user_error(again, "already exists")
    assert load_signing_key(tmp_path / "k.key").public_key == key.public_key


def test_init_writes_node_toml_and_a_ledger_holding_genesis(
    member: tuple[TestNetwork, Path],
) -> None:
    net, root = member
    node = config.load_node(root / "m0" / "node.toml")
    assert node.name == "m0"
    assert node.listen == net.network.member("m0").address  # type: ignore[union-attr]
    with Ledger.open(node.data_dir) as ledger:
        assert ledger.chain_id == net.chain_id
        assert ledger.tip.height == 0


def test_init_refuses_a_non_member_a_wrong_key_and_a_second_init(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    _, root = member
    args = ["--network", root / "network.toml", "--key", root / "m0.key"]
    assert_user_error(
        run("init", *args, "--name", "nobody", "--dir", root / "x"),
        "'nobody' is not a member",
        "m0, m1, m2",
    )
    assert_user_error(
        run("init", *args, "--name", "m1", "--dir", root / "y"), "gives m1 the node_key"
    )
    assert_user_error(run("init", *args, "--name", "m0", "--dir", root / "m0"), "already exists")
    assert not (root / "x").exists()
    assert not (root / "y" / "node.toml").exists()


def test_insecure_key_file_is_refused_with_the_fix(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    _, root = member
    os.chmod(root / "m0.key", 0o644)
    outcome = run(
        "init",
        "--network",
        root / "network.toml",
        "--name",
        "m0",
        "--key",
        root / "m0.key",
        "--dir",
        root / "z",
    )
    assert_user_error(outcome, f"chmod 600 {root / 'm0.key'}")


def test_broken_network_file_lists_its_problems(
    tmp_path: Path, run: Callable[..., Outcome]
) -> None:
    (tmp_path / "network.toml").write_text('[chain]\nname = "x"\nbogus = 1\n')
    write_signing_key(tmp_path / "k.key", TestNetwork().node_keys[0])
    outcome = run(
        "init", "--network", tmp_path / "network.toml", "--name", "m0", "--key", tmp_path / "k.key"
    )
    assert_user_error(outcome, "network.toml", "bogus")


def test_audit_passes_a_good_ledger(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    net, root = member
    write_blocks(net, root / "m0" / "data", 5)
    done = run("audit", root / "m0" / "data", "--json")
    assert done.code == 0, done
    report = json.loads(done.out)
    assert report["ok"] is True
    assert (report["height"], report["transactions"]) == (5, 20)
    assert report["chain_id"] == net.chain_id.hex()
    by_config = run("audit", "--config", root / "m0" / "node.toml")
    assert by_config.code == 0 and "audit OK" in by_config.out


def _rewrite_block(data_dir: Path, height: int, change: Callable[[Block], Block]) -> None:
    key = height.to_bytes(8, "big")

    def edit(txn: Txn) -> None:
        raw = txn.get("blocks", key)
        assert raw is not None
        txn.put("blocks", key, change(Block.decode(raw)).encode())

    env = LmdbEnvironment.open(data_dir / LEDGER_DIR, create=False, map_size=64 << 20)
    try:
        env.open_dbs(["blocks"], create=False)
        env.write(edit)
    finally:
        env.close()


def _swap_tx(block: Block) -> Block:
    txs = list(block.txs)
    txs[0], txs[1] = txs[1], txs[0]
    return Block(block.header, block.header_bytes, block.sig, tuple(txs), block.results)


def _zero_sig(block: Block) -> Block:
    return Block(block.header, block.header_bytes, bytes(64), block.txs, block.results)


@pytest.mark.parametrize(
    ("change", "reason"),
    [(_swap_tx, "wrong_tx_root"), (_zero_sig, "bad_header_signature")],
)
def test_audit_names_the_first_bad_block(
    member: tuple[TestNetwork, Path],
    run: Callable[..., Outcome],
    change: Callable[[Block], Block],
    reason: str,
) -> None:
    net, root = member
    data = root / "m0" / "data"
    write_blocks(net, data, 6)
    _rewrite_block(data, 4, change)
    outcome = run("audit", data)
    assert outcome.code == EXIT_AUDIT_FAILED
    assert f"audit FAILED at block 4: {reason}" in outcome.err
    assert "Traceback" not in outcome.err


def test_block_tx_prove_and_verify_receipt(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    net, root = member
    data = root / "m0" / "data"
    blocks = write_blocks(net, data, 3)
    latest = json.loads(run("block", "latest", "--data-dir", data).out)
    assert latest["hash"] == blocks[-1].hash.hex()
    second = json.loads(run("block", "2", "--data-dir", data, "--txs").out)
    assert second["txs"] == [t.hex() for t in blocks[1].txs]
    tx_id = second["tx_ids"][2]
    shown = json.loads(run("tx", tx_id, "--data-dir", data).out)
    assert (shown["height"], shown["index"], shown["valid"]) == (2, 2, True)
    receipt = root / "r.json"
    assert run("prove", tx_id, "--data-dir", data, "--out", receipt).code == 0
    ok = run("verify-receipt", receipt, "--network", root / "network.toml")
    assert ok.code == 0, ok
    assert "receipt OK" in ok.out and "in block 2" in ok.out
    # A receipt whose transaction was swapped for another of the block fails.
    doc = json.loads(receipt.read_text())
    doc["tx"]["raw"] = blocks[1].txs[0].hex()
    doc["tx"]["id"] = second["tx_ids"][0]
    receipt.write_text(json.dumps(doc))
    assert_user_error(
        run("verify-receipt", receipt, "--network", root / "network.toml"),
        "does not hash to the expected root",
    )


def test_receipt_against_another_network_fails(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    net, root = member
    data = root / "m0" / "data"
    blocks = write_blocks(net, data, 1)
    tx_id = blocks[0].to_json()["tx_ids"][0]
    assert run("prove", tx_id, "--data-dir", data, "--out", root / "r.json").code == 0
    other = TestNetwork(n=4)
    (root / "other.toml").write_text(config.network_to_toml(other.network))
    assert_user_error(
        run("verify-receipt", root / "r.json", "--network", root / "other.toml"), "another chain"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["tx", "zz"], "is not a transaction id"),
        (["tx", "00" * 32], "is not in this ledger"),
        (["block", "99"], "no block at height 99"),
        (["block", "x"], "is not a block height"),
        (["prove", "ab" * 32], "is not in this ledger"),
    ],
)
def test_inspection_mistakes_get_one_line(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome], args: list[str], fragment: str
) -> None:
    _, root = member
    outcome = run(*args, "--data-dir", root / "m0" / "data")
    assert_user_error(outcome, fragment)
    assert outcome.err.count("\n") == 1


def test_missing_data_dir_and_receipt_file(tmp_path: Path, run: Callable[..., Outcome]) -> None:
    assert_user_error(run("audit", tmp_path / "nothing"), "p2pledger init")
    assert_user_error(
        run("verify-receipt", tmp_path / "none.json", "--network", tmp_path / "n.toml"),
        "n.toml",
    )
    (tmp_path / "n.toml").write_text(config.network_to_toml(TestNetwork().network))
    assert_user_error(
        run("verify-receipt", tmp_path / "none.json", "--network", tmp_path / "n.toml"),
        "cannot read",
    )
    (tmp_path / "bad.json").write_text("{not json")
    assert_user_error(
        run("verify-receipt", tmp_path / "bad.json", "--network", tmp_path / "n.toml"),
        "is not JSON",
    )


def test_unknown_option_is_a_usage_error(run: Callable[..., Outcome]) -> None:
    outcome = run("audit", "--bogus")
    assert outcome.code == 2
    assert "No such option" in outcome.err
    assert "Traceback" not in outcome.err


def test_export_writes_every_block_as_a_json_line(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    net, root = member
    data = root / "m0" / "data"
    blocks = write_blocks(net, data, 3)
    out = root / "ledger.jsonl"
    done = run("export", data, "--out", out)
    assert done.code == 0, done
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [b["header"]["height"] for b in lines] == list(range(len(blocks) + 1))
    assert [b["hash"] for b in lines[1:]] == [b.hash.hex() for b in blocks]
    assert lines[2]["tx_ids"] == blocks[1].to_json()["tx_ids"]
    assert not (root / "ledger.jsonl.part").exists()
    # to standard output, from a height on
    tail = run("export", data, "--from", "2")
    assert [json.loads(x)["header"]["height"] for x in tail.out.splitlines()] == [2, 3]


def test_export_mistakes_are_one_line(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    _, root = member
    assert_user_error(run("export", root / "nowhere"))
    data = root / "m0" / "data"
    assert_user_error(
        run("export", data, "--out", root / "no-such-dir" / "x.jsonl"), "cannot write"
    )


def test_init_join_sets_up_a_member_not_in_the_founding_file(
    member: tuple[TestNetwork, Path], run: Callable[..., Outcome]
) -> None:
    _, root = member
    assert run("keygen", "--out", root / "m9.key").code == 0
    assert run("keygen", "--out", root / "m9.next.key").code == 0
    base = ["init", "--network", root / "network.toml", "--name", "m9", "--key", root / "m9.key"]
    assert_user_error(run(*base, "--dir", root / "m9"), "uses --join")
    assert_user_error(run(*base, "--dir", root / "m9", "--join"), "needs --listen")
    done = run(
        *base, "--dir", root / "m9", "--join", "--listen", "127.0.0.1:7409",
        "--next-key", root / "m9.next.key",
    )  # fmt: skip
    assert done.code == 0, done
    node = config.load_node(root / "m9" / "node.toml")
    assert node.join and node.listen == "127.0.0.1:7409"
    assert node.next_key_file == root / "m9.next.key"
    # a founding member does not join
    m1 = ["init", "--network", root / "network.toml", "--name", "m1", "--key", root / "m9.key"]
    assert_user_error(run(*m1, "--dir", root / "x", "--join", "--listen", "127.0.0.1:1"), "already")
