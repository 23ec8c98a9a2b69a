"""``p2pledger config``: how admins see and change the membership (docs/membership.md).

- ``show`` prints the membership in force (``--toml``: as network.toml, to edit);
- ``history`` lists every version: what changed, who approved it, at which height;
- ``diff FILE`` compares a network.toml with the membership in force;
- ``propose FILE --out PROPOSAL.json`` turns an edited network.toml into a proposal
  bound to the version in force, and shows the change and who must approve it;
- ``sign PROPOSAL --key ADMIN.key`` shows the same change and adds an approval;
- ``submit PROPOSAL --key ADMIN.key`` checks the policy and sends the ``config.update``
  transaction, waiting for the ledger's verdict.

The ledger is a running member's API (``--api URL``, or the ``api`` of ``--config
node.toml``, of ./node.toml, else the default), or for ``show``, ``history`` and
``diff`` a data directory read offline (``--data-dir DIR``). Every check the ledger
makes is made here first, with the same words, so a mistake is refused before it is
sent; refusals are p2pledger errors, which ``p2pledger.cli.main`` prints as one line.

The proposal file is JSON: the chain, the base version, the proposal's bytes (hex:
they are what admins sign), the changes and the approvals they need (for people: the
commands recompute both from the ledger), and the approvals so far.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from p2pledger import config
from p2pledger.chain import Transaction
from p2pledger.cli_client import CommandError, CommittedInvalid, api_url_for
from p2pledger.client import ApiClient, ApiRequestFailed, ApiResponseInvalid
from p2pledger.crypto import PublicKey, SigningKey, load_signing_key
from p2pledger.errors import ConfigError, MalformedKey, RemoteError
from p2pledger.ledger import config_history_of, network_of_store
from p2pledger.membership import (
    CONFIG_UPDATE_OP,
    Approval,
    BadApproval,
    Change,
    InsufficientApprovals,
    InvalidUpdate,
    MalformedProposal,
    Network,
    Proposal,
    approving_members,
    check_approvals,
    check_update,
    diff_networks,
    immutable_differences,
    required_approvals,
    sign_proposal,
    update_args,
)
from p2pledger.store import LedgerStore

__all__ = ["EXIT_DIFFERS", "FILE_TYPE", "BadProposalFile", "ProposalFile", "config_group"]

FILE_TYPE: Final = "p2pledger/config-proposal-file/1"
#: ``config diff`` exits with this when the file differs from the membership in force.
EXIT_DIFFERS: Final = 3
DEFAULT_HTTP_TIMEOUT_S: Final = 30.0
DEFAULT_WAIT_S: Final = 10.0
_FILE_KEYS: Final = frozenset(
    {
        "type",
        "chain_id",
        "chain_name",
        "base_version",
        "version",
        "digest",
        "proposal",
        "changes",
        "required",
        "approvals",
    }
)
_EXPORT_HINT: Final = "export it with: p2pledger config show --toml --out network.toml"


class BadProposalFile(RemoteError):
    """A proposal file is not one ``config propose`` wrote (or was damaged since)."""


# --- where the membership comes from --------------------------------------------------


@dataclass(frozen=True, slots=True)
class InForce:
    """The membership in force on a ledger, and where it was read."""

    chain_id: bytes
    network: Network
    source: str


def _api_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--config",
        "node_file",
        type=click.Path(path_type=Path),
        help="A node.toml; its api address is used.",
    )(fn)
    fn = click.option("--api", default=None, help="The member's API URL.")(fn)
    return fn


def _offline_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Read a member's data directory instead of asking its API.",
    )(fn)


def _http_timeout_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_HTTP_TIMEOUT_S,
        show_default=True,
        help="Seconds to wait for the API to answer.",
    )(fn)


def _client(api: str | None, node_file: Path | None, timeout: float) -> ApiClient:
    return ApiClient(api_url_for(api, node_file), timeout_s=timeout)


def _open_store(data_dir: Path, api: str | None, node_file: Path | None) -> LedgerStore:
    if api is not None or node_file is not None:
        raise CommandError("give --data-dir, or --api / --config, not both")
    return LedgerStore.open(data_dir, readonly=True)


def _from_api(client: ApiClient) -> InForce:
    answer = client.config()
    where = f"{client.base_url}/v1/config"
    try:
        chain_id = bytes.fromhex(answer["chain_id"])
        network = config.parse_network(answer["toml"], source=where)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ApiResponseInvalid(f"{where} is not a membership: {exc}") from exc
    if len(chain_id) != 32 or network.version != answer.get("version"):
        raise ApiResponseInvalid(f"{where} is not a membership: its version or chain id is off")
    return InForce(chain_id, network, client.base_url)


def _in_force(
    api: str | None, node_file: Path | None, data_dir: Path | None, timeout: float
) -> InForce:
    if data_dir is None:
        return _from_api(_client(api, node_file, timeout))
    with _open_store(data_dir, api, node_file) as store:
        chain_id = store.chain_id()
        if chain_id is None:
            raise CommandError(f"{data_dir} holds no ledger; run: p2pledger init")
        return InForce(chain_id, network_of_store(store), str(data_dir))


# --- the proposal file ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposalFile:
    """A proposal and the approvals collected for it so far."""

    proposal: Proposal
    raw: bytes
    approvals: tuple[Approval, ...] = ()

    @classmethod
    def new(cls, proposal: Proposal) -> ProposalFile:
        return cls(proposal, proposal.encode())

    def approved_by(self, key: PublicKey) -> bool:
        return any(a.admin == key for a in self.approvals)

    def with_approval(self, approval: Approval) -> ProposalFile:
        return dataclasses.replace(self, approvals=(*self.approvals, approval))

    def to_json(self, base: Network) -> dict[str, Any]:
        """The file's JSON, with the changes and requirement worked out from ``base``."""
        changes = diff_networks(base, self.proposal.network)
        need = required_approvals(base, changes)
        return {
            "type": FILE_TYPE,
            "chain_id": self.proposal.chain_id.hex(),
            "chain_name": self.proposal.network.chain_name,
            "base_version": self.proposal.base_version,
            "version": self.proposal.network.version,
            "digest": self.proposal.digest.hex(),
            "proposal": self.raw.hex(),
            "changes": [c.describe() for c in changes],
            "required": {
                "majority": need.needs_majority,
                "members": sorted(need.members),
                "text": need.describe(base),
            },
            "approvals": [
                {"admin": a.admin.hex, "member": _member_of(base, a.admin), "sig": a.sig.hex()}
                for a in self.approvals
            ],
        }

    def save(self, path: Path, base: Network, *, overwrite: bool) -> None:
        """Write the file whole or not at all (a temporary file, then a rename)."""
        if not overwrite and path.exists():
            raise CommandError(f"{path} already exists; remove it or give --force")
        tmp = path.with_name(path.name + ".part")
        try:
            tmp.write_text(json.dumps(self.to_json(base), indent=2) + "\n")
            tmp.replace(path)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc

    @classmethod
    def load(cls, path: Path) -> ProposalFile:
        """Read a proposal file; refuse it unless every approval in it verifies."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadProposalFile(f"{path} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("type") != FILE_TYPE:
            raise BadProposalFile(f"{path} is not a proposal file (written by config propose)")
        if data.keys() != _FILE_KEYS:
            raise BadProposalFile(f"{path} has the keys {sorted(data)}, not {sorted(_FILE_KEYS)}")
        try:
            raw = bytes.fromhex(data["proposal"])
            proposal = Proposal.decode(raw)
        except (TypeError, ValueError, MalformedProposal) as exc:
            raise BadProposalFile(f"{path}: the proposal is damaged: {exc}") from exc
        if (data["chain_id"], data["base_version"]) != (
            proposal.chain_id.hex(),
            proposal.base_version,
        ):
            raise BadProposalFile(
                f"{path}: chain_id and base_version do not match the proposal's bytes; "
                "was the file edited by hand? propose it again"
            )
        approvals = _approvals(path, data["approvals"])
        try:
            for approval in approvals:
                approval.verify(raw)
        except BadApproval as exc:
            raise BadProposalFile(f"{path}: {exc}") from exc
        return cls(proposal, raw, approvals)


def _approvals(path: Path, items: Any) -> tuple[Approval, ...]:
    if not isinstance(items, list):
        raise BadProposalFile(f"{path}: 'approvals' is not a list")
    out: list[Approval] = []
    for i, item in enumerate(items):
        try:
            approval = Approval(
                admin=PublicKey.from_hex(item["admin"]), sig=bytes.fromhex(item["sig"])
            )
        except (KeyError, TypeError, ValueError, MalformedKey) as exc:
            raise BadProposalFile(
                f"{path}: approval {i} is not {{admin: key hex, sig: signature hex}}"
            ) from exc
        if any(a.admin == approval.admin for a in out):
            raise BadProposalFile(f"{path}: admin {approval.admin.hex} approves twice")
        out.append(approval)
    return tuple(out)


def _member_of(network: Network, key: PublicKey) -> str | None:
    member = network.member_by_admin(key)
    return None if member is None else member.name


# --- checks shared by sign and submit ---------------------------------------------------


def _check_against(file: ProposalFile, path: Path, ledger: InForce) -> tuple[Change, ...]:
    """The proposal's changes, once it is known to fit the ledger: same chain, based
    on the version in force, and a valid successor of it."""
    proposal = file.proposal
    if proposal.chain_id != ledger.chain_id:
        raise CommandError(
            f"{path} is a proposal for chain {proposal.chain_id.hex()[:16]}…, but "
            f"{ledger.source} serves chain {ledger.chain_id.hex()[:16]}…"
        )
    base = ledger.network
    if proposal.base_version != base.version:
        raise CommandError(
            f"{path} was proposed against membership version {proposal.base_version}, but "
            f"version {base.version} is in force (stale_config): the ledger moved on; "
            "re-propose from the current membership"
        )
    try:
        return check_update(base, proposal.network)
    except InvalidUpdate as exc:
        raise CommandError(f"{path} would be refused ({exc.code}): {exc.message}") from exc


def _admin_of(base: Network, key: SigningKey, key_file: Path) -> str:
    member = base.member_by_admin(key.public_key)
    if member is None:
        raise CommandError(
            f"{key_file} holds key {key.public_key.hex}, which is not an admin key of "
            f"membership version {base.version} (unauthorized_admin)"
        )
    return member.name


def _review(base: Network, file: ProposalFile, changes: Sequence[Change]) -> list[str]:
    """What an admin sees before approving: the change, who must approve, who did."""
    proposal = file.proposal
    need = required_approvals(base, changes)
    lines = [
        f"proposal {proposal.digest.hex()[:16]}… for chain {base.chain_name}: membership "
        f"version {proposal.base_version} -> {proposal.network.version}",
        *(f"  {c.describe()}" for c in changes),
        f"needs approvals from: {need.describe(base)}",
    ]
    orgs = approving_members(base, (a.admin for a in file.approvals))
    lines.append(f"approved so far by: {', '.join(sorted(orgs)) or 'nobody'}")
    return lines


def _echo(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(line)


# --- the commands ------------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """See and change the membership: who is in the consortium, with which keys.

    \b
    p2pledger config show --toml --out network.toml    # the membership in force
    $EDITOR network.toml
    p2pledger config propose network.toml --out change.json
    p2pledger config sign change.json --key admin.key  # each admin the policy needs
    p2pledger config submit change.json --key admin.key
    """


@config_group.command()
@click.option("--toml", "as_toml", is_flag=True, help="Print it as network.toml (to edit).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write it as network.toml to this file.",
)
@_offline_option
@_api_options
@_http_timeout_option
def show(
    as_toml: bool,
    out: Path | None,
    data_dir: Path | None,
    api: str | None,
    node_file: Path | None,
    timeout: float,
) -> None:
    """Print the membership in force: members, roles, addresses, keys, funds, limits."""
    ledger = _in_force(api, node_file, data_dir, timeout)
    network = ledger.network
    if out is not None:
        try:
            out.write_text(config.network_to_toml(network))
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from exc
        click.echo(f"wrote {out}: membership version {network.version} of {network.chain_name}")
        return
    if as_toml:
        click.echo(config.network_to_toml(network), nl=False)
        return
    _echo(_summary(ledger))


def _summary(ledger: InForce) -> list[str]:
    n = ledger.network
    limits = ", ".join(f"{k} {v}" for k, v in n.limits.to_value().items())
    lines = [
        f"membership version {n.version} of chain {n.chain_name} "
        f"(chain id {ledger.chain_id.hex()})",
        f"limits: {limits}",
    ]
    for m in n.members:
        lines.append(f"member {m.name}: {m.role.value} at {m.address}")
        lines.append(f"  node key {m.node_key.hex}")
        lines += [f"  admin    {k.hex}" for k in m.admins]
        lines += [f"  user     {k.hex}" for k in m.users]
    for f in n.funds:
        lines.append(f"fund {f.name}: issuers {', '.join(k.hex for k in f.issuers)}")
    return lines


@config_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@_offline_option
@_api_options
@_http_timeout_option
def history(
    as_json: bool, data_dir: Path | None, api: str | None, node_file: Path | None, timeout: float
) -> None:
    """List every membership version: what changed, who approved it, at which height."""
    if data_dir is None:
        versions = _client(api, node_file, timeout).config_history().get("versions")
        if not isinstance(versions, list):
            raise ApiResponseInvalid("the API's history has no list of versions")
    else:
        with _open_store(data_dir, api, node_file) as store:
            versions = [r.to_json() for r in config_history_of(store)]
    if as_json:
        click.echo(json.dumps({"versions": versions}, indent=2))
        return
    for v in versions:
        _echo(_history_lines(v))


def _history_lines(v: dict[str, Any]) -> list[str]:
    if v.get("tx_id") is None:
        head = f"version {v.get('version')} at height {v.get('height')}: the founding network"
    else:
        approvals = ", ".join(
            f"{a.get('member')} ({str(a.get('admin'))[:8]}…)" for a in v.get("approvals") or []
        )
        head = (
            f"version {v.get('version')} at height {v.get('height')} "
            f"(transaction {str(v.get('tx_id'))[:16]}…), approved by {approvals or 'nobody'}"
        )
    return [head, *(f"  {line}" for line in v.get("changes") or [])]


@config_group.command()
@click.argument("file", type=click.Path(path_type=Path))
@_offline_option
@_api_options
@_http_timeout_option
def diff(
    file: Path, data_dir: Path | None, api: str | None, node_file: Path | None, timeout: float
) -> None:
    """Compare a network.toml with the membership in force; exit 3 if they differ."""
    network = config.load_network(file)
    ledger = _in_force(api, node_file, data_dir, timeout)
    base = ledger.network
    fixed = immutable_differences(base, network)
    changes = diff_networks(base, network)
    if not fixed and not changes:
        note = "" if network.version == base.version else f" (but says version {network.version})"
        click.echo(f"{file} matches membership version {base.version} in force{note}")
        return
    click.echo(f"{file} (version {network.version}) against membership version {base.version}:")
    _echo([f"  ! {line}: this file is for another chain" for line in fixed])
    _echo([f"  {c.describe()}" for c in changes])
    if network.version != base.version:
        click.echo(
            f"note: {file} says version {network.version}, the membership in force is version "
            f"{base.version}; {_EXPORT_HINT}"
        )
    sys.exit(EXIT_DIFFERS)


@config_group.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the proposal (JSON).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing proposal file.")
@_api_options
@_http_timeout_option
def propose(
    file: Path, out: Path, force: bool, api: str | None, node_file: Path | None, timeout: float
) -> None:
    """Propose the edited network.toml FILE as the next membership version."""
    edited = config.load_network(file)
    ledger = _in_force(api, node_file, None, timeout)
    base = ledger.network
    if edited.version != base.version:
        raise CommandError(
            f"{file} says version {edited.version}, but membership version {base.version} is "
            f"in force: it was edited from another membership and would undo later changes; "
            f"{_EXPORT_HINT}, and edit that"
        )
    proposal = Proposal(
        chain_id=ledger.chain_id,
        base_version=base.version,
        network=dataclasses.replace(edited, version=base.version + 1),
    )
    try:
        changes = check_update(base, proposal.network)
    except InvalidUpdate as exc:
        raise CommandError(f"cannot propose {file} ({exc.code}): {exc.message}") from exc
    proposed = ProposalFile.new(proposal)
    proposed.save(out, base, overwrite=force)
    _echo(_review(base, proposed, changes))
    click.echo(f"wrote {out}; each admin who must approve runs: p2pledger config sign {out}")


@config_group.command()
@click.argument("proposal_file", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path),
    required=True,
    help="Your admin key (PEM, mode 0600).",
)
@click.option("--yes", is_flag=True, help="Approve without asking.")
@_api_options
@_http_timeout_option
def sign(
    proposal_file: Path,
    key_file: Path,
    yes: bool,
    api: str | None,
    node_file: Path | None,
    timeout: float,
) -> None:
    """Review a proposal and approve it with an admin key."""
    key = load_signing_key(key_file)
    file = ProposalFile.load(proposal_file)
    ledger = _in_force(api, node_file, None, timeout)
    base = ledger.network
    changes = _check_against(file, proposal_file, ledger)
    member = _admin_of(base, key, key_file)
    _echo(_review(base, file, changes))
    if file.approved_by(key.public_key):
        click.echo(f"already approved by this key ({member}); nothing to do")
        return
    if not yes:
        click.confirm(f"approve this change as an admin of {member}?", abort=True)
    signed = file.with_approval(sign_proposal(file.raw, key))
    signed.save(proposal_file, base, overwrite=True)
    click.echo(f"approved as an admin of {member}; wrote {proposal_file}")
    try:
        check_approvals(base, changes, (a.admin for a in signed.approvals))
    except InsufficientApprovals as exc:
        click.echo(f"not yet enough: {exc}")
        return
    click.echo(f"the approvals meet the policy: p2pledger config submit {proposal_file} --key …")


@config_group.command()
@click.argument("proposal_file", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path),
    required=True,
    help="Your admin key, which signs the transaction (PEM, mode 0600).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=60.0),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="Seconds to wait for the update to commit.",
)
@_api_options
def submit(
    proposal_file: Path, key_file: Path, timeout: float, api: str | None, node_file: Path | None
) -> None:
    """Send an approved proposal to the ledger and wait for its verdict."""
    key = load_signing_key(key_file)
    file = ProposalFile.load(proposal_file)
    client = _client(api, node_file, DEFAULT_HTTP_TIMEOUT_S)
    ledger = _from_api(client)
    base = ledger.network
    changes = _check_against(file, proposal_file, ledger)
    _admin_of(base, key, key_file)
    strangers = [a.admin.hex for a in file.approvals if not base.is_admin(a.admin)]
    if strangers:
        raise CommandError(
            f"{proposal_file}: the approval by {strangers[0]} is not from an admin of "
            f"membership version {base.version} (unauthorized_admin)"
        )
    check_approvals(base, changes, (a.admin for a in file.approvals))
    tx = Transaction.create(
        key,
        chain_id=ledger.chain_id,
        op=CONFIG_UPDATE_OP,
        args=update_args(file.raw, file.approvals),
        nonce=secrets.randbits(63),
        time_ms=time.time_ns() // 1_000_000,
    )
    try:
        result = client.submit(tx.raw, wait=True, timeout_s=timeout)
    except ApiRequestFailed as exc:
        if exc.code == "commit_timeout":
            raise CommandError(
                f"the update {tx.id.hex()} was accepted but not committed within {timeout:g} s; "
                "it may still commit: check with p2pledger config history"
            ) from exc
        raise
    height = result.get("height")
    if not result.get("valid"):
        raise CommittedInvalid(
            f"the ledger refused the update at height {height} ({result.get('reason')}); "
            "nothing changed"
        )
    click.echo(
        f"membership version {file.proposal.network.version} in force from height "
        f"{height + 1 if isinstance(height, int) else '?'} (transaction {tx.id.hex()})"
    )
