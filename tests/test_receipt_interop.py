"""A receipt from ``p2pledger prove`` checks out with tools that share no code with
p2pledger: the header signature with ``openssl pkeyutl -verify -rawin`` and the audit
path with plain hashlib, following RFC 6962 / RFC 9162 §2.1.3.2 directly."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from p2pledger.ledger import Ledger
from tests.factory import GENESIS_TIME_MS, TestNetwork

OPENSSL = shutil.which("openssl")


def fold_audit_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2, written from the RFC with hashlib only."""
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        if sn == 0:
            raise AssertionError("path too long")
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0, "path too short"
    return r


@pytest.fixture
def receipt(tmp_path: Path) -> dict:
    net = TestNetwork(n=3)
    with Ledger.create(tmp_path / "data", net.network) as ledger:
        for height in range(1, 4):
            txs = [net.tx(height * 10 + i, user=i % 3) for i in range(5 + height)]
            block = ledger.propose(
                txs, key=net.node_keys[1], time_ms=GENESIS_TIME_MS + height, term=1
            )
            ledger.commit(block)
        target = ledger.store.block(2).txs[4]
    tx_id = hashlib.sha256(target).hexdigest()
    out = tmp_path / "receipt.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "p2pledger",
            "prove",
            tx_id,
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return json.loads(out.read_text())


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed on this machine")
def test_header_signature_verifies_with_openssl(receipt: dict, tmp_path: Path) -> None:
    assert OPENSSL is not None
    (tmp_path / "proposer.pem").write_text(receipt["block"]["proposer_key_pem"])
    (tmp_path / "header.bin").write_bytes(bytes.fromhex(receipt["block"]["header"]))
    (tmp_path / "header.sig").write_bytes(bytes.fromhex(receipt["block"]["sig"]))
    cmd = [
        OPENSSL,
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "proposer.pem",
        "-rawin",
        "-in",
        "header.bin",
        "-sigfile",
        "header.sig",
    ]
    ok = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    # A flipped bit in the header must fail the same check.
    tampered = bytearray(bytes.fromhex(receipt["block"]["header"]))
    tampered[-1] ^= 1
    (tmp_path / "header.bin").write_bytes(bytes(tampered))
    bad = subprocess.run(cmd, check=False, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0


def test_audit_path_recomputes_with_hashlib(receipt: dict) -> None:
    header_bytes = bytes.fromhex(receipt["block"]["header"])
    assert hashlib.sha256(header_bytes).hexdigest() == receipt["block"]["hash"]
    raw = bytes.fromhex(receipt["tx"]["raw"])
    assert hashlib.sha256(raw).hexdigest() == receipt["tx"]["id"]
    inc = receipt["inclusion"]
    root = fold_audit_path(
        inc["index"], inc["tree_size"], raw, [bytes.fromhex(h) for h in inc["audit_path"]]
    )
    assert root.hex() == receipt["block"]["header_fields"]["tx_root"]
    # The header bytes themselves carry that root (so the signature covers it).
    assert root in header_bytes
    res = receipt["result"]
    rroot = fold_audit_path(
        inc["index"],
        inc["tree_size"],
        bytes.fromhex(res["leaf"]),
        [bytes.fromhex(h) for h in res["audit_path"]],
    )
    assert rroot.hex() == receipt["block"]["header_fields"]["results_root"]
    # Another leaf does not fold to the root.
    wrong = fold_audit_path(
        inc["index"], inc["tree_size"], raw + b"x", [bytes.fromhex(h) for h in inc["audit_path"]]
    )
    assert wrong != root


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed on this machine")
def test_transaction_signature_verifies_with_openssl(receipt: dict, tmp_path: Path) -> None:
    assert OPENSSL is not None
    signer = bytes.fromhex(receipt["tx"]["signer"])
    spki = bytes.fromhex("302a300506032b6570032100") + signer  # RFC 8410 SubjectPublicKeyInfo
    der = tmp_path / "signer.der"
    der.write_bytes(spki)
    (tmp_path / "body.bin").write_bytes(bytes.fromhex(receipt["tx"]["body"]))
    (tmp_path / "body.sig").write_bytes(bytes.fromhex(receipt["tx"]["sig"]))
    ok = subprocess.run(
        [
            OPENSSL,
            "pkeyutl",
            "-verify",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            "signer.der",
            "-rawin",
            "-in",
            "body.bin",
            "-sigfile",
            "body.sig",
        ],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
