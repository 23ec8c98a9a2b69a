"""``p2pledger config`` as admins use it, against a real hypercorn server on 127.0.0.1
over a FakeNode (a real ledger): show, propose, sign twice, submit, history, diff;
and every refusal of docs/membership.md as one line and exit status 1."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

import p2pledger.cli_config as cli_config
from p2pledger.cli import EXIT_USER_ERROR, main
from p2pledger.cli_config import EXIT_DIFFERS, ProposalFile
from p2pledger.config import network_to_toml
from p2pledger.crypto import SigningKey, write_signing_key
from p2pledger.membership import Network, Proposal, Role, sign_proposal
from tests.api.fake_node import FakeNode
from tests.api.server import running_api
from tests.factory import TestNetwork, edit_member, new_member, remove_member, seeded_key

CLI_TIMEOUT_S = 30.0
BANK_D, _ = new_member("bank-d", port=7401)
BANK_D_TOML = f"""
[[members]]
name = "bank-d"
node_key = "{BANK_D.node_key.hex}"
address = "{BANK_D.address}"
role = "voter"
admins = ["{BANK_D.admins[0].hex}"]
users = ["{BANK_D.users[0].hex}"]
"""


@dataclass
class Outcome:
    code: int
    out: str
    err: str


Run = Callable[..., Awaitable[Outcome]]


@pytest.fixture
async def api_url(node: FakeNode) -> AsyncIterator[str]:
    node.commit_on_submit = True
    async with running_api(node) as url:
        yield url


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
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
def admin(net: TestNetwork, tmp_path: Path) -> list[Path]:
    """The admin key file of each member."""
    paths = []
    for i, key in enumerate(net.admin_keys):
        paths.append(tmp_path / f"admin{i}.key")
        write_signing_key(paths[-1], key)
    return paths


def key_file(tmp_path: Path, key: SigningKey, name: str) -> Path:
    path = tmp_path / name
    write_signing_key(path, key)
    return path


def as_exported(network: Network) -> str:
    """``network`` as network.toml, as exported from version 0 then edited."""
    return network_to_toml(dataclasses.replace(network, version=0))


async def export(run: Run, api_url: str, tmp_path: Path) -> Path:
    out = tmp_path / "network.toml"
    done = await run("config", "show", "--toml", "--out", out, "--api", api_url)
    assert done.code == 0, done
    return out


async def propose_text(run: Run, api_url: str, tmp_path: Path, text: str) -> Outcome:
    edited = tmp_path / "edited.toml"
    edited.write_text(text)
    return await run(
        "config", "propose", edited, "--out", tmp_path / "change.json", "--api", api_url, "--force"
    )


# --- the whole workflow -------------------------------------------------------------


async def test_propose_sign_twice_submit(
    run: Run, api_url: str, net: TestNetwork, node: FakeNode, admin: list[Path], tmp_path: Path
) -> None:
    exported = await export(run, api_url, tmp_path)
    (tmp_path / "edited.toml").write_text(exported.read_text())  # version 0, for a diff
    exported.write_text(exported.read_text() + BANK_D_TOML)  # the admin's edit
    change = tmp_path / "change.json"

    proposed = await run("config", "propose", exported, "--out", change, "--api", api_url)
    assert proposed.code == 0, proposed
    assert "membership version 0 -> 1" in proposed.out
    assert "+ member bank-d (voter, 127.0.0.1:7401" in proposed.out
    assert "needs approvals from: admins of a majority of member organisations (2 of 3)" in (
        proposed.out
    )
    assert "approved so far by: nobody" in proposed.out
    data = json.loads(change.read_text())
    assert (data["chain_id"], data["base_version"], data["version"]) == (net.chain_id.hex(), 0, 1)
    assert data["required"]["majority"] is True and data["approvals"] == []
    assert Proposal.decode(bytes.fromhex(data["proposal"])).network.member("bank-d") == BANK_D

    early = await run("config", "submit", change, "--key", admin[2], "--api", api_url)
    assert_one_line_error(early, "too few approvals", "0 of 3 member organisations", "need 2")

    first = await run("config", "sign", change, "--key", admin[0], "--yes", "--api", api_url)
    assert first.code == 0, first
    assert "+ member bank-d" in first.out  # the same diff, before signing
    assert "approved as an admin of m0" in first.out and "not yet enough" in first.out
    again = await run("config", "sign", change, "--key", admin[0], "--yes", "--api", api_url)
    assert "already approved by this key (m0)" in again.out
    second = await run("config", "sign", change, "--key", admin[1], "--yes", "--api", api_url)
    assert "approved so far by: m0" in second.out
    assert "the approvals meet the policy" in second.out
    data = json.loads(change.read_text())
    assert [a["member"] for a in data["approvals"]] == ["m0", "m1"]

    submitted = await run("config", "submit", change, "--key", admin[2], "--api", api_url)
    assert submitted.code == 0, submitted
    assert "membership version 1 in force from height 2" in submitted.out
    assert node.ledger.network.member("bank-d") == BANK_D
    assert node.ledger.network.version == 1

    shown = await run("config", "show", "--api", api_url)
    assert shown.out.startswith(
        f"membership version 1 of chain test-chain (chain id {net.chain_id.hex()})"
    )
    assert "member bank-d: voter at 127.0.0.1:7401" in shown.out
    history = await run("config", "history", "--api", api_url)
    assert history.code == 0, history
    assert "version 0 at height 0: the founding network" in history.out
    assert "version 1 at height 1 (transaction " in history.out
    assert "approved by m0 (" in history.out and ", m1 (" in history.out

    # The edited file now matches the ledger but for its version; a replay is refused.
    matched = await run("config", "diff", exported, "--api", api_url)
    assert matched.code == 0, matched
    assert "matches membership version 1 in force (but says version 0)" in matched.out
    replayed = await run(
        "config", "propose", exported, "--out", tmp_path / "again.json", "--api", api_url
    )
    assert_one_line_error(
        replayed, "says version 0, but membership version 1 is in force", "config show --toml"
    )
    stale = await run("config", "sign", change, "--key", admin[2], "--yes", "--api", api_url)
    assert_one_line_error(stale, "stale_config", "re-propose from the current membership")
    resubmitted = await run("config", "submit", change, "--key", admin[2], "--api", api_url)
    assert_one_line_error(resubmitted, "stale_config")

    # Offline, from the data directory (LMDB opens an environment once per process).
    data_dir = node.ledger.store.data_dir
    node.close()
    offline = await run("config", "history", "--json", "--data-dir", data_dir)
    assert offline.code == 0, offline
    assert [v["version"] for v in json.loads(offline.out)["versions"]] == [0, 1]
    assert (await run("config", "show", "--data-dir", data_dir)).out == shown.out
    differs = await run("config", "diff", tmp_path / "edited.toml", "--data-dir", data_dir)
    assert differs.code == EXIT_DIFFERS and "- member bank-d" in differs.out


async def test_own_change_needs_that_members_admin(
    run: Run, api_url: str, net: TestNetwork, node: FakeNode, admin: list[Path], tmp_path: Path
) -> None:
    text = as_exported(edit_member(net.network, "m1", address="10.1.1.1:7001"))
    proposed = await propose_text(run, api_url, tmp_path, text)
    assert proposed.code == 0, proposed
    assert "~ m1 address 127.0.0.1:7001 -> 10.1.1.1:7001" in proposed.out
    assert "needs approvals from: an admin of m1" in proposed.out
    change = tmp_path / "change.json"
    for other in (admin[0], admin[2]):
        assert (
            await run("config", "sign", change, "--key", other, "--yes", "--api", api_url)
        ).code == 0
    short = await run("config", "submit", change, "--key", admin[0], "--api", api_url)
    assert_one_line_error(short, "missing an approval by an admin of m1")
    await run("config", "sign", change, "--key", admin[1], "--yes", "--api", api_url)
    done = await run("config", "submit", change, "--key", admin[0], "--api", api_url)
    assert "membership version 1 in force from height 2" in done.out
    assert node.ledger.network.member("m1").address == "10.1.1.1:7001"  # type: ignore[union-attr]


async def test_diff_shows_what_a_file_would_change(
    run: Run, api_url: str, net: TestNetwork, tmp_path: Path
) -> None:
    exported = await export(run, api_url, tmp_path)
    same = await run("config", "diff", exported, "--api", api_url)
    assert (same.code, same.out.strip()) == (0, f"{exported} matches membership version 0 in force")
    text = as_exported(edit_member(net.network, "m2", role=Role.OBSERVER))
    other = tmp_path / "other.toml"
    other.write_text(text.replace('name = "test-chain"', 'name = "other-chain"'))
    differs = await run("config", "diff", other, "--api", api_url)
    assert differs.code == EXIT_DIFFERS, differs
    assert "~ m2 role voter -> observer" in differs.out
    assert "! the chain name is 'test-chain', not 'other-chain'" in differs.out


async def test_sign_asks_first(
    run: Run,
    api_url: str,
    net: TestNetwork,
    admin: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = as_exported(remove_member(net.network, "m2"))
    assert (await propose_text(run, api_url, tmp_path, text)).code == 0
    change = tmp_path / "change.json"
    before = change.read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    declined = await run("config", "sign", change, "--key", admin[0], "--api", api_url)
    assert declined.code == 130, declined
    assert "approve this change as an admin of m0?" in declined.out
    assert change.read_text() == before
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    accepted = await run("config", "sign", change, "--key", admin[0], "--api", api_url)
    assert accepted.code == 0, accepted
    assert json.loads(change.read_text())["approvals"][0]["member"] == "m0"


# --- what is refused, and changes nothing ---------------------------------------------


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (as_exported, "(config_unchanged)"),
        (
            lambda n: as_exported(remove_member(remove_member(n, "m2"), "m1")),
            "(too_many_conf_changes)",
        ),
        (  # such a file does not even load
            lambda n: as_exported(n).replace('role = "voter"', 'role = "observer"'),
            'no member has role = "voter"',
        ),
    ],
    ids=["unchanged", "two members at once", "no voter"],
)
async def test_propose_refuses_an_invalid_change(
    run: Run,
    api_url: str,
    net: TestNetwork,
    node: FakeNode,
    tmp_path: Path,
    edit: Callable[[Network], str],
    says: str,
) -> None:
    refused = await propose_text(run, api_url, tmp_path, edit(net.network))
    assert refused.code == EXIT_USER_ERROR and "Traceback" not in refused.err
    assert says in refused.err, refused.err
    assert not (tmp_path / "change.json").exists()
    assert node.ledger.network.version == 0


async def test_propose_refuses_a_malformed_file(
    run: Run, api_url: str, net: TestNetwork, tmp_path: Path
) -> None:
    text = network_to_toml(net.network) + BANK_D_TOML.replace(
        BANK_D.users[0].hex, net.user_keys[0].public_key.hex
    )
    text = text.replace('address = "127.0.0.1:7401"', 'address = "nowhere"')
    refused = await propose_text(run, api_url, tmp_path, text)
    assert refused.code == EXIT_USER_ERROR and "Traceback" not in refused.err
    assert "2 configuration problems" in refused.err  # every problem at once
    assert "already used as the user key" in refused.err
    assert "is not a valid host:port address" in refused.err


async def test_sign_refuses_a_non_admin_key_and_another_chain(
    run: Run, api_url: str, net: TestNetwork, admin: list[Path], tmp_path: Path
) -> None:
    assert (
        await propose_text(run, api_url, tmp_path, network_to_toml(net.network) + BANK_D_TOML)
    ).code == 0
    change = tmp_path / "change.json"
    user = key_file(tmp_path, net.user_keys[0], "user0.key")
    refused = await run("config", "sign", change, "--key", user, "--yes", "--api", api_url)
    assert_one_line_error(refused, "is not an admin key of membership version 0")
    other = TestNetwork(n=2)
    foreign = ProposalFile.new(
        Proposal(chain_id=other.chain_id, base_version=0, network=net.network)
    )
    foreign.save(tmp_path / "foreign.json", net.network, overwrite=False)
    refused = await run(
        "config", "sign", tmp_path / "foreign.json", "--key", admin[0], "--yes", "--api", api_url
    )
    assert_one_line_error(refused, "is a proposal for chain", "serves chain")


async def test_submit_refuses_a_stranger_approval_and_a_forged_one(
    run: Run, api_url: str, net: TestNetwork, node: FakeNode, admin: list[Path], tmp_path: Path
) -> None:
    assert (
        await propose_text(run, api_url, tmp_path, network_to_toml(net.network) + BANK_D_TOML)
    ).code == 0
    change = tmp_path / "change.json"
    file = ProposalFile.load(change)
    stranger = seeded_key("stranger")
    with_stranger = file.with_approval(sign_proposal(file.raw, net.admin_keys[0]))
    with_stranger = with_stranger.with_approval(sign_proposal(file.raw, stranger))
    with_stranger.save(change, net.network, overwrite=True)
    refused = await run("config", "submit", change, "--key", admin[0], "--api", api_url)
    assert_one_line_error(
        refused, "is not from an admin of membership version 0", "unauthorized_admin"
    )

    other_base = Proposal(chain_id=net.chain_id, base_version=1, network=file.proposal.network)
    data = json.loads(change.read_text())
    data["approvals"][0]["sig"] = sign_proposal(other_base.encode(), net.admin_keys[0]).sig.hex()
    change.write_text(json.dumps(data))
    forged = await run("config", "submit", change, "--key", admin[0], "--api", api_url)
    assert_one_line_error(forged, "does not verify over this proposal", "another base version")
    assert node.ledger.tip.height == 0  # nothing was sent


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "is not JSON"),
        ('{"type": "x"}', "is not a proposal file"),
        ("[]", "is not a proposal file"),
    ],
)
async def test_a_damaged_proposal_file(
    run: Run, api_url: str, admin: list[Path], tmp_path: Path, content: str, says: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert_one_line_error(
        await run("config", "sign", bad, "--key", admin[0], "--yes", "--api", api_url), says
    )
    missing = await run(
        "config", "submit", tmp_path / "none.json", "--key", admin[0], "--api", api_url
    )
    assert_one_line_error(missing, "cannot read")


async def test_submit_reports_the_ledgers_rejection(
    run: Run,
    api_url: str,
    net: TestNetwork,
    node: FakeNode,
    admin: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were the local check skipped, the ledger would refuse it, and submit says why."""
    assert (
        await propose_text(run, api_url, tmp_path, network_to_toml(net.network) + BANK_D_TOML)
    ).code == 0
    monkeypatch.setattr(cli_config, "check_approvals", lambda *_: None)
    refused = await run(
        "config", "submit", tmp_path / "change.json", "--key", admin[0], "--api", api_url
    )
    assert_one_line_error(
        refused, "the ledger refused the update at height 1 (insufficient_approvals)"
    )
    assert node.ledger.network.version == 0


async def test_offline_and_online_at_once_is_a_mistake(run: Run, api_url: str) -> None:
    both = await run("config", "show", "--data-dir", "somewhere", "--api", api_url)
    assert_one_line_error(both, "not both")
