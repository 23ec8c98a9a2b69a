"""``netsim up``'s control socket, and the client the other commands talk to it with.

``netsim up`` starts a cluster behind relays (as a scenario run does, without load
or schedule) and serves ``WORK/control.sock``: a Unix socket taking one request per
connection, a JSON line ``{"cmd": ..., "args": {...}}``, answered with one JSON line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. Every fault a
command injects is written to ``WORK/events.jsonl`` as ``fault.start`` /
``fault.end``, like a scenario's, so the same report tools read both.

Commands (``args`` in brackets):

- ``status``: every member's state, height, term, leader and connected peers, the
  faults in force and the link faults on each edge;
- ``partition`` [spec]: block the edges of a partition spec (``netsim.partition``);
- ``heal``: end every partition and stall;
- ``kill`` / ``pause`` [member]: SIGKILL / SIGSTOP, in force until ``restart`` /
  ``resume``;
- ``restart`` [member, hard]: start a killed member again; restart a running one
  (SIGTERM, or SIGKILL with ``hard``);
- ``resume`` [member]: SIGCONT a paused member;
- ``latency`` [a, b, ms, jitter_ms]: the one-way delay each way between a and b
  (0 ms removes it);
- ``down``: stop everything; ``netsim up`` exits.

The current work directory is recorded in ``./netsim-work/current`` (a symlink, or a
file holding the path where symlinks are not possible), so the commands find the
most recent ``netsim up`` without ``--workdir``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from netsim.cluster import Cluster, ClusterError, ClusterSpec
from netsim.history import HistoryWriter
from netsim.partition import PartitionSpecError, blocked_edges, parse_partition
from netsim.runner import (
    Applied,
    EventLog,
    FaultOps,
    agreed_leader,
    start_behind_relays,
)
from netsim.scenario import Fault, FaultKind, Placement

__all__ = [
    "CONTROL_SOCKET",
    "CURRENT",
    "ControlError",
    "NoCluster",
    "Refused",
    "UpConfig",
    "current_workdir",
    "record_current",
    "request",
    "serve_up",
    "socket_path",
]

CONTROL_SOCKET: Final = "control.sock"
#: Where the most recent ``netsim up`` work directory is recorded, from the cwd.
CURRENT: Final = Path("netsim-work") / "current"
#: The longest request line the server reads.
MAX_REQUEST_BYTES: Final = 64 * 1024
#: How long the client waits for an answer (a restart may wait for a member).
REQUEST_TIMEOUT_S: Final = 120.0
#: How long one connection may take to send its request.
READ_TIMEOUT_S: Final = 10.0
_UNIX_PATH_MAX: Final = 107


class ControlError(Exception):
    """A control command failed: the server refused it, or could not be reached."""


class NoCluster(ControlError):
    """No ``netsim up`` answers at the work directory."""


class Refused(ControlError):
    """The server understood the command and refused it (bad member, bad spec...)."""


def socket_path(workdir: Path) -> Path:
    return Path(workdir) / CONTROL_SOCKET


def record_current(workdir: Path, where: Path = CURRENT) -> None:
    """Point ``where`` (default ./netsim-work/current) at ``workdir``."""
    where.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.abspath(workdir)
    tmp = where.with_name(where.name + f".{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(target, target_is_directory=True)
    except OSError:
        tmp.write_text(target + "\n", encoding="utf-8")
    os.replace(tmp, where)


def current_workdir(where: Path = CURRENT) -> Path:
    """The work directory ``record_current`` last recorded; NoCluster if none."""
    if where.is_symlink():
        return Path(os.readlink(where))
    if where.is_file():
        text = where.read_text(encoding="utf-8").strip()
        if text:
            return Path(text)
    raise NoCluster(
        f"no cluster is up: {where} does not exist (start one with `netsim up`, or pass --workdir)"
    )


def request(
    workdir: Path, cmd: str, args: Mapping[str, Any] | None = None, *, timeout_s: float = 0
) -> Any:
    """Send one command to the ``netsim up`` serving ``workdir``; its result, or
    ControlError with the server's message."""
    path = socket_path(workdir)
    line = json.dumps({"cmd": cmd, "args": dict(args or {})}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s or REQUEST_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoCluster(
                f"no `netsim up` answers at {path} ({exc.strerror}); is it running?"
            ) from exc
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc}") from exc
        try:
            sock.sendall(line)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError as exc:
            raise ControlError(f"`{cmd}` got no answer within {sock.gettimeout():g} s") from exc
        except OSError as exc:
            raise ControlError(f"`{cmd}`: the connection to {path} broke: {exc}") from exc
    try:
        reply = json.loads(data)
    except ValueError as exc:
        raise ControlError(f"`{cmd}`: the answer is not JSON: {data[:200]!r}") from exc
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlError(f"`{cmd}`: the answer has no 'ok': {reply!r}")
    if not reply["ok"]:
        raise Refused(str(reply.get("error", "the command failed")))
    return reply.get("result")


