"""The command line as a client of a running member's API.

``register(cli)`` adds ``submit``, ``status``, ``balance``, ``anchor`` and
``verify-anchor``, and gives ``tx`` and ``block`` an online mode: with ``--api``
(or when neither ``--data-dir`` nor ``--config`` is given and there is no
./node.toml) they ask the API; otherwise they read the data directory as before.

Every command finds the API from ``--api URL``, else from the ``api`` of
``--config node.toml``, else of ./node.toml, else http://127.0.0.1:8401. Mistakes
and refusals are p2pledger errors, which ``p2pledger.cli.main`` prints as one line.

Transaction arguments are ``--arg NAME=VALUE``; the CLI knows the types of the
built-in operations (amounts are integers, accounts and digests hex), and a type can
be given for any other: ``--arg NAME:int=5``, ``NAME:hex=ab01``, ``NAME:bool=true``,
``NAME:str=text``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import click

from p2pledger import config
from p2pledger.chain import Transaction, chain_id_of
from p2pledger.chain.receipt import verify_receipt
from p2pledger.client import DEFAULT_API_URL, ApiClient, ApiRequestFailed
from p2pledger.crypto import SigningKey, load_signing_key
from p2pledger.errors import CodecError, LocalError, RemoteError
from p2pledger.membership import Network
from p2pledger.state.args import MAX_TEXT

__all__ = ["CommandError", "CommittedInvalid", "api_url_for", "build_args", "register"]

ANCHOR_OP: Final = "notary.anchor"
DEFAULT_HTTP_TIMEOUT_S: Final = 30.0
DEFAULT_WAIT_S: Final = 10.0
#: The argument types of the built-in operations ("hex" values are bytes).
OP_ARGS: Final[Mapping[str, Mapping[str, str]]] = {
    "fund.issue": {"fund": "str", "to": "hex", "amount": "int", "memo": "str"},
    "fund.transfer": {"fund": "str", "from": "hex", "to": "hex", "amount": "int", "memo": "str"},
    ANCHOR_OP: {"digest": "hex", "description": "str"},
}
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
_ARG_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_CHUNK: Final = 1 << 20


class CommandError(LocalError):
    """A command was called wrongly, or cannot do what it was asked."""


class CommittedInvalid(RemoteError):
    """The transaction was committed, and the ledger judged it invalid."""


class _ClientCommand(click.Command):
    """A command added by ``register`` (so registering twice changes nothing)."""


# --- finding the API ------------------------------------------------------------------


def _api_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_HTTP_TIMEOUT_S,
        show_default=True,
        help="Seconds to wait for the API to answer.",
    )(fn)
    fn = click.option(
        "--config",
        "node_file",
        type=click.Path(path_type=Path),
        help="A node.toml; its api address is used.",
    )(fn)
    fn = click.option(
        "--api", default=None, help=f"The member's API URL (default {DEFAULT_API_URL})."
    )(fn)
    return fn


def api_url_for(api: str | None, node_file: Path | None) -> str:
    """The API URL: ``api``, else the ``api`` of ``node_file``, else of ./node.toml,
    else the default."""
    if api is not None:
        return api
    if node_file is not None:
        return config.load_node(node_file).api
    default = Path("node.toml")
    if default.exists():
        return config.load_node(default).api
    return DEFAULT_API_URL


def _client(api: str | None, node_file: Path | None, timeout: float) -> ApiClient:
    return ApiClient(api_url_for(api, node_file), timeout_s=timeout)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


# --- transactions -------------------------------------------------------------------


def build_args(op: str, texts: Sequence[str], signer: bytes) -> dict[str, Any]:
    """The ``args`` map of an ``op`` transaction from ``--arg NAME[:TYPE]=VALUE`` texts.

    For the built-in operations, names are checked and missing ``memo`` (and a
    transfer's ``from``: the signer's own account) are filled in.
    """
    schema = OP_ARGS.get(op)
    args: dict[str, Any] = {}
    for text in texts:
        name, kind, value = _split_arg(text)
        if name in args:
            raise CommandError(f"--arg {name} is given more than once")
        if schema is not None and name not in schema:
            raise CommandError(
                f"{op} takes no argument {name!r}; its arguments are: {', '.join(schema)}"
            )
        args[name] = _convert(kind or (schema or {}).get(name, "str"), name, value)
    if op in {"fund.issue", "fund.transfer"}:
        args.setdefault("memo", "")
    if op == "fund.transfer":
        args.setdefault("from", signer)
    if schema is not None:
        missing = [name for name in schema if name not in args]
        if missing:
            needed = " ".join(f"--arg {name}=…" for name in missing)
            raise CommandError(f"{op} needs {needed}")
    return args


def _split_arg(text: str) -> tuple[str, str | None, str]:
    left, eq, value = text.partition("=")
    name, colon, kind = left.partition(":")
    if not eq or not _ARG_NAME.fullmatch(name) or (colon and not kind):
        raise CommandError(f"--arg {text!r}: write NAME=VALUE or NAME:TYPE=VALUE")
    return name, kind if colon else None, value


def _convert(kind: str, name: str, value: str) -> Any:
    if kind == "str":
        return value
    if kind == "int":
        try:
            return int(value, 10)
        except ValueError:
            raise CommandError(f"--arg {name}: {value!r} is not an integer") from None
    if kind == "hex":
        if not _HEX.fullmatch(value):
            raise CommandError(f"--arg {name}: {value!r} is not hex (an even number of digits)")
        return bytes.fromhex(value)
    if kind == "bool":
        if value.lower() not in {"true", "false"}:
            raise CommandError(f"--arg {name}: {value!r} is not true or false")
        return value.lower() == "true"
    raise CommandError(f"--arg {name}: unknown type {kind!r} (use str, int, hex or bool)")


def _sign(client: ApiClient, key: SigningKey, op: str, args: dict[str, Any]) -> Transaction:
    """A transaction for the member's chain, with a random nonce and the current time."""
    try:
        return Transaction.create(
            key,
            chain_id=client.chain_id(),
            op=op,
            args=args,
            nonce=secrets.randbits(63),
            time_ms=time.time_ns() // 1_000_000,
        )
    except CodecError as exc:
        raise CommandError(f"cannot encode the transaction: {exc}") from exc


