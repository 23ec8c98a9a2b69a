"""Running as a system service: the systemd unit verifies, the daemon tells systemd
when it is ready and when it stops, and exits 0 on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from p2pledger.node.systemd import notify
from tests.node.cluster import ROOT, Cluster

UNIT = ROOT / "config" / "p2pledger.service"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed on this machine (apt-get install systemd)",
)
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's entry point.
    binary = Path(sys.executable).parent / "p2pledger"
    text = UNIT.read_text().replace("/usr/local/bin/p2pledger", str(binary))
    assert "Type=notify" in text and "NoNewPrivileges=yes" in text
    unit = tmp_path / "p2pledger.service"
    unit.write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ignoring" not in done.stderr and "Unknown" not in done.stderr, done.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("Type=notify", "Type=sometimes"))
    bad = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, check=False
    )
    assert "Failed to parse service type" in bad.stderr  # the check does catch a mistake


def test_notify_does_nothing_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_daemon_notifies_ready_and_stopping_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30)
        (tmp_path / "net").mkdir()
        cluster = Cluster(tmp_path / "net", n=1)
        os.environ["NOTIFY_SOCKET"] = path
        try:
            cluster.start("m0")
        finally:
            del os.environ["NOTIFY_SOCKET"]
        try:
            assert sock.recv(64) == b"READY=1"
            cluster.wait_healthy("m0")
            tx = cluster.tx(user=0)
            assert cluster.api("m0").submit(tx.raw, wait=True)["status"] == "committed"
            assert cluster.signal("m0", signal.SIGTERM) == 0
            assert sock.recv(64) == b"STOPPING=1"
        finally:
            cluster.close()
    lines = [json.loads(line) for line in (tmp_path / "net" / "m0.log").read_text().splitlines()]
    assert lines and all(line["member"] == "m0" for line in lines)  # JSON lines, member bound
    stopped = next(line for line in lines if line["event"] == "node.stopped")
    assert stopped["height"] >= 1 and stopped["term"] >= 1
