"""The ``p2pledger`` command line.

Every user mistake ends in a one-line message on stderr and a non-zero exit, never a
traceback: commands raise p2pledger's own errors and ``main`` turns them into
messages.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import trio

from p2pledger import __version__, config, log
from p2pledger.audit import AuditReport, audit_data_dir
from p2pledger.chain import Header, Transaction, chain_id_of
from p2pledger.chain.receipt import make_receipt, verify_receipt
from p2pledger.cli_client import register
from p2pledger.cli_config import config_group
from p2pledger.crypto import SigningKey, load_signing_key, write_signing_key
from p2pledger.errors import NotFound, P2PLedgerError
from p2pledger.ledger import Ledger
from p2pledger.node import Node
from p2pledger.node.gctune import tune_gc
from p2pledger.node.systemd import notify
from p2pledger.store import LedgerStore

EXIT_USER_ERROR = 1
EXIT_AUDIT_FAILED = 2


class UserError(P2PLedgerError):
    """A mistake in how a command was called."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p2pledger")
def cli() -> None:
    """p2pledger: a permissioned ledger for consortiums of named institutions."""


# --- keys and set-up ----------------------------------------------------------------


@cli.command()
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to write the private key (PEM, mode 0600).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def keygen(out: Path, force: bool) -> None:
    """Create an Ed25519 key; print its public key for network.toml."""
    key = SigningKey.generate()
    write_signing_key(out, key, overwrite=force)
    pub = out.with_name(out.name + ".pub")
    pub.write_text(key.public_key.to_pem())
    click.echo(key.public_key.hex)
    click.echo(f"private key: {out} (mode 0600); public key PEM: {pub}", err=True)


@cli.command()
@click.option(
    "--network",
    "network_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The consortium's network.toml.",
)
@click.option("--name", required=True, help="This member's name in network.toml.")
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path),
    required=True,
    help="This member's node key (from p2pledger keygen).",
)
@click.option(
    "--dir",
    "node_dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to write node.toml and the data directory.",
)
@click.option(
    "--listen",
    default=None,
    help="Member transport address to listen on (default: the member's address).",
)
@click.option(
    "--api", default="127.0.0.1:8401", show_default=True, help="Address of this member's HTTP API."
)
@click.option(
    "--join",
    is_flag=True,
    help="A member joining a running chain: NAME need not be in the founding network file; "
    "it is let in once a membership update names it (see docs/membership.md). Needs --listen.",
)
@click.option(
    "--next-key",
    "next_key_file",
    type=click.Path(path_type=Path),
    default=None,
    help="A second node key the daemon switches to when a membership update names it.",
)
def init(
    network_file: Path,
    name: str,
    key_file: Path,
    node_dir: Path,
    listen: str | None,
    api: str,
    join: bool,
    next_key_file: Path | None,
) -> None:
    """Set up a member: write node.toml and a data directory holding genesis."""
    network = config.load_network(network_file)
    member = network.member(name)
    key = load_signing_key(key_file)
    if next_key_file is not None:
        load_signing_key(next_key_file)  # readable, a key, and private enough
    if join:
        if member is not None:
            raise UserError(f"{name!r} is already a member in {network_file}; leave out --join")
        if listen is None:
            raise UserError("a joining member needs --listen host:port (no address to default to)")
        address = listen
    else:
        if member is None:
            names = ", ".join(m.name for m in network.members)
            raise UserError(
                f"{name!r} is not a member of {network_file} (members: {names}); "
                "a member joining a running chain uses --join"
            )
        if key.public_key != member.node_key:
            raise UserError(
                f"{key_file} holds key {key.public_key.hex}, but {network_file} gives {name} "
                f"the node_key {member.node_key.hex}"
            )
        address = listen or member.address
    node_dir.mkdir(parents=True, exist_ok=True)
    node_file = node_dir / "node.toml"
    if node_file.exists():
        raise UserError(f"{node_file} already exists; remove it or choose another --dir")
    node = config.NodeConfig(
        name=name,
        network=network_file.resolve(),
        key_file=key_file.resolve(),
        data_dir=(node_dir / "data").resolve(),
        listen=address,
        api=api,
        next_key_file=next_key_file.resolve() if next_key_file is not None else None,
        join=join,
    )
    with Ledger.create(node.data_dir, network) as ledger:
        chain_id = ledger.chain_id
    node_file.write_text(config.node_to_toml(node, relative_to=node_dir.resolve()))
    click.echo(f"wrote {node_file}; chain {network.chain_name} id {chain_id.hex()}")


# --- the daemon -------------------------------------------------------------------


@cli.command()
@click.option(
    "--config",
    "node_file",
    type=click.Path(path_type=Path),
    required=True,
    help="This member's node.toml.",
)
def run(node_file: Path) -> None:
    """Run this member's daemon until SIGTERM or SIGINT (then stop gracefully)."""
    node_config = config.load_node(node_file)
    network = config.load_network(node_config.network)
    config.check_node_against_network(node_config, network, str(node_file))
    log.configure(node_config.log.format.value, node_config.log.level.value)
    log.bind(member=node_config.name)
    node = Node(node_config, network=network, config_file=node_file)
    log.add_live_fields(node.log_fields)
    tune_gc()
    trio.run(_serve_until_signalled, node)