def _send(client: ApiClient, tx: Transaction, *, wait: bool, wait_s: float) -> dict[str, Any]:
    try:
        return client.submit(tx.raw, wait=wait, timeout_s=wait_s)
    except ApiRequestFailed as exc:
        if exc.code == "commit_timeout":
            raise CommandError(
                f"transaction {tx.id.hex()} was accepted but not committed within "
                f"{wait_s:g} s; it may still commit: check with p2pledger tx {tx.id.hex()}"
            ) from exc
        raise


def _verdict(result: Mapping[str, Any]) -> str:
    return "valid" if result.get("valid") else f"invalid ({result.get('reason')})"


def _check_committed_valid(result: Mapping[str, Any]) -> None:
    if result.get("status") == "committed" and not result.get("valid"):
        raise CommittedInvalid(
            f"transaction {result.get('id')} was committed at height {result.get('height')} "
            f"as invalid: {result.get('reason')}"
        )


@click.command(cls=_ClientCommand)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The user key that signs (PEM, mode 0600).",
)
@click.option("--op", required=True, help="The operation, e.g. fund.transfer.")
@click.option(
    "--arg",
    "arg_texts",
    multiple=True,
    metavar="NAME[:TYPE]=VALUE",
    help="An argument of the operation; repeat for each. TYPE: str, int, hex, bool.",
)
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until it is committed."
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0.1, max=60.0),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="Seconds to wait for the commit.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@_api_options
def submit(
    key_file: Path,
    op: str,
    arg_texts: tuple[str, ...],
    wait: bool,
    wait_timeout: float,
    as_json: bool,
    api: str | None,
    node_file: Path | None,
    timeout: float,
) -> None:
    """Sign a transaction with a user key and submit it to a member.

    The CLI knows the argument types of fund.issue, fund.transfer and notary.anchor
    (amounts are integers; accounts and digests hex; a transfer is from the signer's
    account unless --arg from=… says otherwise; memo defaults to empty). For other
    operations, give a type: --arg NAME:int=5, NAME:hex=ab01, NAME:bool=true.

    \b
    Example:
      p2pledger submit --key alice.key --op fund.transfer \\
        --arg fund=relief --arg to=<account hex> --arg amount=10 --arg memo=rent
    """
    key = load_signing_key(key_file)
    args = build_args(op, arg_texts, key.public_key.raw)
    client = _client(api, node_file, timeout)
    tx = _sign(client, key, op, args)
    result = _send(client, tx, wait=wait, wait_s=wait_timeout)
    if as_json:
        _echo_json(result)
    elif result.get("status") == "committed":
        click.echo(
            f"committed {result.get('id')} at height {result.get('height')}, "
            f"index {result.get('index')}: {_verdict(result)}"
        )
    else:
        click.echo(f"accepted {result.get('id')}: pending")
    _check_committed_valid(result)


