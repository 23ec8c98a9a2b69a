"""A cluster of real ``p2pledger run`` daemons on 127.0.0.1, and their work directory.

netsim tests p2pledger the way an operator runs it, so this module only uses what an
operator has: it writes keys and a network.toml, sets each member up with
``p2pledger init``, edits node.toml (the log format, the ``[dial]`` table that points
a member at netsim's relays), runs ``p2pledger run`` and signals it, asks the HTTP
API for health and status, and reads ledgers back with ``p2pledger export`` and
``p2pledger audit``. It never imports the daemon's internals.

Processes: each daemon is a ``trio.lowlevel.open_process`` child in its own session
(so a tester's Ctrl-C reaches netsim only, and netsim decides how its members stop),
with stdout and stderr appended to ``WORK/m<i>.log``. Signals go to the child's
process group. Waiting for an exit is ``Process.wait`` under a deadline; blocking
HTTP calls run in ``trio.to_thread.run_sync`` under a deadline too. ``Cluster`` is an
async context manager whose exit stops every process it started, shielded from
cancellation; ``kill_all_now`` is registered with ``atexit`` as the last resort.

Keys (node, admin and user) are derived from ``ClusterSpec.seed``. The chain id is the hash
of genesis, which also records every member's address: it replays exactly only when
the ports do too, so ``ClusterSpec.base_port`` pins them (the default asks the
kernel for free ports, which is what parallel runs on one machine need).

Membership (docs/membership.md): every member has an admin key (``WORK/admins/a<i>.key``,
listed under its ``admins``). ``ClusterSpec.spares`` generates members that are not in
the founding network.toml (keys, ports, a node.toml with ``join = true``) and are not
started until ``add_member`` starts one and has it added. Every change goes through
the CLI as admins make it (``config show --toml``, an edit, ``config propose``,
``config sign`` by the admins the proposal requires, ``config submit``) against a
running member's API. ``names`` are the members of the membership in force, as the
last change netsim made left it: spares join them when added, and removed members
leave them (``removed`` keeps their removal heights).

Relays and members that join later: ``p2pledger run`` refuses a ``[dial]`` entry for a
member its founding network.toml does not name, so only a spare's own dials can go
through netsim's relays. Both ends of a pair dial, and the connection dialed by the
lower node key wins (p2pledger.wire.peers), so spares get node keys below every
founding member's: each link between a spare and a founding member is the spare's
dial, through the relay. A link between two spares, and a founding member's losing
dial while the spare's is down, go straight to the spare's address.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import structlog
import tomli_w
import trio

from netsim import admin
from netsim.admin import MembershipEditError, Submitted, parse_submitted, signers, transaction_in
from p2pledger import config
from p2pledger.chain import chain_id_of
from p2pledger.client import ApiClient
from p2pledger.crypto import SigningKey, load_signing_key, write_signing_key
from p2pledger.errors import P2PLedgerError
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role

__all__ = [
    "FUND",
    "GENESIS_TIME_MS",
    "ChangeNotFollowed",
    "Cluster",
    "ClusterError",
    "ClusterSpec",
    "CommandFailed",
    "ConfigUpdate",
    "MemberFailed",
    "MemberInfo",
    "MembershipRefused",
]

#: The fund every user is funded from; its issuer is u0.
FUND: Final = "relief"
#: Genesis time of every netsim chain (2025-01-01T00:00:00Z): fixed so genesis replays.
GENESIS_TIME_MS: Final = 1_735_689_600_000
HOST: Final = "127.0.0.1"
#: How long a CLI command (init, export, audit) may take.
COMMAND_TIMEOUT_S: Final = 120.0
#: How long reaping a SIGKILLed process may take before something is badly wrong.
REAP_TIMEOUT_S: Final = 10.0
#: Timeout of one status or health request.
API_TIMEOUT_S: Final = 2.0
#: How long ``config submit`` waits for a membership update to commit.
SUBMIT_TIMEOUT_S: Final = 30.0
#: How long an added member may take to start, be let in and catch up.
JOIN_TIMEOUT_S: Final = 90.0
#: How long a rotated member may take to restart, and to follow the update under its new key.
ROTATE_TIMEOUT_S: Final = 45.0
#: How long a removed member's ledger may take to show its removal before it is stopped.
REMOVED_TIP_WAIT_S: Final = 10.0
_POLL_S: Final = 0.1
_LOG_TAIL_BYTES: Final = 4000
_LOG_TAIL_LINES: Final = 20

_log = structlog.get_logger("netsim.cluster")


class ClusterError(Exception):
    """The cluster cannot do what was asked (bad name, wrong state, bad work directory)."""


class MemberFailed(ClusterError):
    """A member's daemon exited, or did not become healthy in time; has its log's tail."""

    def __init__(self, name: str, what: str, log: Path) -> None:
        tail = _tail(log)
        super().__init__(f"member {name} {what}; last lines of {log}:\n{tail}")
        self.name = name
        self.log = log
        self.tail = tail


class MembershipRefused(ClusterError):
    """A membership change was refused (by the CLI or the ledger) or did not commit.

    ``tx_id`` is the update's transaction when it was sent (it may still commit)."""

    def __init__(self, message: str, *, tx_id: str | None = None) -> None:
        super().__init__(message)
        self.tx_id = tx_id


class ChangeNotFollowed(MemberFailed):
    """A membership update committed (``update``), but the member it concerns did not
    follow it: an added or rotated member not healthy and caught up in time."""

    def __init__(self, failed: MemberFailed, update: ConfigUpdate) -> None:
        ClusterError.__init__(self, f"update to version {update.version} committed, but {failed}")
        self.name = failed.name
        self.log = failed.log
        self.tail = failed.tail
        self.update = update


