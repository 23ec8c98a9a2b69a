"""``make demo``: a one-member ledger from keys to a verified receipt, in a temp dir.

It runs the real commands a new institution would (keygen, init, audit, prove,
verify-receipt) and writes blocks through the ledger's own API: a relief fund is
issued, passed on to families, a document is anchored, and two mistakes (an
overdraft, a second anchor of the same document) are recorded as invalid. Later
issues turn this into a live multi-member network.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from p2pledger import config
from p2pledger.chain import Transaction
from p2pledger.client import ApiClient
from p2pledger.crypto import SigningKey, load_signing_key, write_signing_key
from p2pledger.errors import P2PLedgerError
from p2pledger.ledger import Ledger
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role
from p2pledger.state import anchor, balance, provenance

console = Console(soft_wrap=True)


def run(*args: str, cwd: Path) -> str:
    """Run ``p2pledger ARGS`` as a user would, show it, and return its output."""
    console.print(f"[bold cyan]$ p2pledger {' '.join(args)}[/]")
    proc = subprocess.run(
        [sys.executable, "-m", "p2pledger", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        console.print(out, highlight=False)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `p2pledger {' '.join(args)}` failed ({proc.returncode})")
    return proc.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="p2pledger-demo-") as tmp:
        demo(Path(tmp) / "offline")
        live(Path(tmp) / "live")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_healthy(apis: list[str], *, deadline_s: float) -> None:
    """Poll each member's /health until all answer 200, or give up."""
    deadline = time.monotonic() + deadline_s
    pending = list(apis)
    while pending:
        try:
            if ApiClient(pending[0], timeout_s=2).healthy():
                pending.pop(0)
                continue
        except P2PLedgerError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {pending[0]} did not become healthy in {deadline_s:g} s")
        time.sleep(0.1)


