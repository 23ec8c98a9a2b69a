"""Several real ``p2pledger run`` processes on 127.0.0.1, as an operator would run
them: keys, a network.toml, ``p2pledger init`` per member, then the daemons. Every
process the cluster starts is stopped by ``close``."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pledger import config
from p2pledger.chain import Transaction, chain_id_of
from p2pledger.client import ApiClient
from p2pledger.crypto import SigningKey, write_signing_key
from p2pledger.errors import P2PLedgerError
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role
from tests.factory import GENESIS_TIME_MS, seeded_key

ROOT = Path(__file__).resolve().parent.parent.parent
DEADLINE_S = 30.0


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(check: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (P2PLedgerError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)  # a poll interval, not a wait for an event
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class Cluster:
    root: Path
    n: int = 3
    users: list[SigningKey] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    apis: dict[str, str] = field(default_factory=dict)
    network: Network | None = None
    nonce: int = 0
    limits: BlockLimits = field(
        default_factory=lambda: BlockLimits(max_transactions=50, batch_timeout_ms=50)
    )

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.n)
        node_keys = [seeded_key(f"cluster-node-{i}") for i in range(self.n)]
        self.users = [seeded_key(f"cluster-user-{i}") for i in range(self.n)]
        members = tuple(
            Member(
                name=f"m{i}",
                node_key=node_keys[i].public_key,
                address=f"127.0.0.1:{ports[i]}",
                role=Role.VOTER,
                users=(self.users[i].public_key,),
            )
            for i in range(self.n)
        )
        self.network = Network(
            chain_name="cluster-test",
            genesis_time_ms=GENESIS_TIME_MS,
            limits=self.limits,
            members=members,
            funds=(Fund(name="relief", issuers=(self.users[0].public_key,)),),
        )
        (self.root / "network.toml").write_text(config.network_to_toml(self.network))
        for i in range(self.n):
            name = f"m{i}"
            write_signing_key(self.root / f"{name}.key", node_keys[i])
            api = f"127.0.0.1:{ports[self.n + i]}"
            self.apis[name] = f"http://{api}"
            self._cli(
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
                api,
            )
            text = (self.root / name / "node.toml").read_text()
            (self.root / name / "node.toml").write_text(
                text.replace('format = "auto"', 'format = "json"')
            )

    def _cli(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "p2pledger", *args],
            cwd=self.root,
            check=True,
            capture_output=True,
            env=self._env(),
        )

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(ROOT)}

    @property
    def names(self) -> list[str]:
        return [f"m{i}" for i in range(self.n)]

    def start(self, name: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "p2pledger", "run", "--config", f"{name}/node.toml"],
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(),
        )
        log.close()

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)
        for name in self.names:
            self.wait_healthy(name)

    def api(self, name: str) -> ApiClient:
        return ApiClient(self.apis[name], timeout_s=10)

    def wait_healthy(self, name: str) -> None:
        wait_until(lambda: self.api(name).healthy(), f"{name} to be healthy")

    def leader(self, among: list[str] | None = None) -> str:
        """The leader that every member of ``among`` (default: all running) agrees on
        and that is itself one of them."""
        members = among or list(self.procs)

        def agreed() -> str | None:
            seen = {self.api(m).status().get("leader") for m in members}
            lead = seen.pop() if len(seen) == 1 else None
            return lead if lead in members else None

        return str(wait_until(agreed, "one agreed leader"))

    def signal(self, name: str, sig: int) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        return proc.wait(timeout=DEADLINE_S)

    def tx(self, user: int = 1) -> Transaction:
        self.nonce += 1
        digest = hashlib.sha256(f"doc-{self.nonce}-{time.time_ns()}".encode()).digest()
        assert self.network is not None
        return Transaction.create(
            self.users[user],
            chain_id=chain_id_of(self.network),
            op="notary.anchor",
            args={"digest": digest, "description": f"doc {self.nonce}"},
            nonce=self.nonce,
            time_ms=GENESIS_TIME_MS + self.nonce,
        )

    def height(self, name: str) -> int:
        return int(self.api(name).status()["height"])

    def wait_height(self, names: list[str], height: int) -> None:
        for name in names:
            wait_until(lambda name=name: self.height(name) >= height, f"{name} at {height}")

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=DEADLINE_S)

    def wipe(self, name: str) -> None:
        shutil.rmtree(self.root / name / "data")