class CommandFailed(ClusterError):
    """A ``p2pledger`` command exited non-zero or did not finish in time."""

    def __init__(self, command: Sequence[str], what: str, output: str) -> None:
        super().__init__(f"`{' '.join(command)}` {what}:\n{output.strip()}")
        self.command = tuple(command)
        self.output = output


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """What cluster to generate. The last ``observers`` members are observers."""

    members: int = 3
    observers: int = 0
    max_transactions: int = 500
    batch_timeout_ms: int = 50
    chain_name: str = "netsim"
    #: Keys are derived from the seed, so a scenario replays with the same keys.
    seed: int = 0
    #: None: free ports from the kernel. A port: members (spares included) listen on
    #: base_port + i and serve their API on base_port + members + spares + i, so the
    #: chain id replays too.
    base_port: int | None = None
    #: Members generated beyond the founding ones (m{members}..), not in network.toml
    #: and not started: a scenario adds them.
    spares: int = 0
    #: Every member's node.toml ``[limits] worker_threads``.
    worker_threads: bool = True

    @property
    def total(self) -> int:
        """Founding members and spares."""
        return self.members + self.spares

    def __post_init__(self) -> None:
        if self.spares < 0:
            raise ClusterError(f"spares must be 0 or more, not {self.spares}")
        if self.members < 1:
            raise ClusterError(f"a cluster has at least 1 member, not {self.members}")
        if not 0 <= self.observers < self.members:
            raise ClusterError(
                f"observers must be 0..{self.members - 1} (at least one voter), "
                f"not {self.observers}"
            )
        if self.max_transactions < 1 or self.batch_timeout_ms < 1:
            raise ClusterError("max_transactions and batch_timeout_ms must be positive")
        if self.base_port is not None and not 1024 <= self.base_port <= 65535 - 2 * self.total:
            raise ClusterError(f"base_port {self.base_port} leaves no room for the ports")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigUpdate:
    """A membership update that committed: version ``version`` is in force from
    height ``height + 1``; ``tx_id`` carried it, sent through ``via``'s API and
    approved by the admins of ``signers``."""

    version: int
    height: int
    tx_id: str
    via: str
    signers: tuple[str, ...]
    changes: tuple[str, ...]
    proposal: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    """Where one member lives: its transport and API addresses and its files."""

    name: str
    listen: tuple[str, int]
    api_url: str
    directory: Path
    log: Path
    user_key_file: Path
    admin_key_file: Path
    #: In the founding network.toml (False: a spare, which joins later).
    founding: bool = True

    @property
    def node_file(self) -> Path:
        return self.directory / "node.toml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"