# --- reading ------------------------------------------------------------------------


@click.command(cls=_ClientCommand)
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@_api_options
def status(as_json: bool, api: str | None, node_file: Path | None, timeout: float) -> None:
    """Show a running member's view: role, height, term, leader and peers."""
    answer = _client(api, node_file, timeout).status()
    if as_json:
        _echo_json(answer)
        return
    click.echo(
        f"member {answer.get('member')}: {answer.get('role')}, term {answer.get('term')}, "
        f"{'healthy' if answer.get('healthy') else 'NOT healthy'}"
    )
    click.echo(
        f"chain {answer.get('chain_name')} ({answer.get('chain_id')}), "
        f"height {answer.get('height')}"
    )
    click.echo(f"leader: {answer.get('leader') or 'none known'}")
    for peer in answer.get("peers") or []:
        state = "connected" if peer.get("connected") else "disconnected"
        lag = peer.get("lag")
        click.echo(f"  peer {peer.get('name')}: {state}" + ("" if lag is None else f", lag {lag}"))


def _tx_id(text: str) -> bytes:
    if len(text) != 64 or not _HEX.fullmatch(text):
        raise CommandError(f"{text!r} is not a transaction id (64 hex digits)")
    return bytes.fromhex(text)


def _height(text: str) -> int | None:
    if text == "latest":
        return None
    if not text.isdigit():
        raise CommandError(f"{text!r} is not a block height (a number, or 'latest')")
    return int(text)


@click.command("tx", cls=_ClientCommand)
@click.argument("tx_id")
@_api_options
def tx_online(tx_id: str, api: str | None, node_file: Path | None, timeout: float) -> None:
    """Print a transaction's status as JSON; once committed, its verdict and receipt."""
    _echo_json(_client(api, node_file, timeout).transaction(_tx_id(tx_id)))


@click.command("block", cls=_ClientCommand)
@click.argument("height")
@click.option("--txs", is_flag=True, help="Include the transactions' bytes.")
@_api_options
def block_online(
    height: str, txs: bool, api: str | None, node_file: Path | None, timeout: float
) -> None:
    """Print block HEIGHT (or 'latest') as JSON."""
    _echo_json(_client(api, node_file, timeout).block(_height(height), txs=txs))