# --- the server ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UpConfig:
    """What ``netsim up`` runs."""

    members: int = 3
    observers: int = 0
    seed: int = 0
    max_transactions: int = 500
    batch_timeout_ms: int = 50


class _BadRequest(Exception):
    """A request the server refuses; its message is the reply's ``error``."""


class _Server:
    def __init__(self, cluster: Cluster, ops: FaultOps, events: EventLog) -> None:
        self.cluster = cluster
        self.ops = ops
        self.events = events
        self.next_id = 1
        self.down = trio.Event()
        self.lock = trio.Lock()
        self.handlers: dict[str, Callable[[Mapping[str, Any]], Awaitable[Any]]] = {
            "status": self.status,
            "partition": self.partition,
            "heal": self.heal,
            "kill": self.kill,
            "pause": self.pause,
            "resume": self.resume,
            "restart": self.restart,
            "latency": self.latency,
            "down": self.shut_down,
        }

    @property
    def names(self) -> list[str]:
        return self.cluster.names

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            reply: dict[str, Any]
            try:
                with trio.fail_after(READ_TIMEOUT_S):
                    data = await _read_line(stream)
                cmd, args = _parse_request(data)
                handler = self.handlers.get(cmd)
                if handler is None:
                    raise _BadRequest(
                        f"unknown command {cmd!r}; commands: {', '.join(sorted(self.handlers))}"
                    )
                async with self.lock:
                    result = await handler(args)
                reply = {"ok": True, "result": result}
            except trio.TooSlowError:
                reply = {"ok": False, "error": "the request did not arrive in time"}
            except (_BadRequest, ClusterError, PartitionSpecError) as exc:
                reply = {"ok": False, "error": str(exc)}
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(json.dumps(reply).encode() + b"\n")

    # --- commands ---------------------------------------------------------------

    def _member(self, args: Mapping[str, Any]) -> str:
        name = args.get("member")
        if not isinstance(name, str) or name not in self.names:
            raise _BadRequest(f"{name!r} is not a member ({', '.join(self.names)})")
        return name

    async def _start(self, fault: Fault) -> Applied:
        fault_id, self.next_id = self.next_id, self.next_id + 1
        applied = await self.ops.start(fault_id, fault, origin="control")
        if applied.error is not None:
            raise _BadRequest(applied.error)
        return applied

    def _now_fault(self, kind: FaultKind, target: str, **params: Any) -> Fault:
        return Fault(at_s=round(self.events.now(), 3), kind=kind, target=target, **params)

    def _active(self, kinds: set[FaultKind], member: str | None = None) -> list[Applied]:
        return [
            a
            for a in self.ops.active.values()
            if a.kind in kinds and (member is None or member in a.members)
        ]

    async def status(self, args: Mapping[str, Any]) -> dict[str, Any]:
        statuses = await self.cluster.statuses()
        leader, term = agreed_leader(statuses)
        rows = []
        for name in self.names:
            s = statuses.get(name)
            peers = s.get("peers", []) if s else []
            connected = sum(1 for p in peers if isinstance(p, dict) and p.get("connected"))
            rows.append(
                {
                    "member": name,
                    "state": self._state(name),
                    "pid": self.cluster.pid(name),
                    "role": s.get("role") if s else None,
                    "height": s.get("height") if s else None,
                    "term": s.get("term") if s else None,
                    "leader": s.get("leader") if s else None,
                    "peers_connected": connected if s else None,
                    "peers": len(peers) if s else None,
                    "api": self.cluster.api_url(name),
                }
            )
        return {
            "workdir": str(self.cluster.workdir),
            "leader": leader,
            "term": term,
            "members": rows,
            "faults": self.ops.current(),
            "links": self.ops.links.describe(),
        }

    def _state(self, name: str) -> str:
        if name in self.cluster.paused():
            return "paused"
        return "running" if self.cluster.pid(name) is not None else "down"

    async def partition(self, args: Mapping[str, Any]) -> dict[str, Any]:
        spec = args.get("spec")
        if not isinstance(spec, str):
            raise _BadRequest("partition needs a spec, e.g. halves or isolate:m0")
        partition = parse_partition(spec)
        leader = None
        if "leader" in spec:
            leader = await self.ops.leader()
        blocked_edges(partition, self.names, leader=leader)  # refuse a bad spec up front
        applied = await self._start(self._now_fault(FaultKind.PARTITION, spec.strip()))
        return {"id": applied.id, "cut": partition.describe(self.names, leader=leader)}

    async def heal(self, args: Mapping[str, Any]) -> dict[str, Any]:
        ended = [a.id for a in self._active({FaultKind.PARTITION, FaultKind.STALL})]
        for fault_id in ended:
            await self.ops.end(fault_id)
        self.ops.links.net.heal()
        return {"ended": ended}

    async def kill(self, args: Mapping[str, Any]) -> dict[str, Any]:
        member = self._member(args)
        if self.cluster.pid(member) is None:
            raise _BadRequest(f"{member} is not running")
        applied = await self._start(self._now_fault(FaultKind.KILL, member))
        return {"id": applied.id, "member": member}

    async def pause(self, args: Mapping[str, Any]) -> dict[str, Any]:
        member = self._member(args)
        if self._state(member) != "running":
            raise _BadRequest(f"{member} is not running")
        applied = await self._start(self._now_fault(FaultKind.PAUSE, member))
        return {"id": applied.id, "member": member}

    async def resume(self, args: Mapping[str, Any]) -> dict[str, Any]:
        member = self._member(args)
        active = self._active({FaultKind.PAUSE}, member)
        if not active and member not in self.cluster.paused():
            raise _BadRequest(f"{member} is not paused")
        for a in active:
            await self.ops.end(a.id)
        if member in self.cluster.paused():
            await self.cluster.resume(member)
        return {"member": member, "ended": [a.id for a in active]}

    async def restart(self, args: Mapping[str, Any]) -> dict[str, Any]:
        member = self._member(args)
        hard = bool(args.get("hard", False))
        active = self._active({FaultKind.KILL, FaultKind.WIPE}, member)
        if active:
            for a in active:
                await self.ops.end(a.id)
            return {"member": member, "ended": [a.id for a in active]}
        if self.cluster.pid(member) is None:
            await self.cluster.start(member)
            return {"member": member, "started": True}
        kind = FaultKind.RESTART if hard else FaultKind.GRACEFUL_RESTART
        applied = await self._start(self._now_fault(kind, member))
        return {"id": applied.id, "member": member}

    async def latency(self, args: Mapping[str, Any]) -> dict[str, Any]:
        a, b = self._member({"member": args.get("a")}), self._member({"member": args.get("b")})
        if a == b:
            raise _BadRequest("latency needs two different members")
        ms, jitter = args.get("ms"), args.get("jitter_ms", 0)
        for value, what in ((ms, "ms"), (jitter, "jitter_ms")):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise _BadRequest(f"{what} must be a number >= 0, not {value!r}")
        assert isinstance(ms, int | float) and isinstance(jitter, int | float)
        pair = {(a, b), (b, a)}
        ended = []
        for applied in self._active({FaultKind.LATENCY}):
            edges = self.ops.links.latency.get(applied.id, (frozenset(), 0.0, 0.0))[0]
            if set(edges) == pair:
                await self.ops.end(applied.id)
                ended.append(applied.id)
        if ms == 0 and jitter == 0:
            return {"ended": ended}
        fault = self._now_fault(
            FaultKind.LATENCY, f"{a}<->{b}", ms=float(ms), jitter_ms=float(jitter)
        )
        applied = await self._start(fault)
        return {"id": applied.id, "ended": ended}

    async def shut_down(self, args: Mapping[str, Any]) -> dict[str, Any]:
        self.down.set()
        return {"stopping": True}