class Cluster:
    """Generates a work directory and runs one daemon per member in it.

    ``running()`` are the members whose process is alive and not paused; ``paused()``
    those alive but stopped with SIGSTOP. A member whose process exited on its own is
    down, and ``start`` brings it back.
    """

    def __init__(
        self,
        workdir: Path,
        spec: ClusterSpec,
        *,
        command: Sequence[str] = (sys.executable, "-m", "p2pledger"),
    ) -> None:
        self.workdir = Path(os.path.abspath(workdir))
        self.spec = spec
        self.command: tuple[str, ...] = tuple(command)
        #: Every generated member, spares included.
        self._members: dict[str, MemberInfo] = {}
        #: The membership in force, as netsim's last change left it.
        self._network: Network | None = None
        self._founding: Network | None = None
        self._chain_id: bytes | None = None
        #: Each generated member's current user key.
        self._users: dict[str, SigningKey] = {}
        #: Removed members and the height of the block that removed each.
        self._removed: dict[str, int] = {}
        self._changes = 0
        self._procs: dict[str, trio.Process] = {}
        self._paused: set[str] = set()
        self._exit_codes: dict[str, int] = {}
        self._atexit = False

    # --- what was generated -------------------------------------------------------

    @property
    def members(self) -> Sequence[MemberInfo]:
        """The members of the membership in force."""
        return tuple(self._members[n] for n in self.names)

    @property
    def names(self) -> list[str]:
        """The members of the membership in force (founding ones, then those added)."""
        self._require_generated()
        return [m.name for m in self.network.members]

    @property
    def all_names(self) -> list[str]:
        """Every generated member: founding, spares, removed."""
        self._require_generated()
        return list(self._members)

    @property
    def spares(self) -> list[str]:
        """Generated members never added to the membership."""
        return [n for n in self.all_names if n not in self.names and n not in self._removed]

    @property
    def removed(self) -> dict[str, int]:
        """Removed members and the height of the block that removed each."""
        return dict(self._removed)

    @property
    def network(self) -> Network:
        """The membership in force (as netsim's last change left it)."""
        if self._network is None:
            raise ClusterError("the cluster is not generated yet: call generate() first")
        return self._network

    @property
    def founding_network(self) -> Network:
        """The founding network.toml's network."""
        if self._founding is None:
            raise ClusterError("the cluster is not generated yet: call generate() first")
        return self._founding

    @property
    def chain_id(self) -> bytes:
        if self._chain_id is None:
            raise ClusterError("the cluster is not generated yet: call generate() first")
        return self._chain_id

    @property
    def users(self) -> dict[str, SigningKey]:
        """Each current member's user key, by member name (u<i> belongs to m<i>; a
        revoked key is replaced by the member's new one)."""
        return {n: self._users[n] for n in self.names}

    def user_of(self, name: str) -> SigningKey:
        """``name``'s current user key (spares and removed members too)."""
        self.member(name)
        return self._users[name]

    def issuers(self) -> list[SigningKey]:
        """The user keys of the membership in force that may issue fund ``FUND``."""
        fund = next((f for f in self.network.funds if f.name == FUND), None)
        keys = set() if fund is None else {k.raw for k in fund.issuers}
        return [k for k in self._users.values() if k.public_key.raw in keys]

    def member(self, name: str) -> MemberInfo:
        self._require_generated()
        info = self._members.get(name)
        if info is None:
            raise ClusterError(f"no member {name!r}; the members are {', '.join(self._members)}")
        return info

    def api_url(self, name: str) -> str:
        return self.member(name).api_url

    def api(self, name: str, *, timeout_s: float = API_TIMEOUT_S) -> ApiClient:
        """A client of ``name``'s API (sync: call it from a worker thread)."""
        return ApiClient(self.api_url(name), timeout_s=timeout_s)

    # --- the work directory ---------------------------------------------------------

    def generate(self) -> None:
        """Write keys, network.toml and, through ``p2pledger init``, every founding
        member's node.toml and data directory; a spare's node.toml (``join = true``)
        is written here, as ``init`` only sets up members the founding file names.
        The work directory must not hold a cluster."""
        spec = self.spec
        if (self.workdir / "network.toml").exists():
            raise ClusterError(
                f"{self.workdir} already holds a cluster; choose another work directory "
                "or delete this one"
            )
        for sub in ("users", "admins"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        n, total = spec.members, spec.total
        if spec.base_port is None:
            ports = _free_ports(2 * total)
        else:
            ports = list(range(spec.base_port, spec.base_port + 2 * total))
        node_keys = [_seeded_key(spec.seed, "node", i) for i in range(n)]
        lowest = min(k.public_key.raw for k in node_keys)
        node_keys += [_spare_key(spec.seed, i, below=lowest) for i in range(n, total)]
        users = [_seeded_key(spec.seed, "user", i) for i in range(total)]
        admins = [_seeded_key(spec.seed, "admin", i) for i in range(total)]
        names = [f"m{i}" for i in range(total)]
        members = tuple(
            Member(
                name=names[i],
                node_key=node_keys[i].public_key,
                address=f"{HOST}:{ports[i]}",
                role=Role.OBSERVER if i >= n - spec.observers else Role.VOTER,
                admins=(admins[i].public_key,),
                users=(users[i].public_key,),
            )
            for i in range(n)
        )
        network = Network(
            chain_name=spec.chain_name,
            genesis_time_ms=GENESIS_TIME_MS,
            limits=BlockLimits(
                max_transactions=spec.max_transactions, batch_timeout_ms=spec.batch_timeout_ms
            ),
            members=members,
            funds=(Fund(name=FUND, issuers=(users[0].public_key,)),),
        )
        (self.workdir / "network.toml").write_text(config.network_to_toml(network))
        infos: dict[str, MemberInfo] = {}
        for i, name in enumerate(names):
            directory = self.workdir / name
            directory.mkdir(exist_ok=True)
            write_signing_key(directory / "node.key", node_keys[i])
            user_file = self.workdir / "users" / f"u{i}.key"
            write_signing_key(user_file, users[i])
            admin_file = self.workdir / "admins" / f"a{i}.key"
            write_signing_key(admin_file, admins[i])
            infos[name] = MemberInfo(
                name=name,
                listen=(HOST, ports[i]),
                api_url=f"http://{HOST}:{ports[total + i]}",
                directory=directory,
                log=self.workdir / f"{name}.log",
                user_key_file=user_file,
                admin_key_file=admin_file,
                founding=i < n,
            )
        self._init_all({k: v for k, v in infos.items() if v.founding})

        def settle(doc: dict[str, Any]) -> None:
            doc.setdefault("log", {}).update(format="json")
            if not spec.worker_threads:
                doc.setdefault("limits", {}).update(worker_threads=False)

        for info in infos.values():
            if not info.founding:
                _write_joining_node_toml(info)
            _edit_node_toml(info.node_file, settle)
        self._members = infos
        self._network = self._founding = network
        self._chain_id = chain_id_of(network)
        self._users = dict(zip(names, users, strict=True))
        self.write_state()

    def _init_all(self, infos: Mapping[str, MemberInfo]) -> None:
        """``p2pledger init`` for every member, a few side by side (one per core)."""
        batch = max(2, os.cpu_count() or 2)
        todo = list(infos.values())
        for first in range(0, len(todo), batch):
            self._init_batch(todo[first : first + batch])

    def _init_batch(self, infos: Sequence[MemberInfo]) -> None:
        started: list[tuple[list[str], subprocess.Popen[bytes]]] = []
        try:
            for info in infos:
                argv = [
                    *self.command,
                    "init",
                    "--network",
                    "network.toml",
                    "--name",
                    info.name,
                    "--key",
                    f"{info.name}/node.key",
                    "--dir",
                    info.name,
                    "--api",
                    info.api_url.removeprefix("http://"),
                ]
                proc = subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    env=_child_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
                started.append((argv, proc))
            for argv, proc in started:
                try:
                    out, _ = proc.communicate(timeout=COMMAND_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    raise CommandFailed(
                        argv, f"did not finish within {COMMAND_TIMEOUT_S:g} s", ""
                    ) from None
                if proc.returncode != 0:
                    raise CommandFailed(
                        argv, f"exited with {proc.returncode}", out.decode(errors="replace")
                    )
        finally:
            for _, proc in started:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()

    def set_dial(self, dial: Mapping[str, Mapping[str, tuple[str, int]]]) -> None:
        """Rewrite the ``[dial]`` table of each member named in ``dial`` (member ->
        peer -> address it dials instead of network.toml's); an empty mapping removes
        the table. Takes effect when the member next starts."""
        self._require_generated()
        for name, peers in dial.items():
            info = self.member(name)
            for peer, (host, port) in peers.items():
                if not self.member(peer).founding:
                    raise ClusterError(
                        f"{name} cannot dial {peer} through [dial]: p2pledger accepts [dial] "
                        "entries only for members of the founding network.toml"
                    )
                if peer == name:
                    raise ClusterError(f"member {name} cannot dial itself")
                if not 0 < port < 65536 or not host:
                    raise ClusterError(f"{name} -> {peer}: {host}:{port} is not an address")
            table = {peer: f"{host}:{port}" for peer, (host, port) in sorted(peers.items())}

            def edit(doc: dict[str, Any], table: dict[str, str] = table) -> None:
                if table:
                    doc["dial"] = table
                else:
                    doc.pop("dial", None)

            _edit_node_toml(info.node_file, edit)

    def write_state(self) -> None:
        """Write ``WORK/cluster.json``: every member's addresses, pid and state."""
        members = []
        for info in self._members.values():
            proc = self._procs.get(info.name)
            alive = proc is not None and proc.poll() is None
            members.append(
                {
                    "name": info.name,
                    "listen": f"{info.listen[0]}:{info.listen[1]}",
                    "api": info.api_url,
                    "directory": str(info.directory),
                    "log": str(info.log),
                    "pid": proc.pid if proc is not None and alive else None,
                    "state": self._state(info.name),
                    "exit_code": None if alive else self._last_exit(info.name),
                    "membership": self._standing(info.name),
                }
            )
        state = {
            "chain_name": self.spec.chain_name,
            "chain_id": self._chain_id.hex() if self._chain_id else None,
            "seed": self.spec.seed,
            "membership_version": self._network.version if self._network else None,
            "members": members,
        }
        path = self.workdir / "cluster.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, path)

    # --- processes --------------------------------------------------------------------

    def running(self) -> list[str]:
        """Members whose daemon is alive and not paused."""
        return [n for n in self._members if self._state(n) == "running"]

    def paused(self) -> list[str]:
        """Members whose daemon is alive but stopped (SIGSTOP)."""
        return [n for n in self._members if self._state(n) == "paused"]

    def pid(self, name: str) -> int | None:
        """The pid of ``name``'s live daemon, or None when it is down."""
        self.member(name)
        proc = self._procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    async def start(self, name: str) -> None:
        """Spawn ``p2pledger run`` for ``name``; its output is appended to its log."""
        info = self.member(name)
        if self._alive(name):
            raise ClusterError(f"member {name} is already running (pid {self._procs[name].pid})")
        if not self._atexit:
            atexit.register(self.kill_all_now)
            self._atexit = True
        argv = [*self.command, "run", "--config", f"{name}/node.toml"]
        with info.log.open("ab") as log:
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=_child_env(),
                start_new_session=True,
            )
        self._procs[name] = proc
        self._paused.discard(name)
        self._exit_codes.pop(name, None)
        _log.info("member.started", member=name, pid=proc.pid)
        self.write_state()

    async def start_all(self) -> None:
        """Start every member that is down."""
        for name in self.names:
            if not self._alive(name):
                await self.start(name)

    async def wait_healthy(
        self, names: Iterable[str] | None = None, *, timeout_s: float = 60
    ) -> None:
        """Poll ``GET /health`` of each member (default: all) until it answers healthy
        (the member knows a leader); MemberFailed if one exits or the deadline passes."""
        chosen = list(self.names if names is None else names)
        for name in chosen:
            self.member(name)
        deadline = trio.current_time() + timeout_s
        failures: list[MemberFailed] = []

        async def one(name: str) -> None:
            try:
                await self._wait_one_healthy(name, deadline, timeout_s)
            except MemberFailed as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for name in chosen:
                nursery.start_soon(one, name)
        if failures:
            failures.sort(key=lambda f: chosen.index(f.name))
            first = failures[0]
            for other in failures[1:]:
                first.add_note(f"also: {other}")
            raise first

    async def _wait_one_healthy(self, name: str, deadline: float, timeout_s: float) -> None:
        info = self.member(name)
        while True:
            proc = self._procs.get(name)
            if proc is None:
                raise MemberFailed(name, "is not started", info.log)
            code = proc.poll()
            if code is not None:
                raise MemberFailed(name, f"exited with {_exit_text(code)}", info.log)
            if name not in self._paused and await self._healthy(name):
                return
            if trio.current_time() >= deadline:
                raise MemberFailed(name, f"was not healthy within {timeout_s:g} s", info.log)
            await trio.sleep(_POLL_S)  # a poll interval

    async def _healthy(self, name: str) -> bool:
        client = self.api(name)
        with trio.move_on_after(API_TIMEOUT_S + 1):
            try:
                return await trio.to_thread.run_sync(client.healthy, abandon_on_cancel=True)
            except P2PLedgerError:
                return False
        return False

    async def kill(self, name: str) -> None:
        """SIGKILL ``name``'s daemon and reap it (nothing if it is down)."""
        proc = self._live_proc(name)
        if proc is None:
            return
        _signal(proc, signal.SIGKILL)
        await self._reap(name, proc, REAP_TIMEOUT_S)
        _log.info("member.killed", member=name)

    async def stop(self, name: str, *, timeout_s: float = 20) -> int:
        """SIGTERM ``name``'s daemon and wait for it; SIGKILL it (with a warning) if it
        has not exited after ``timeout_s``. Returns its exit code (negative: signal)."""
        proc = self._live_proc(name)
        if proc is None:
            return self._exit_code(name)
        _signal(proc, signal.SIGTERM)
        if name in self._paused:
            _signal(proc, signal.SIGCONT)
        with trio.move_on_after(timeout_s):
            await proc.wait()
        if proc.returncode is None:
            _log.warning("member.stop_timeout", member=name, timeout_s=timeout_s, action="SIGKILL")
            _signal(proc, signal.SIGKILL)
        return await self._reap(name, proc, REAP_TIMEOUT_S)

    async def pause(self, name: str) -> None:
        """SIGSTOP ``name``'s daemon: it holds its sockets but does nothing."""
        proc = self._live_proc(name)
        if proc is None:
            raise ClusterError(f"cannot pause {name}: it is not running")
        _signal(proc, signal.SIGSTOP)
        self._paused.add(name)
        self.write_state()

    async def resume(self, name: str) -> None:
        """SIGCONT a paused daemon."""
        proc = self._live_proc(name)
        if proc is None:
            raise ClusterError(f"cannot resume {name}: it is not running")
        _signal(proc, signal.SIGCONT)
        self._paused.discard(name)
        self.write_state()

    async def restart(self, name: str, *, graceful: bool) -> None:
        """Stop (SIGTERM, ``graceful``) or kill (SIGKILL) ``name``, then start it."""
        if graceful:
            await self.stop(name)
        else:
            await self.kill(name)
        await self.start(name)

    async def wipe(self, name: str) -> None:
        """Kill ``name``, delete its data directory and start it: it begins again from
        genesis and must catch up from the others."""
        info = self.member(name)
        await self.kill(name)
        await trio.to_thread.run_sync(shutil.rmtree, info.data_dir)
        await self.start(name)

    async def stop_all(self, *, timeout_s: float = 20) -> None:
        """SIGTERM every live daemon (SIGCONT first for paused ones), wait, and SIGKILL
        whatever has not exited after ``timeout_s``. Leaves no process behind."""
        live = [(name, proc) for name, proc in self._procs.items() if proc.poll() is None]
        for name, proc in live:
            if name in self._paused:
                _signal(proc, signal.SIGCONT)
            _signal(proc, signal.SIGTERM)
        with trio.move_on_after(timeout_s):
            for _, proc in live:
                await proc.wait()
        for name, proc in live:
            if proc.returncode is None:
                _log.warning(
                    "member.stop_timeout", member=name, timeout_s=timeout_s, action="SIGKILL"
                )
                _signal(proc, signal.SIGKILL)
        for name, proc in live:
            await self._reap(name, proc, REAP_TIMEOUT_S)

    def kill_all_now(self) -> None:
        """SIGKILL every live daemon and reap it, synchronously: the last resort for
        ``finally`` blocks, ``atexit`` and signal handlers."""
        for proc in list(self._procs.values()):
            if proc.returncode is None:
                _signal(proc, signal.SIGKILL)
        deadline = time.monotonic() + REAP_TIMEOUT_S
        for name, proc in list(self._procs.items()):
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # reaping a SIGKILLed child: no event to wait on here
            if proc.returncode is not None:
                self._exit_codes[name] = proc.returncode
            self._paused.discard(name)
        if self._members:
            with contextlib.suppress(OSError):
                self.write_state()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with trio.CancelScope(shield=True):
                await self.stop_all()
        finally:
            self.kill_all_now()
            if self._atexit:
                atexit.unregister(self.kill_all_now)
                self._atexit = False

    # --- asking the members -------------------------------------------------------------

    async def status(self, name: str) -> dict[str, Any] | None:
        """``GET /v1/status`` of ``name``; None when it is down, paused or unreachable."""
        self.member(name)
        if self._state(name) != "running":
            return None
        client = self.api(name)
        with trio.move_on_after(API_TIMEOUT_S + 1):
            try:
                return await trio.to_thread.run_sync(client.status, abandon_on_cancel=True)
            except P2PLedgerError:
                return None
        return None

    async def statuses(self) -> dict[str, dict[str, Any] | None]:
        """Every member's status, asked side by side: of the members when asked (one
        added or removed meanwhile is in the next answer, not half in this one)."""
        names = self.names
        out: dict[str, dict[str, Any] | None] = {}

        async def one(name: str) -> None:
            out[name] = await self.status(name)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(one, name)
        return {name: out[name] for name in names}

    def resources(self) -> dict[str, dict[str, Any]]:
        """Per live member: pid, resident memory (VmRSS, bytes) and CPU seconds
        (user + system) from /proc. Members whose /proc entry vanished are left out."""
        out: dict[str, dict[str, Any]] = {}
        ticks = os.sysconf("SC_CLK_TCK")
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                continue
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                stat = Path(f"/proc/{proc.pid}/stat").read_text()
            except OSError:
                continue
            rss_kb = 0
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
            fields = stat.rpartition(")")[2].split()  # fields 3.. of proc(5)
            utime, stime = int(fields[11]), int(fields[12])
            out[name] = {
                "pid": proc.pid,
                "state": self._state(name),
                "rss_bytes": rss_kb * 1024,
                "cpu_s": (utime + stime) / ticks,
            }
        return out

    async def export(self, name: str, out: Path) -> Path:
        """``p2pledger export`` of ``name``'s ledger into ``out`` (JSON lines, one
        block each from height 0); works while the member runs."""
        info = self.member(name)
        out = Path(os.path.abspath(out))
        out.parent.mkdir(parents=True, exist_ok=True)
        code, output = await self._run_command("export", str(info.data_dir), "--out", str(out))
        if code != 0:
            raise CommandFailed(
                [*self.command, "export", str(info.data_dir), "--out", str(out)],
                f"exited with {code}",
                output,
            )
        return out

    async def audit(self, name: str) -> tuple[bool, str]:
        """``p2pledger audit`` of ``name``'s ledger: (it passed, what it printed)."""
        info = self.member(name)
        code, output = await self._run_command("audit", str(info.data_dir))
        return code == 0, output

    async def _run_command(self, *args: str) -> tuple[int, str]:
        argv = [*self.command, *args]
        with trio.move_on_after(COMMAND_TIMEOUT_S) as scope:
            result = await trio.run_process(
                argv,
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=self.workdir,
                env=_child_env(),
            )
        if scope.cancelled_caught:
            raise CommandFailed(argv, f"did not finish within {COMMAND_TIMEOUT_S:g} s", "")
        text = (result.stdout + result.stderr).decode(errors="replace")
        return result.returncode, text

    # --- membership, changed as admins change it (docs/membership.md) --------------------

    async def change_membership(
        self,
        edit: Callable[[dict[str, Any]], None],
        *,
        via: str,
        timeout_s: float = SUBMIT_TIMEOUT_S,
    ) -> ConfigUpdate:
        """Change the membership through the CLI against ``via``'s API, as admins do:
        ``config show --toml`` to a file, ``edit`` on its TOML document, ``config
        propose``, ``config sign`` by the admins of the members the proposal requires
        (for a majority: ``via``'s first, then in order), ``config submit`` (signed by
        the first of them), waiting up to ``timeout_s`` for the commit.

        The files of change k are ``WORK/changes/<k>-base.toml``, ``<k>.toml`` and
        ``<k>.json``. MembershipRefused when a command refuses or the update does not
        commit (its ``tx_id`` is set once the update was sent: it may still commit)."""
        info = self.member(via)
        if self._state(via) != "running":
            raise ClusterError(
                f"cannot change the membership through {via}: it is {self._state(via)}"
            )
        self._changes += 1
        directory = self.workdir / "changes"
        directory.mkdir(exist_ok=True)
        stem = f"{self._changes:03d}"
        base_file = directory / f"{stem}-base.toml"
        edited = directory / f"{stem}.toml"
        proposal = directory / f"{stem}.json"
        api = ("--api", info.api_url)
        await self._admin_command("config", "show", "--out", str(base_file), *api)
        text = base_file.read_text()
        try:
            base = config.parse_network(text, source=str(base_file))
            doc = tomllib.loads(text)
        except (P2PLedgerError, tomllib.TOMLDecodeError) as exc:
            raise MembershipRefused(
                f"config show wrote a membership netsim cannot read: {exc}"
            ) from exc
        try:
            edit(doc)
        except MembershipEditError as exc:
            raise MembershipRefused(f"change {stem}: {exc}") from exc
        edited.write_text(tomli_w.dumps(doc))
        await self._admin_command(
            "config", "propose", str(edited), "--out", str(proposal), "--force", *api
        )
        try:
            required = json.loads(proposal.read_text())["required"]
            chosen = signers(required, [m.name for m in base.members], prefer=[via])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MembershipRefused(f"cannot read the proposal {proposal}: {exc}") from exc
        for member in chosen:
            key = str(self.member(member).admin_key_file)
            await self._admin_command("config", "sign", str(proposal), "--key", key, "--yes", *api)
        submit = (
            "config",
            "submit",
            str(proposal),
            "--key",
            str(self.member(chosen[0]).admin_key_file),
        )
        code, output = await self._run_command(*submit, "--timeout", f"{timeout_s:g}", *api)
        done = parse_submitted(output) if code == 0 else None
        if done is None:
            tx_id = transaction_in(output)
            done = await self._landed(via, base.version + 1, tx_id)
            if done is None:
                raise MembershipRefused(
                    f"`p2pledger {' '.join(submit)}` exited with {code}:\n{output.strip()}",
                    tx_id=tx_id,
                )
        await self._follow(via, done)
        changes = tuple(str(c) for c in json.loads(proposal.read_text()).get("changes") or [])
        update = ConfigUpdate(
            version=done.version,
            height=done.height,
            tx_id=done.tx_id,
            via=via,
            signers=tuple(chosen),
            changes=changes,
            proposal=proposal,
        )
        _log.info(
            "membership.changed",
            version=update.version,
            height=update.height,
            via=via,
            changes=list(changes),
        )
        return update

    async def add_member(
        self,
        name: str,
        *,
        role: str = "voter",
        via: str,
        timeout_s: float = JOIN_TIMEOUT_S,
    ) -> ConfigUpdate:
        """Start spare ``name`` (it joins: ``join = true``), add it as a ``role``, and
        wait until it is healthy and has the block that added it."""
        info = self.member(name)
        if name not in self.spares:
            raise ClusterError(
                f"{name} is not a spare (spares: {', '.join(self.spares) or 'none'})"
            )
        deadline = trio.current_time() + timeout_s
        if not self._alive(name):
            await self.start(name)
        await self._wait_answering(name, deadline)
        node_key = await trio.to_thread.run_sync(load_signing_key, info.directory / "node.key")
        admin_key = await trio.to_thread.run_sync(load_signing_key, info.admin_key_file)

        def edit(doc: dict[str, Any]) -> None:
            admin.add_member(
                doc,
                name=name,
                node_key=node_key.public_key.hex,
                address=f"{info.listen[0]}:{info.listen[1]}",
                role=role,
                admins=[admin_key.public_key.hex],
                users=[self._users[name].public_key.hex],
            )

        update = await self.change_membership(edit, via=via)
        try:
            await self.wait_caught_up(
                [name], update.height, timeout_s=max(1.0, deadline - trio.current_time())
            )
        except MemberFailed as exc:
            raise ChangeNotFollowed(exc, update) from exc
        return update

    async def remove_member(
        self, name: str, *, via: str, stop: bool = True, timeout_s: float = REMOVED_TIP_WAIT_S
    ) -> ConfigUpdate:
        """Remove ``name``; then (``stop``) wait up to ``timeout_s`` for its ledger to
        hold the block that removed it, and stop its daemon, as its operator would."""
        self.member(name)
        if via == name:
            raise ClusterError(f"remove {name} through another member's API, not its own")
        update = await self.change_membership(lambda d: admin.remove_member(d, name), via=via)
        if stop and self._alive(name):
            with trio.move_on_after(timeout_s):
                while (await self._height(name) or -1) < update.height:
                    await trio.sleep(_POLL_S)  # a poll interval
            await self.stop(name)
        return update

    async def set_role(self, name: str, role: str, *, via: str) -> ConfigUpdate:
        """Promote (``voter``) or demote (``observer``) ``name``."""
        self.member(name)
        return await self.change_membership(lambda d: admin.set_role(d, name, role), via=via)

    async def promote(self, name: str, *, via: str) -> ConfigUpdate:
        return await self.set_role(name, "voter", via=via)

    async def demote(self, name: str, *, via: str) -> ConfigUpdate:
        return await self.set_role(name, "observer", via=via)

    async def revoke_user(self, name: str, *, via: str) -> ConfigUpdate:
        """Revoke ``name``'s user key and register a new one (``users/u<i>-<k>.key``)
        in its place (and in the fund's issuers if it was one). From the update's
        height on, transactions signed by the old key are invalid (``unknown_signer``);
        ``user_of(name)`` is the new key once the update committed."""
        info = self.member(name)
        old = self._users[name]
        index = self.all_names.index(name)
        generation = sum(1 for _ in (self.workdir / "users").glob(f"u{index}-*.key")) + 1
        new = _seeded_key(self.spec.seed, f"user-{generation}", index)
        key_file = self.workdir / "users" / f"u{index}-{generation}.key"
        write_signing_key(key_file, new)
        update = await self.change_membership(
            lambda d: admin.replace_user(d, name, old.public_key.hex, new.public_key.hex), via=via
        )
        self._users[name] = new
        self._members[name] = dataclasses.replace(info, user_key_file=key_file)
        self.write_state()
        return update

    async def rotate_key(
        self, name: str, *, via: str, timeout_s: float = ROTATE_TIMEOUT_S
    ) -> ConfigUpdate:
        """Rotate ``name``'s node key as docs/membership.md says: ``p2pledger keygen``
        a next key beside the old one, name it ``next_key_file`` in node.toml, propose
        it as the member's ``node_key``. The daemon reads ``next_key_file`` only when
        it starts, so it is restarted gracefully (and must be healthy again) before
        the proposal. After the commit, node.toml's ``key_file`` names the new key and
        ``next_key_file`` is dropped (for the next start)."""
        info = self.member(name)
        generation = sum(1 for _ in info.directory.glob("node-*.key")) + 1
        new_file = info.directory / f"node-{generation}.key"
        code, output = await self._run_command("keygen", "--out", str(new_file))
        if code != 0:
            raise CommandFailed(
                [*self.command, "keygen", "--out", str(new_file)], f"exited with {code}", output
            )
        new = await trio.to_thread.run_sync(load_signing_key, new_file)
        _edit_node_toml(info.node_file, lambda d: d.update(next_key_file=new_file.name))
        deadline = trio.current_time() + timeout_s
        if self._alive(name):
            await self.restart(name, graceful=True)
            await self.wait_healthy([name], timeout_s=timeout_s)
        update = await self.change_membership(
            lambda d: admin.set_node_key(d, name, new.public_key.hex), via=via
        )

        def settle(doc: dict[str, Any]) -> None:
            doc["key_file"] = new_file.name
            doc.pop("next_key_file", None)

        _edit_node_toml(info.node_file, settle)
        if self._alive(name):
            left = max(1.0, deadline - trio.current_time())
            try:
                await self.wait_caught_up([name], update.height, timeout_s=left)
            except MemberFailed as exc:
                raise ChangeNotFollowed(exc, update) from exc
        return update

    async def wait_caught_up(
        self, names: Iterable[str], height: int, *, timeout_s: float = JOIN_TIMEOUT_S
    ) -> None:
        """Poll until each of ``names`` is healthy and its ledger reaches ``height``;
        MemberFailed if one exits or the deadline passes."""
        chosen = list(names)
        deadline = trio.current_time() + timeout_s
        await self.wait_healthy(chosen, timeout_s=timeout_s)
        for name in chosen:
            while (await self._height(name) or -1) < height:
                if self.pid(name) is None:
                    raise MemberFailed(name, "exited while catching up", self.member(name).log)
                if trio.current_time() >= deadline:
                    raise MemberFailed(
                        name,
                        f"did not reach height {height} within {timeout_s:g} s",
                        self.member(name).log,
                    )
                await trio.sleep(_POLL_S)  # a poll interval

    async def _height(self, name: str) -> int | None:
        status = await self.status(name)
        height = None if status is None else status.get("height")
        return height if isinstance(height, int) and not isinstance(height, bool) else None

    async def _wait_answering(self, name: str, deadline: float) -> None:
        """Until ``name``'s API answers status (a joining member is not healthy yet)."""
        while await self.status(name) is None:
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                raise MemberFailed(name, "exited before its API answered", self.member(name).log)
            if trio.current_time() >= deadline:
                raise MemberFailed(name, "did not serve its API in time", self.member(name).log)
            await trio.sleep(_POLL_S)  # a poll interval

    async def _admin_command(self, *args: str) -> str:
        code, output = await self._run_command(*args)
        if code != 0:
            raise MembershipRefused(
                f"`p2pledger {' '.join(args)}` exited with {code}: {output.strip()}"
            )
        return output

    async def _landed(self, via: str, version: int, tx_id: str | None) -> Submitted | None:
        """Whether version ``version`` is in force on ``via`` (carried by ``tx_id``
        when known): ``config submit`` may give up before the update commits."""
        client = self.api(via, timeout_s=API_TIMEOUT_S * 5)
        try:
            with trio.fail_after(API_TIMEOUT_S * 5 + 1):
                answer = await trio.to_thread.run_sync(
                    client.config_history, abandon_on_cancel=True
                )
        except (P2PLedgerError, trio.TooSlowError):
            return None
        for v in answer.get("versions") or []:
            if (
                isinstance(v, dict)
                and v.get("version") == version
                and isinstance(v.get("height"), int)
                and isinstance(v.get("tx_id"), str)
                and (tx_id is None or v["tx_id"] == tx_id)
            ):
                return Submitted(version=version, height=v["height"], tx_id=v["tx_id"])
        return None

    async def _follow(self, via: str, done: Submitted) -> None:
        """Read the membership in force from ``via`` (it has committed version
        ``done.version``) and update names, roles and removals."""
        client = self.api(via, timeout_s=API_TIMEOUT_S * 5)
        answer = await trio.to_thread.run_sync(client.config)
        try:
            network = config.parse_network(answer["toml"], source=f"{client.base_url}/v1/config")
        except (KeyError, TypeError, P2PLedgerError) as exc:
            raise MembershipRefused(f"{via} serves a membership netsim cannot read: {exc}") from exc
        if network.version < done.version:
            raise MembershipRefused(
                f"{via} answered that version {done.version} committed, but serves version "
                f"{network.version}"
            )
        before = set(self.names)
        self._network = network
        for name in before - {m.name for m in network.members}:
            self._removed[name] = done.height
        self.write_state()

    def _standing(self, name: str) -> str:
        if name in self._removed:
            return "removed"
        if self._network is not None and self._network.member(name) is not None:
            return "member"
        return "spare"

    # --- internals -------------------------------------------------------------------------

    def _require_generated(self) -> None:
        if not self._members:
            raise ClusterError("the cluster is not generated yet: call generate() first")

    def _alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def _live_proc(self, name: str) -> trio.Process | None:
        self.member(name)
        proc = self._procs.get(name)
        return proc if proc is not None and proc.poll() is None else None

    def _state(self, name: str) -> str:
        if not self._alive(name):
            return "down"
        return "paused" if name in self._paused else "running"

    def _last_exit(self, name: str) -> int | None:
        proc = self._procs.get(name)
        if proc is not None and proc.returncode is not None:
            return proc.returncode
        return self._exit_codes.get(name)

    def _exit_code(self, name: str) -> int:
        code = self._last_exit(name)
        if code is None:
            raise ClusterError(f"member {name} was never started")
        return code

    async def _reap(self, name: str, proc: trio.Process, timeout_s: float) -> int:
        with trio.move_on_after(timeout_s):
            await proc.wait()
        if proc.returncode is None:
            raise ClusterError(
                f"member {name} (pid {proc.pid}) did not exit {timeout_s:g} s after SIGKILL"
            )
        self._paused.discard(name)
        self._exit_codes[name] = proc.returncode
        self.write_state()
        return proc.returncode


def _signal(proc: trio.Process, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group of a child we have not reaped (its pgid is
    its pid: it leads its own session, so the id cannot have been reused)."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _seeded_key(seed: int, role: str, index: int) -> SigningKey:
    return SigningKey(hashlib.sha256(f"netsim/{seed}/{role}/{index}".encode()).digest())


def _spare_key(seed: int, index: int, *, below: bytes) -> SigningKey:
    """A seeded node key whose public key sorts below ``below`` (every founding
    member's), so that the spare's own dial wins each pair (see the module docstring)."""
    for attempt in range(10_000):
        key = SigningKey(hashlib.sha256(f"netsim/{seed}/node/{index}/{attempt}".encode()).digest())
        if key.public_key.raw < below:
            return key
    raise ClusterError("no spare node key sorts below the founding members' (seed too unlucky)")


def _write_joining_node_toml(info: MemberInfo) -> None:
    """A spare's node.toml, as ``p2pledger init`` would write it, with ``join = true``."""
    doc: dict[str, Any] = {
        "name": info.name,
        "network": "../network.toml",
        "key_file": "node.key",
        "data_dir": "data",
        "listen": f"{info.listen[0]}:{info.listen[1]}",
        "api": info.api_url.removeprefix("http://"),
        "join": True,
        "log": {"format": "json", "level": "info"},
    }
    info.node_file.write_text(tomli_w.dumps(doc))
    _edit_node_toml(info.node_file, lambda d: None)


#: Where members' ports are chosen when the kernel's ephemeral range is unknown.
_FALLBACK_EPHEMERAL: Final = (32768, 60999)
#: The lowest port netsim gives a member.
_LOWEST_PORT: Final = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _FALLBACK_EPHEMERAL


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports on 127.0.0.1, free right now and outside the kernel's
    ephemeral range: the relays (and every outgoing connection) take ephemeral ports
    between now and the moment each member binds its own, and must not take those."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(_LOWEST_PORT, 65536) if not low <= p <= high]
    random.SystemRandom().shuffle(candidates)  # which free ports: no need to replay
    out: list[int] = []
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        out.append(port)
        if len(out) == n:
            return out
    raise ClusterError(f"found only {len(out)} free ports outside {low}-{high} on {HOST}")


def _child_env() -> dict[str, str]:
    # Unbuffered, so a member's last log lines are on disk when it dies.
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _edit_node_toml(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    """Apply ``edit`` to the TOML document of a node.toml and check it still loads."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClusterError(f"cannot read {path}: {exc}") from exc
    edit(doc)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(tomli_w.dumps(doc))
    try:
        config.load_node(tmp)
    except P2PLedgerError as exc:
        tmp.unlink()
        raise ClusterError(
            f"p2pledger refuses the edited {path} (is [dial] supported by this p2pledger?): {exc}"
        ) from exc
    os.replace(tmp, path)


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return "(no log)"
    lines = data.decode(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) or "(empty log)"