@click.command(cls=_ClientCommand)
@click.argument("fund")
@click.argument("account")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@_api_options
def balance(
    fund: str, account: str, as_json: bool, api: str | None, node_file: Path | None, timeout: float
) -> None:
    """Show the balance of ACCOUNT (a user key, hex) in FUND, and where each unit came from."""
    if len(account) != 64 or not _HEX.fullmatch(account):
        raise CommandError(f"{account!r} is not an account (a user key: 64 hex digits)")
    answer = _client(api, node_file, timeout).balance(fund, bytes.fromhex(account))
    if as_json:
        _echo_json(answer)
        return
    lots = answer.get("lots") or []
    click.echo(
        f"fund {answer.get('fund')}, account {answer.get('account')}: "
        f"balance {answer.get('balance')} in {len(lots)} lot{'s' if len(lots) != 1 else ''}"
    )
    for number, lot in enumerate(lots, 1):
        click.echo(
            f"  lot {number}: {lot.get('amount')} from issue {lot.get('origin')} "
            f"(height {lot.get('origin_height')})"
        )
        for hop in lot.get("path") or []:
            click.echo(f"         via transfer {hop.get('tx_id')} (height {hop.get('height')})")


# --- notary -------------------------------------------------------------------------


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.digest()


def _time_text(time_ms: Any) -> str:
    if not isinstance(time_ms, int):
        return "an unknown time"
    moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record_lines(record: Mapping[str, Any]) -> list[str]:
    return [
        f"anchored at height {record.get('height')}, {_time_text(record.get('time_ms'))} "
        f"(block time), by user {record.get('signer')}",
        f"  transaction {record.get('tx_id')}",
        f"  description {json.dumps(record.get('description'))}",
    ]


@click.command(cls=_ClientCommand)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--description", required=True, help=f"What the file is (≤ {MAX_TEXT} chars).")
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The user key that signs (PEM, mode 0600).",
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0.1, max=60.0),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help="Seconds to wait for the commit.",
)
@_api_options
def anchor(
    file: Path,
    description: str,
    key_file: Path,
    wait_timeout: float,
    api: str | None,
    node_file: Path | None,
    timeout: float,
) -> None:
    """Anchor FILE's SHA-256 digest on the ledger, proving it existed from now on."""
    if len(description) > MAX_TEXT:
        raise CommandError(f"the description is longer than {MAX_TEXT} characters")
    digest = _file_digest(file)
    key = load_signing_key(key_file)
    client = _client(api, node_file, timeout)
    tx = _sign(client, key, ANCHOR_OP, {"digest": digest, "description": description})
    result = _send(client, tx, wait=True, wait_s=wait_timeout)
    answer = client.anchor(digest)
    record = answer.get("record") if answer else None
    if result.get("reason") == "already_anchored" and isinstance(record, dict):
        raise CommittedInvalid(
            f"{file} (sha256 {digest.hex()}) was already anchored at height "
            f"{record.get('height')}, {_time_text(record.get('time_ms'))}, in transaction "
            f"{record.get('tx_id')}; the first anchoring stands"
        )
    _check_committed_valid(result)
    click.echo(f"{file}: sha256 {digest.hex()}")
    if isinstance(record, dict):
        for line in _record_lines(record):
            click.echo(line)


@click.command("verify-anchor", cls=_ClientCommand)
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--network",
    "network_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Check the receipt offline against this network.toml (default: --config's).",
)
@click.option(
    "--receipt-out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the receipt (JSON) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print record and receipt as JSON.")
@_api_options
def verify_anchor(
    file: Path,
    network_file: Path | None,
    receipt_out: Path | None,
    as_json: bool,
    api: str | None,
    node_file: Path | None,
    timeout: float,
) -> None:
    """Hash FILE locally and show the ledger's record of it, with its receipt."""
    digest = _file_digest(file)
    answer = _client(api, node_file, timeout).anchor(digest)
    if answer is None:
        raise CommandError(f"{file} (sha256 {digest.hex()}) is not anchored on this ledger")
    record, receipt = answer.get("record"), answer.get("receipt")
    if not isinstance(record, dict) or not isinstance(receipt, dict):
        raise CommittedInvalid("the API's anchor answer has no record or no receipt")
    _check_receipt_is_of(receipt, record, digest)
    network = _network_for(network_file, node_file)
    proof = None if network is None else _verify(receipt, record, network)
    if receipt_out is not None:
        receipt_out.write_text(json.dumps(receipt, indent=2) + "\n")
    if as_json:
        _echo_json(
            {"file": str(file), "digest": digest.hex(), **answer, "verified": proof is not None}
        )
        return
    click.echo(f"{file}: sha256 {digest.hex()}")
    for line in _record_lines(record):
        click.echo(line)
    if proof is not None:
        click.echo(f"receipt verified: {proof}")
    else:
        click.echo(
            "receipt not verified offline: pass --network network.toml (or --config node.toml)"
        )
    if receipt_out is not None:
        click.echo(f"receipt written to {receipt_out}")