async def _read_line(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise _BadRequest(f"a request is at most {MAX_REQUEST_BYTES} bytes")
    return data.split(b"\n", 1)[0]


def _parse_request(data: bytes) -> tuple[str, Mapping[str, Any]]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise _BadRequest(f"a request is one JSON line: {exc}") from exc
    if not isinstance(value, dict) or not isinstance(value.get("cmd"), str):
        raise _BadRequest('a request is {"cmd": "...", "args": {...}}')
    args = value.get("args", {})
    if not isinstance(args, dict):
        raise _BadRequest("'args' must be a JSON object")
    return value["cmd"], args


async def _open_listener(path: Path) -> trio.SocketListener:
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise ClusterError(
            f"the control socket path {path} is longer than {_UNIX_PATH_MAX} bytes; "
            "choose a shorter --workdir"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def serve_up(
    workdir: Path,
    config: UpConfig,
    *,
    ready: Callable[[Cluster, Path], None] = lambda cluster, path: None,
) -> None:
    """Run ``netsim up`` in ``workdir`` until ``down``, Ctrl-C, SIGTERM, SIGHUP or
    cancellation; every daemon and relay is stopped on the way out. ``ready`` is called
    once the cluster has a leader and the socket listens."""
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    spec = ClusterSpec(
        members=config.members,
        observers=config.observers,
        max_transactions=config.max_transactions,
        batch_timeout_ms=config.batch_timeout_ms,
        chain_name="netsim-up",
        seed=config.seed,
    )
    seeds = random.Random(config.seed)
    voters = [f"m{i}" for i in range(config.members - config.observers)]
    path = socket_path(workdir)
    async with Cluster(workdir, spec) as cluster:
        try:
            async with trio.open_nursery() as nursery:
                _, links = await start_behind_relays(
                    cluster, nursery, Placement(), random.Random(seeds.getrandbits(64))
                )
                with HistoryWriter(workdir / "events.jsonl") as writer:
                    events = EventLog(writer, trio.current_time())
                    events.emit("run.start", {"scenario": "up", "members": cluster.names})
                    ops = FaultOps(
                        cluster, links, events.emit, random.Random(seeds.getrandbits(64)), voters
                    )
                    server = _Server(cluster, ops, events)
                    listener = await _open_listener(path)
                    serve = functools.partial(
                        trio.serve_listeners, server.handle, [listener], handler_nursery=nursery
                    )
                    nursery.start_soon(serve)
                    # started, not start_soon: a Ctrl-C right after "ready" must
                    # find the receiver open, or trio turns it into KeyboardInterrupt
                    await nursery.start(_watch_signals, server.down)
                    ready(cluster, path)
                    await server.down.wait()
                    await ops.end_all()
                    await cluster.stop_all()
                    events.emit("run.end", {})
                    nursery.cancel_scope.cancel()
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def _watch_signals(
    down: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Ctrl-C, SIGTERM and SIGHUP take the cluster down as ``netsim down`` does."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            down.set()
            return
