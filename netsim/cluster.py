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

Keys (node and user) are derived from ``ClusterSpec.seed``. The chain id is the hash
of genesis, which also records every member's address: it replays exactly only when
the ports do too, so ``ClusterSpec.base_port`` pins them (the default asks the
kernel for free ports, which is what parallel runs on one machine need).
"""

from __future__ import annotations

import atexit
import contextlib
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

from p2pledger import config
from p2pledger.chain import chain_id_of
from p2pledger.client import ApiClient
from p2pledger.crypto import SigningKey, write_signing_key
from p2pledger.errors import P2PLedgerError
from p2pledger.membership import BlockLimits, Fund, Member, Network, Role

__all__ = [
    "FUND",
    "GENESIS_TIME_MS",
    "Cluster",
    "ClusterError",
    "ClusterSpec",
    "CommandFailed",
    "MemberFailed",
    "MemberInfo",
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
    #: None: free ports from the kernel. A port: members listen on base_port + i and
    #: serve their API on base_port + members + i, so the chain id replays too.
    base_port: int | None = None

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ClusterError(f"a cluster has at least 1 member, not {self.members}")
        if not 0 <= self.observers < self.members:
            raise ClusterError(
                f"observers must be 0..{self.members - 1} (at least one voter), "
                f"not {self.observers}"
            )
        if self.max_transactions < 1 or self.batch_timeout_ms < 1:
            raise ClusterError("max_transactions and batch_timeout_ms must be positive")
        if self.base_port is not None and not 1024 <= self.base_port <= 65535 - 2 * self.members:
            raise ClusterError(f"base_port {self.base_port} leaves no room for the ports")


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    """Where one member lives: its transport and API addresses and its files."""

    name: str
    listen: tuple[str, int]
    api_url: str
    directory: Path
    log: Path
    user_key_file: Path

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
        self._members: dict[str, MemberInfo] = {}
        self._network: Network | None = None
        self._chain_id: bytes | None = None
        self._users: dict[str, SigningKey] = {}
        self._procs: dict[str, trio.Process] = {}
        self._paused: set[str] = set()
        self._exit_codes: dict[str, int] = {}
        self._atexit = False

    # --- what was generated -------------------------------------------------------

    @property
    def members(self) -> Sequence[MemberInfo]:
        self._require_generated()
        return tuple(self._members.values())

    @property
    def names(self) -> list[str]:
        self._require_generated()
        return list(self._members)

    @property
    def network(self) -> Network:
        if self._network is None:
            raise ClusterError("the cluster is not generated yet: call generate() first")
        return self._network

    @property
    def chain_id(self) -> bytes:
        if self._chain_id is None:
            raise ClusterError("the cluster is not generated yet: call generate() first")
        return self._chain_id

    @property
    def users(self) -> dict[str, SigningKey]:
        """Each member's user key, by member name (u<i> belongs to m<i>)."""
        self._require_generated()
        return dict(self._users)

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
        """Write keys, network.toml and, through ``p2pledger init``, every member's
        node.toml and data directory. The work directory must not hold a cluster."""
        spec = self.spec
        if (self.workdir / "network.toml").exists():
            raise ClusterError(
                f"{self.workdir} already holds a cluster; choose another work directory "
                "or delete this one"
            )
        (self.workdir / "users").mkdir(parents=True, exist_ok=True)
        n = spec.members
        if spec.base_port is None:
            ports = _free_ports(2 * n)
        else:
            ports = list(range(spec.base_port, spec.base_port + 2 * n))
        node_keys = [_seeded_key(spec.seed, "node", i) for i in range(n)]
        users = [_seeded_key(spec.seed, "user", i) for i in range(n)]
        names = [f"m{i}" for i in range(n)]
        members = tuple(
            Member(
                name=names[i],
                node_key=node_keys[i].public_key,
                address=f"{HOST}:{ports[i]}",
                role=Role.OBSERVER if i >= n - spec.observers else Role.VOTER,
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
            infos[name] = MemberInfo(
                name=name,
                listen=(HOST, ports[i]),
                api_url=f"http://{HOST}:{ports[n + i]}",
                directory=directory,
                log=self.workdir / f"{name}.log",
                user_key_file=user_file,
            )
        self._init_all(infos)
        for info in infos.values():
            _edit_node_toml(info.node_file, lambda d: d.setdefault("log", {}).update(format="json"))
        self._members = infos
        self._network = network
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
                self.member(peer)
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
                }
            )
        state = {
            "chain_name": self.spec.chain_name,
            "chain_id": self._chain_id.hex() if self._chain_id else None,
            "seed": self.spec.seed,
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
        """Every member's status, asked side by side."""
        out: dict[str, dict[str, Any] | None] = {}

        async def one(name: str) -> None:
            out[name] = await self.status(name)

        async with trio.open_nursery() as nursery:
            for name in self.names:
                nursery.start_soon(one, name)
        return {name: out[name] for name in self.names}

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