def _check_receipt_is_of(
    receipt: Mapping[str, Any], record: Mapping[str, Any], digest: bytes
) -> None:
    """The receipt's transaction is the anchoring the record names, of this digest."""
    try:
        tx = Transaction.decode(bytes.fromhex(receipt["tx"]["raw"]))
    except (KeyError, TypeError, ValueError, RemoteError) as exc:
        raise CommittedInvalid(f"the receipt holds no readable transaction: {exc}") from exc
    if tx.id.hex() != record.get("tx_id") or tx.op != ANCHOR_OP or tx.args.get("digest") != digest:
        raise CommittedInvalid("the receipt is not of the transaction that anchored this digest")


def _network_for(network_file: Path | None, node_file: Path | None) -> Network | None:
    if network_file is not None:
        return config.load_network(network_file)
    if node_file is not None:
        return config.load_network(config.load_node(node_file).network)
    return None


def _verify(receipt: Mapping[str, Any], record: Mapping[str, Any], network: Network) -> str:
    checked = verify_receipt(receipt, network, chain_id_of(network))
    if checked.header.height != record.get("height"):
        raise CommittedInvalid("the receipt's block is not at the record's height")
    return (
        f"in block {checked.header.height} ({checked.block_hash.hex()}) of chain "
        f"{network.chain_name}, proposed by {checked.proposer}"
    )


# --- registering ----------------------------------------------------------------------

_NEW: Final = (submit, status, balance, anchor, verify_anchor)
_ONLINE_VARIANTS: Final = (tx_online, block_online)


def register(cli: click.Group) -> None:
    """Add the client commands to ``cli``; give its offline ``tx`` and ``block`` an
    online mode. Registering twice changes nothing."""
    for command in _NEW:
        cli.add_command(command)
    for online in _ONLINE_VARIANTS:
        assert online.name is not None
        existing = cli.commands.get(online.name)
        if isinstance(existing, _ClientCommand):
            continue
        cli.add_command(online if existing is None else _merge(existing, online))


def _merge(offline: click.Command, online: click.Command) -> click.Command:
    """One command: ``online`` with --api (or when no local ledger is named), else
    ``offline`` exactly as it was."""
    assert offline.callback is not None and online.callback is not None
    offline_call, online_call = offline.callback, online.callback
    offline_names = [p.name for p in offline.params if p.name]
    online_names = [p.name for p in online.params if p.name]
    extra = [p for p in online.params if p.name not in offline_names]

    def callback(**kwargs: Any) -> Any:
        if _use_api(kwargs.get("api"), kwargs.get("data_dir"), kwargs.get("node_file")):
            return online_call(**{name: kwargs.get(name) for name in online_names})
        return offline_call(**{name: kwargs.get(name) for name in offline_names})

    help_text = (
        f"{offline.help or ''}\n\nReads the data directory (--data-dir, --config, or "
        "./node.toml); with --api URL, or when there is none, asks a running member's API."
    )
    return _ClientCommand(
        offline.name,
        params=[*offline.params, *extra],
        callback=callback,
        help=help_text,
        short_help=offline.short_help,
    )


def _use_api(api: str | None, data_dir: Path | None, node_file: Path | None) -> bool:
    if api is not None and data_dir is not None:
        raise CommandError("give --api or --data-dir, not both")
    if api is not None:
        return True
    if data_dir is not None or node_file is not None:
        return False
    return not Path("node.toml").exists()