async def _serve_until_signalled(node: Node) -> None:
    try:
        await _serve(node)
    except* P2PLedgerError as group:
        # a startup failure (a wrong key, a port in use): one line, not a traceback
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def _serve(node: Node) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            notify("READY=1")

            async def stop_on_signal() -> None:
                async for _ in signals:
                    notify("STOPPING=1")
                    node.stop()
                    return

            nursery.start_soon(stop_on_signal)
            await node.wait_stopped()
            nursery.cancel_scope.cancel()


# --- offline inspection -------------------------------------------------------------


def _data_dir_option(fn: Any) -> Any:
    fn = click.option(
        "--config",
        "node_file",
        type=click.Path(path_type=Path),
        help="A node.toml; its data directory is used.",
    )(fn)
    fn = click.option(
        "--data-dir", type=click.Path(path_type=Path), help="A member's data directory."
    )(fn)
    return fn


def _resolve_data_dir(data_dir: Path | None, node_file: Path | None) -> Path:
    if data_dir is not None and node_file is not None:
        raise UserError("give --data-dir or --config, not both")
    if data_dir is not None:
        return data_dir
    if node_file is not None:
        return config.load_node(node_file).data_dir
    default = Path("node.toml")
    if default.exists():
        return config.load_node(default).data_dir
    raise UserError("say which ledger: --data-dir DIR or --config node.toml")


@cli.command()
@click.argument("data_dir", type=click.Path(path_type=Path), required=False)
@click.option(
    "--config",
    "node_file",
    type=click.Path(path_type=Path),
    help="A node.toml; its data directory is audited.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--workers", type=int, default=None, help="Signature-checking threads.")
def audit(
    data_dir: Path | None, node_file: Path | None, as_json: bool, workers: int | None
) -> None:
    """Re-verify a ledger from genesis, offline; exit 2 naming the first bad block."""
    report = audit_data_dir(_resolve_data_dir(data_dir, node_file), workers=workers)
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2))
    else:
        _print_report(report)
    if report.error is not None:
        click.echo(f"audit FAILED at {report.error}", err=True)
        sys.exit(EXIT_AUDIT_FAILED)


def _report_json(r: AuditReport) -> dict[str, Any]:
    return {
        "ok": r.ok,
        "chain_name": r.chain_name,
        "chain_id": r.chain_id.hex(),
        "height": r.height,
        "blocks": r.blocks,
        "transactions": r.transactions,
        "valid": r.valid,
        "invalid": r.invalid,
        "tip_hash": r.tip_hash.hex(),
        "state_root": r.state_root.hex(),
        "membership_version": r.membership_version,
        "seconds": round(r.seconds, 3),
        "error": None
        if r.error is None
        else {"height": r.error.height, "reason": r.error.reason, "detail": r.error.detail},
    }


def _print_report(r: AuditReport) -> None:
    verdict = "OK" if r.ok else "FAILED"
    rate = r.transactions / r.seconds if r.seconds > 0 else 0.0
    click.echo(f"audit {verdict}: chain {r.chain_name} ({r.chain_id.hex()[:16]}…)")
    click.echo(
        f"  blocks 0..{r.height} checked: {r.blocks}, transactions: {r.transactions} "
        f"({r.valid} valid, {r.invalid} invalid)"
    )
    click.echo(f"  tip {r.tip_hash.hex()}  state root {r.state_root.hex()[:16]}…")
    click.echo(f"  membership version {r.membership_version} in force at the tip")
    click.echo(f"  {r.seconds:.2f} s, {rate:,.0f} transactions/s")


@cli.command()
@click.argument("height")
@_data_dir_option
@click.option("--txs", is_flag=True, help="Include the transactions' bytes.")
def block(height: str, data_dir: Path | None, node_file: Path | None, txs: bool) -> None:
    """Print block HEIGHT (or 'latest') as JSON."""
    with LedgerStore.open(_resolve_data_dir(data_dir, node_file), readonly=True) as store:
        tip = store.tip()
        if tip is None:
            raise NotFound("the ledger is empty")
        h = tip[0] if height == "latest" else _parse_height(height)
        click.echo(json.dumps(store.block(h).to_json(with_txs=txs), indent=2))


@cli.command()
@click.argument("data_dir", required=False, type=click.Path(path_type=Path))
@click.option("--config", "node_file", type=click.Path(path_type=Path), help="A node.toml.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write here instead of standard output.",
)
@click.option("--from", "start", type=click.IntRange(min=0), default=0, help="First height.")
def export(data_dir: Path | None, node_file: Path | None, out: Path | None, start: int) -> None:
    """Write the ledger as JSON lines: one block a line, from height 0 (or --from) to the
    tip, each as ``p2pledger block`` prints it. Safe beside a running daemon."""
    with LedgerStore.open(_resolve_data_dir(data_dir, node_file), readonly=True) as store:
        tip = store.tip()
        if tip is None:
            raise NotFound("the ledger is empty")
        lines = (
            json.dumps(b.to_json(), sort_keys=True) + "\n" for b in store.blocks(start, tip[0] + 1)
        )
        if out is None:
            for line in lines:
                click.echo(line, nl=False)
            return
        tmp = out.with_name(out.name + ".part")
        try:
            with tmp.open("w") as fh:
                fh.writelines(lines)
            tmp.replace(out)
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror or exc}") from exc
    click.echo(f"exported heights {start}..{tip[0]} to {out}", err=True)