def live(root: Path) -> None:
    """Three members as real daemons: submit through the CLI, see it on all three."""
    root.mkdir(parents=True)
    console.rule("three members running p2pledger run, on 127.0.0.1")
    names = ["central-bank", "relief-agency", "high-court"]
    ports = free_ports(6)
    node_keys = []
    for name in names:
        run("keygen", "--out", f"{name}.key", cwd=root)
        node_keys.append(load_signing_key(root / f"{name}.key"))
    agency, family = SigningKey.generate(), SigningKey.generate()
    for key, file in ((agency, "agency.key"), (family, "family.key")):
        write_signing_key(root / file, key)
    network = Network(
        chain_name="relief-consortium",
        genesis_time_ms=int(time.time() * 1000),
        limits=BlockLimits(batch_timeout_ms=100),
        members=tuple(
            Member(
                name=name,
                node_key=node_keys[i].public_key,
                address=f"127.0.0.1:{ports[i]}",
                role=Role.VOTER,
                users=(agency.public_key, family.public_key) if i == 1 else (),
            )
            for i, name in enumerate(names)
        ),
        funds=(Fund(name="relief-2026", issuers=(agency.public_key,)),),
    )
    (root / "network.toml").write_text(config.network_to_toml(network))
    for i, name in enumerate(names):
        run(
            "init",
            "--network",
            "network.toml",
            "--name",
            name,
            "--key",
            f"{name}.key",
            "--dir",
            name,
            "--api",
            f"127.0.0.1:{ports[3 + i]}",
            cwd=root,
        )
    apis = [f"http://127.0.0.1:{ports[3 + i]}" for i in range(3)]
    procs = []
    try:
        for name in names:
            log = (root / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "p2pledger", "run", "--config", f"{name}/node.toml"],
                    cwd=root,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        console.print("started 3 daemons; waiting for a leader…")
        wait_healthy(apis, deadline_s=30)
        run("status", "--api", apis[0], cwd=root)
        family_hex = family.public_key.hex
        run(
            "submit",
            "--api",
            apis[2],
            "--key",
            "agency.key",
            "--op",
            "fund.issue",
            "--arg",
            "fund=relief-2026",
            "--arg",
            f"to={family_hex}",
            "--arg",
            "amount=500",
            "--arg",
            "memo=allocation",
            cwd=root,
        )
        (root / "invoice.txt").write_text("Invoice 2026-0042: 500 units of emergency supplies.\n")
        run(
            "anchor",
            "invoice.txt",
            "--description",
            "invoice 2026-0042",
            "--key",
            "agency.key",
            "--api",
            apis[1],
            cwd=root,
        )
        for api in apis:
            run("balance", "relief-2026", family_hex, "--api", api, cwd=root)
        run("verify-anchor", "invoice.txt", "--api", apis[0], "--network", "network.toml", cwd=root)
        heights = [ApiClient(a).status()["height"] for a in apis]
        hashes = {ApiClient(a).block(min(heights))["hash"] for a in apis}
        assert len(hashes) == 1, "members disagree"
        console.print(f"all three members hold block {min(heights)} with hash {hashes.pop()}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    for name in names:
        run("audit", f"{name}/data", cwd=root)
    console.rule("[green]live demo complete: 3 members agree, every ledger audits clean")


def demo(root: Path) -> None:
    root.mkdir(parents=True)
    console.rule("p2pledger demo: one member, a relief fund and a notarized document")
    node_pub = run("keygen", "--out", "node.key", cwd=root).strip()
    admin = SigningKey.generate()
    agency, family_a, family_b = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    network = Network(
        chain_name="relief-demo",
        genesis_time_ms=int(time.time() * 1000),
        limits=BlockLimits(),
        members=(
            Member(
                name="civic-bank",
                node_key=load_signing_key(root / "node.key").public_key,
                address="127.0.0.1:7401",
                role=Role.VOTER,
                admins=(admin.public_key,),
                users=(agency.public_key, family_a.public_key, family_b.public_key),
            ),
        ),
        funds=(Fund(name="relief-2026", issuers=(agency.public_key,)),),
    )
    assert network.members[0].node_key.hex == node_pub
    (root / "network.toml").write_text(config.network_to_toml(network))
    console.print(f"wrote {root / 'network.toml'} (one member, one fund, three users)")
    run(
        "init",
        "--network",
        "network.toml",
        "--name",
        "civic-bank",
        "--key",
        "node.key",
        "--dir",
        "civic-bank",
        cwd=root,
    )

    node_key = load_signing_key(root / "node.key")
    document = b"Court order 2026/117: release of relief funds to district 4.\n"
    digest = hashlib.sha256(document).digest()
    nonce = iter(range(1, 1_000_000))

    with Ledger.open(config.load_node(root / "civic-bank" / "node.toml").data_dir) as ledger:
        chain_id = ledger.chain_id

        def tx(key: SigningKey, op: str, **args: object) -> Transaction:
            return Transaction.create(
                key,
                chain_id=chain_id,
                op=op,
                args=dict(args),
                nonce=next(nonce),
                time_ms=int(time.time() * 1000),
            )

        batches = [
            [
                tx(
                    agency,
                    "fund.issue",
                    fund="relief-2026",
                    to=family_a.public_key.raw,
                    amount=1000,
                    memo="allocation to family A",
                ),
                tx(agency, "notary.anchor", digest=digest, description="court order 2026/117"),
            ],
            [
                tx(
                    family_a,
                    "fund.transfer",
                    fund="relief-2026",
                    **{"from": family_a.public_key.raw},
                    to=family_b.public_key.raw,
                    amount=300,
                    memo="shared with family B",
                ),
                tx(
                    family_b,
                    "fund.transfer",
                    fund="relief-2026",
                    **{"from": family_b.public_key.raw},
                    to=family_a.public_key.raw,
                    amount=5000,
                    memo="more than B holds",
                ),
            ],
            [
                tx(family_b, "notary.anchor", digest=digest, description="the same order again"),
                tx(
                    family_b,
                    "fund.transfer",
                    fund="relief-2026",
                    **{"from": family_b.public_key.raw},
                    to=agency.public_key.raw,
                    amount=50,
                    memo="returned",
                ),
            ],
        ]
        table = Table(title="blocks written through the ledger API")
        for col in ("height", "tx", "operation", "verdict"):
            table.add_column(col)
        transfer_id = b""
        for batch in batches:
            block = ledger.propose(batch, key=node_key, time_ms=int(time.time() * 1000), term=1)
            ledger.commit(block)
            for t, r in zip(batch, block.results, strict=True):
                verdict = "valid" if r.valid else f"[red]invalid: {r.reason}[/]"
                table.add_row(str(block.height), t.id.hex()[:16] + "…", t.op, verdict)
                if t.op == "fund.transfer" and r.valid and not transfer_id:
                    transfer_id = t.id
        console.print(table)
        view = ledger.state_view()
        held = balance(view, "relief-2026", family_b.public_key.raw)
        console.print(f"family B holds {held} units of relief-2026; where they came from:")
        for lot in provenance(view, "relief-2026", family_b.public_key.raw):
            hops = " -> ".join(
                f"transfer {h.tx_id.hex()[:12]}… (height {h.height})" for h in lot.path
            )
            console.print(
                f"  {lot.amount} units: issue {lot.origin.hex()[:12]}… (height "
                f"{lot.origin_height}) -> {hops}"
            )
        record = anchor(view, digest)
        assert record is not None
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.time_ms / 1000))
        console.print(
            f"document {digest.hex()[:16]}… anchored at height {record.height}, {when}, "
            f"by key {record.signer.short}…: {record.description!r}"
        )

    run("audit", "civic-bank/data", cwd=root)
    run(
        "prove",
        transfer_id.hex(),
        "--data-dir",
        "civic-bank/data",
        "--out",
        "receipt.json",
        cwd=root,
    )
    run("verify-receipt", "receipt.json", "--network", "network.toml", cwd=root)
    console.rule("[green]demo complete: 3 blocks, audit OK, receipt verified")


if __name__ == "__main__":
    main()
