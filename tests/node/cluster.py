"""Several real ``p2pledger run`` processes on 127.0.0.1, as an operator would run
them: keys, a network.toml, ``p2pledger init`` per member, then the daemons. Every
process the cluster starts is stopped by ``close``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pledger import config
from p2pledger.chain import Transaction, chain_id_of
from p2pledger.client import ApiClient, ApiRequestFailed
from p2pledger.config import LogConfig, LogFormat, NodeConfig
from p2pledger.crypto import SigningKey, write_signing_key
from p2pledger.errors import P2PLedgerError
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role
from p2pledger.wire import HandshakeRefused, TransportConfig
from p2pledger.wire.channel import SecureChannel
from p2pledger.wire.handshake import Handshake, Side
from tests import factory
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
    #: The membership in force, as far as this harness's own updates took it.
    in_force: Network | None = None
    admins: dict[str, SigningKey] = field(default_factory=dict)
    node_keys: dict[str, SigningKey] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)  # members added after genesis
    nonce: int = 0
    limits: BlockLimits = field(
        default_factory=lambda: BlockLimits(max_transactions=50, batch_timeout_ms=50)
    )

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.n)
        node_keys = [seeded_key(f"cluster-node-{i}") for i in range(self.n)]
        self.users = [seeded_key(f"cluster-user-{i}") for i in range(self.n)]
        for i in range(self.n):
            self.admins[f"m{i}"] = seeded_key(f"cluster-admin-{i}")
            self.node_keys[f"m{i}"] = node_keys[i]
        members = tuple(
            Member(
                name=f"m{i}",
                node_key=node_keys[i].public_key,
                address=f"127.0.0.1:{ports[i]}",
                role=Role.VOTER,
                admins=(self.admins[f"m{i}"].public_key,),
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
        self.in_force = self.network
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
        return [f"m{i}" for i in range(self.n)] + self.extra

    # --- membership updates ---------------------------------------------------------

    @property
    def chain_id(self) -> bytes:
        assert self.network is not None
        return chain_id_of(self.network)

    def new_member(self, name: str, *, role: Role = Role.VOTER) -> Member:
        """Keys, a node.toml (``join = true``, written by hand as ``init --join``
        would) and ports for a member that joins later; not yet in any membership."""
        port, api_port = free_ports(2)
        key, admin, user = (
            seeded_key(f"cluster-{what}-{name}") for what in ("node", "admin", "user")
        )
        self.node_keys[name], self.admins[name] = key, admin
        self.users.append(user)
        member = Member(
            name=name,
            node_key=key.public_key,
            address=f"127.0.0.1:{port}",
            role=role,
            admins=(admin.public_key,),
            users=(user.public_key,),
        )
        node_dir = self.root / name
        node_dir.mkdir()
        write_signing_key(self.root / f"{name}.key", key)
        node = NodeConfig(
            name=name,
            network=self.root / "network.toml",
            key_file=self.root / f"{name}.key",
            data_dir=node_dir / "data",
            listen=member.address,
            api=f"127.0.0.1:{api_port}",
            log=LogConfig(format=LogFormat.JSON),
            join=True,
        )
        (node_dir / "node.toml").write_text(config.node_to_toml(node, relative_to=node_dir))
        self.apis[name] = f"http://127.0.0.1:{api_port}"
        self.extra.append(name)
        return member

    def give_next_key(self, name: str) -> SigningKey:
        """Put a next node key beside ``name``'s key (``next_key_file``) before it starts."""
        key = seeded_key(f"cluster-next-{name}")
        path = self.root / f"{name}-next.key"
        write_signing_key(path, key)
        node_file = self.root / name / "node.toml"
        node = dataclasses.replace(config.load_node(node_file), next_key_file=path)
        node_file.write_text(config.node_to_toml(node, relative_to=node_file.parent))
        return key

    def update(self, new: Network, approvers: list[str], *, via: str) -> dict[str, Any]:
        """Submit (to ``via``) the ``config.update`` that takes the membership in force to
        ``new``, approved by ``approvers``' admins; wait until it commits, valid."""
        assert self.in_force is not None
        submitter = self.admins[approvers[0]]  # a config.update is signed by an admin
        self.nonce += 1
        tx = factory.config_update(
            self.chain_id,
            self.in_force,
            new,
            approvers=[self.admins[a] for a in approvers],
            submitter=submitter,
            nonce=10**6 + self.nonce,
        )
        answer = self.api(via).submit(tx.raw, wait=True, timeout_s=20)
        assert answer["status"] == "committed", answer
        assert answer["valid"] is True, answer
        self.in_force = new
        return answer

    def handshake_refused(self, key: SigningKey, *, target: str, network: Network) -> bool:
        """Dial member ``target`` as the holder of ``key`` who still believes in
        ``network``: True if the handshake is refused."""
        member = network.member(target)
        assert member is not None
        address = config.parse_address(member.address)

        async def dial() -> bool:
            with trio.fail_after(DEADLINE_S):
                stream = await trio.open_tcp_stream(address.host, address.port)
                handshake = Handshake(
                    side=Side.DIALER,
                    identity=key,
                    chain_id=self.chain_id,
                    network=network,
                    expected_peer=member.node_key,
                )
                channel = SecureChannel(stream, handshake, config=TransportConfig())
                try:
                    await channel.do_handshake()
                except HandshakeRefused:
                    return True
                await channel.aclose()
                return False

        return trio.run(dial)

    def metric(self, name: str, metric: str) -> float:
        """The sum of a metric's samples (all labels) in ``name``'s /metrics."""
        total = 0.0
        for line in self.api(name).metrics().splitlines():
            if line.startswith(metric) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_events(self, name: str, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of ``name``'s daemon whose event is ``event``."""
        out = []
        for line in (self.root / f"{name}.log").read_text().splitlines():
            if f'"{event}"' in line:
                entry = json.loads(line)
                if entry.get("event") == event:
                    out.append(entry)
        return out

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
        return Transaction.create(
            self.users[user],
            chain_id=self.chain_id,
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


@dataclass
class Load:
    """Light background load: transactions from ``users`` sent (without waiting) to the
    members of ``targets()`` in turn, until ``stop``; every answer is kept."""

    cluster: Cluster
    users: list[int]
    targets: Callable[[], list[str]]
    interval_s: float = 0.02
    sent: list[tuple[Transaction, str]] = field(default_factory=list)  # (tx, member)
    refused: list[tuple[Transaction, str]] = field(default_factory=list)  # (tx, code)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=DEADLINE_S)

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            members = self.targets()
            name = members[k % len(members)]
            tx = self.cluster.tx(self.users[k % len(self.users)])
            k += 1
            try:
                self.cluster.api(name).submit(tx.raw)
                self.sent.append((tx, name))
            except ApiRequestFailed as exc:
                self.refused.append((tx, exc.code))
            except (P2PLedgerError, OSError):
                pass  # a member restarting or leaving: the next one gets the next tx
            self._stop.wait(self.interval_s)