@cli.command()
@click.argument("tx_id")
@_data_dir_option
def tx(tx_id: str, data_dir: Path | None, node_file: Path | None) -> None:
    """Print a committed transaction, its block and its verdict, as JSON."""
    with LedgerStore.open(_resolve_data_dir(data_dir, node_file), readonly=True) as store:
        height, index = _locate(store, tx_id)
        b = store.block(height)
        out = Transaction.decode(b.txs[index]).to_json()
        out.update(
            {
                "height": height,
                "index": index,
                "block_hash": b.hash.hex(),
                "valid": b.results[index].valid,
                "reason": b.results[index].reason,
            }
        )
        click.echo(json.dumps(out, indent=2))


@cli.command()
@click.argument("tx_id")
@_data_dir_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the receipt here (default: TXID.receipt.json).",
)
def prove(tx_id: str, data_dir: Path | None, node_file: Path | None, out: Path | None) -> None:
    """Write an inclusion receipt for a committed transaction."""
    with LedgerStore.open(_resolve_data_dir(data_dir, node_file), readonly=True) as store:
        height, index = _locate(store, tx_id)
        receipt = make_receipt(store.block(height), index)
    out = out or Path(f"{tx_id}.receipt.json")
    out.write_text(json.dumps(receipt, indent=2) + "\n")
    click.echo(f"wrote {out}: transaction {tx_id[:16]}… at height {height}, index {index}")


@cli.command("verify-receipt")
@click.argument("receipt_file", type=click.Path(path_type=Path))
@click.option(
    "--network",
    "network_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The founding network.toml of the chain the receipt claims (it fixes the chain id).",
)
@click.option(
    "--membership",
    "membership_file",
    type=click.Path(path_type=Path),
    default=None,
    help="The membership in force at the receipt's block, when it is not the founding one "
    "(a network.toml of that version, e.g. from `p2pledger config show --toml`).",
)
def verify_receipt_cmd(
    receipt_file: Path, network_file: Path, membership_file: Path | None
) -> None:
    """Check a receipt offline against a network description."""
    network = config.load_network(network_file)
    chain_id = chain_id_of(network)
    try:
        receipt = json.loads(receipt_file.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {receipt_file}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{receipt_file} is not JSON: {exc}") from exc
    in_force = config.load_network(membership_file) if membership_file else network
    claimed = _receipt_membership_version(receipt)
    if claimed is not None and claimed != in_force.version:
        source = membership_file or network_file
        raise UserError(
            f"the receipt's block was proposed under membership version {claimed}, and "
            f"{source} is version {in_force.version}: give that version's network with "
            "--membership (p2pledger config history lists them; config show --toml prints one)"
        )
    if in_force.chain_name != network.chain_name:
        raise UserError(f"{membership_file} is a membership of another chain")
    v = verify_receipt(receipt, in_force, chain_id)
    verdict = "valid" if v.result.valid else f"invalid ({v.result.reason})"
    click.echo(f"receipt OK: transaction {v.tx.id.hex()} ({v.tx.op}, {verdict})")
    click.echo(
        f"  in block {v.header.height} ({v.block_hash.hex()[:16]}…) of chain "
        f"{network.chain_name}, proposed by {v.proposer}, time {v.header.time_ms} ms"
    )


def _receipt_membership_version(receipt: Any) -> int | None:
    """The membership version the receipt's header claims (None: unreadable here; the
    full check reports it)."""
    try:
        header = Header.decode(bytes.fromhex(receipt["block"]["header"]))
    except (KeyError, TypeError, ValueError, P2PLedgerError):
        return None
    return header.membership_version


def _parse_height(text: str) -> int:
    try:
        h = int(text)
    except ValueError:
        raise UserError(f"{text!r} is not a block height (a number, or 'latest')") from None
    if h < 0:
        raise UserError("a block height is not negative")
    return h


def _locate(store: LedgerStore, tx_id: str) -> tuple[int, int]:
    try:
        raw = bytes.fromhex(tx_id)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise UserError(f"{tx_id!r} is not a transaction id (64 hex digits)")
    where = store.tx_location(raw)
    if where is None:
        raise NotFound(f"transaction {tx_id} is not in this ledger")
    return where


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: run the command, turning p2pledger's errors into one-line messages."""
    try:
        cli.main(args=argv, prog_name="p2pledger", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except P2PLedgerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(0)


# The online commands (submit, status, balance, anchor, verify-anchor), clients of a
# running member's HTTP API.
register(cli)
# ``p2pledger config ...``: the membership, and changing it (docs/membership.md).
cli.add_command(config_group)
