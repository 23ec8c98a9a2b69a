"""node.toml: one member's local settings (identity, files, listeners, logs, limits).

Each institution writes its own node.toml (``p2pledger init`` does); it names the
member it runs as and points at the shared network.toml. Relative paths are resolved
against the file's own directory, so a node directory can be moved as a whole.
Loading checks the file only: reading the key and the network is the caller's job,
and ``check_node_against_network`` then ties the two together.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar

import tomli_w

from p2pledger.config._fields import Problems, Table, describe, quote
from p2pledger.config._files import parse_toml, read_text
from p2pledger.config._names import NAME_PATTERN, read_address, read_name
from p2pledger.errors import ConfigError, ConfigProblem
from p2pledger.membership import Network

__all__ = [
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "NodeConfig",
    "NodeLimits",
    "check_node_against_network",
    "load_node",
    "node_to_toml",
    "parse_node",
]


_DEFAULT_API: Final = "127.0.0.1:8401"


class LogFormat(enum.StrEnum):
    """How log lines are written: JSON lines for services, colours for people."""

    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"  # console on a terminal, JSON otherwise


class LogLevel(enum.StrEnum):
    """The least severe level that is logged."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """The ``[log]`` table."""

    format: LogFormat = LogFormat.AUTO
    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLimits:
    """The ``[limits]`` table: explicit bounds on what peers and clients can make us hold."""

    max_frame_bytes: int = 4 * 1024 * 1024
    max_tx_bytes: int = 64 * 1024
    mempool_max_txs: int = 20_000
    mempool_max_bytes: int = 64 * 1024 * 1024
    peer_queue_max_messages: int = 10_000
    peer_queue_max_bytes: int = 32 * 1024 * 1024
    handshake_timeout_s: float = 5.0
    #: Threads that verify transactions' signatures (0: one per core).
    verify_threads: int = 0
    #: Entry checks and block building and applying run in worker threads, so that a
    #: member uses more than one core. False runs them on the event loop's thread:
    #: less CPU per transaction where the member's cores are busy with other members
    #: anyway (several members on one machine, as netsim and the benchmark run them).
    worker_threads: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """A checked node.toml; every path is absolute."""

    name: str
    network: Path
    key_file: Path
    data_dir: Path
    listen: str
    api: str = _DEFAULT_API
    log: LogConfig = field(default_factory=LogConfig)
    limits: NodeLimits = field(default_factory=NodeLimits)
    #: Where to dial a member instead of its network.toml address (member -> host:port):
    #: a private link, a NAT hairpin, or a test harness's relay. Local to this daemon.
    dial: Mapping[str, str] = field(default_factory=dict)
    #: The member's next node key during a rotation: the daemon switches to it when
    #: the membership in force gives the member its public key.
    next_key_file: Path | None = None
    #: This member is joining: its name need not be in the founding network file
    #: (``p2pledger init --join``); it is let in once a membership update names it.
    join: bool = False


_ROOT_KEYS: Final = (
    "name",
    "network",
    "key_file",
    "data_dir",
    "listen",
    "api",
    "log",
    "limits",
    "dial",
    "next_key_file",
    "join",
)
_LOG_KEYS: Final = ("format", "level")
_LIMIT_KEYS: Final = tuple(f.name for f in fields(NodeLimits))
_DEFAULT_KEY_FILE: Final = "node.key"
_DEFAULT_DATA_DIR: Final = "data"
_GENERATED: Final = "<node_to_toml>"
_TIMEOUT: Final = "handshake_timeout_s"
_THREADS: Final = "verify_threads"
_WORKERS: Final = "worker_threads"
_E = TypeVar("_E", bound=enum.StrEnum)
_NAME: Final = re.compile(NAME_PATTERN)
_HEADER: Final = (
    "# node.toml: this member's local settings. Relative paths are resolved against\n"
    "# this file's directory. See config/node.example.toml for what each key means.\n"
)


def load_node(path: Path) -> NodeConfig:
    """Read and check a node.toml; raise ConfigError listing every problem.

    The key file and the network file it names are not opened here.
    """
    problems = Problems(str(path))
    text = read_text(path, problems)
    if text is None:
        raise problems.error()
    return parse_node(text, source=str(path), base_dir=path.absolute().parent)


def parse_node(text: str, *, source: str, base_dir: Path) -> NodeConfig:
    """Check the text of a node.toml; relative paths are taken from ``base_dir``."""
    problems = Problems(source)
    data = parse_toml(text, problems)
    base = Path(os.path.abspath(base_dir))
    config = None if data is None else _read_node(Table(data, "", problems, _ROOT_KEYS), base)
    if config is None or problems:
        raise problems.error()
    return config


def node_to_toml(config: NodeConfig, *, relative_to: Path | None = None) -> str:
    """The node.toml text of ``config``; ConfigError if it would not load back.

    Paths are written relative to ``relative_to`` (the directory the file will be
    saved in) when it is given, and absolute otherwise.
    """
    base = Path(os.path.abspath(relative_to)) if relative_to is not None else None
    top: dict[str, Any] = {
        "name": config.name,
        "network": _path_text(config.network, base),
        "key_file": _path_text(config.key_file, base),
        "data_dir": _path_text(config.data_dir, base),
        "listen": config.listen,
        "api": config.api,
        "log": {"format": config.log.format.value, "level": config.log.level.value},
        "limits": {k: getattr(config.limits, k) for k in _LIMIT_KEYS},
    }
    if config.next_key_file is not None:
        top["next_key_file"] = _path_text(config.next_key_file, base)
    if config.join:
        top["join"] = True
    if config.dial:
        top["dial"] = dict(sorted(config.dial.items()))
    text = _HEADER + "\n" + tomli_w.dumps(top)
    parse_node(text, source=_GENERATED, base_dir=base or Path("/"))  # never write what won't load
    return text


def check_node_against_network(node: NodeConfig, network: Network, source: str) -> None:
    """Raise ConfigError unless the node's name is a member of ``network`` (or the node
    is joining: ``join = true``) and no ``[dial]`` entry names this node itself.

    ``network`` is the founding file: the membership in force lives on the ledger, and
    the daemon checks its name and key against that when it starts. A ``[dial]`` entry
    may name a member that joined later (it is not in the founding file); one that
    names no member of the membership in force is simply unused.
    """
    names = ", ".join(m.name for m in network.members) or "none"
    problems: list[ConfigProblem] = []
    if network.member(node.name) is None and not node.join:
        reason = (
            f"{quote(node.name)} is not a member of chain {quote(network.chain_name)} "
            f"(network file {node.network}); its members are: {names}. A member that "
            "joins the chain later sets join = true (p2pledger init --join)"
        )
        problems.append(ConfigProblem(source, "name", reason))
    for peer in node.dial:
        if peer == node.name:
            problems.append(
                ConfigProblem(source, f"dial.{peer}", "a member does not dial itself; remove it")
            )
    if problems:
        raise ConfigError(problems)


def _path_text(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    try:
        return os.path.relpath(path, base)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path)


def _read_node(root: Table, base: Path) -> NodeConfig | None:
    name = read_name(root, "name")
    network = _read_path(root, "network", base)
    key_file = _read_path(root, "key_file", base, default=_DEFAULT_KEY_FILE)
    data_dir = _read_path(root, "data_dir", base, default=_DEFAULT_DATA_DIR)
    listen = read_address(root, "listen")
    api = read_address(root, "api", default=_DEFAULT_API)
    log = _read_log(root.table("log", _LOG_KEYS))
    limits = _read_limits(root.table("limits", _LIMIT_KEYS))
    dial = _read_dial(root)
    next_key_file = (
        _read_path(root, "next_key_file", base)
        if root.raw("next_key_file", required=False) is not None
        else None
    )
    if next_key_file is not None and next_key_file == key_file:
        root.problem("next_key_file", "is the key_file itself; name the new key's file")
    join = _read_bool(root, "join", default=False)
    if (
        root.problems
        or name is None
        or network is None
        or key_file is None
        or data_dir is None
        or listen is None
        or api is None
        or log is None
        or limits is None
        or dial is None
        or join is None
    ):
        return None
    return NodeConfig(
        name=name,
        network=network,
        key_file=key_file,
        data_dir=data_dir,
        listen=listen,
        api=api,
        log=log,
        limits=limits,
        dial=dial,
        next_key_file=next_key_file,
        join=join,
    )


def _read_bool(t: Table, key: str, *, default: bool) -> bool | None:
    value = t.raw(key, required=False)
    if value is None:
        return default
    if not isinstance(value, bool):
        t.problem(key, f"expected true or false, got {describe(value)}")
        return None
    return value


def _read_dial(root: Table) -> dict[str, str] | None:
    value = root.raw("dial", required=False)
    if value is None:
        return {}
    if not isinstance(value, dict):
        root.problem(
            "dial", f'expected a table [dial] of member = "host:port", got {describe(value)}'
        )
        return None
    t = Table(value, "dial", root.problems, allowed=tuple(value))
    out: dict[str, str] = {}
    for peer in value:
        if not _NAME.fullmatch(peer):
            t.problem(peer, f"{quote(peer)} is not a member name")
            continue
        address = read_address(t, peer)
        if address is not None:
            out[peer] = address
    return out if len(out) == len(value) else None


def _read_path(t: Table, key: str, base: Path, *, default: str | None = None) -> Path | None:
    text = t.string(key, default=default)
    if text is None:
        return None
    if not text or "\0" in text:
        t.problem(key, f"{quote(text)} is not a usable path")
        return None
    return Path(os.path.normpath(base / text))


def _read_choice(t: Table, key: str, kind: type[_E], default: _E) -> _E | None:
    text = t.string(key, default=default.value)
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        allowed = ", ".join(f'"{e.value}"' for e in kind)
        t.problem(key, f"{quote(text)} is not one of {allowed}")
        return None


def _read_log(t: Table | None) -> LogConfig | None:
    if t is None:
        return None
    fmt = _read_choice(t, "format", LogFormat, LogFormat.AUTO)
    level = _read_choice(t, "level", LogLevel, LogLevel.INFO)
    if fmt is None or level is None:
        return None
    return LogConfig(format=fmt, level=level)


def _read_limits(t: Table | None) -> NodeLimits | None:
    if t is None:
        return None
    d = NodeLimits()
    ints = {
        k: t.integer(k, default=getattr(d, k), minimum=0 if k == _THREADS else 1)
        for k in _LIMIT_KEYS
        if k not in (_TIMEOUT, _WORKERS)
    }
    timeout = t.number(_TIMEOUT, default=d.handshake_timeout_s)
    workers = _read_bool(t, _WORKERS, default=d.worker_threads)
    values = {k: v for k, v in ints.items() if v is not None}
    if timeout is None or workers is None or len(values) != len(ints):
        return None
    tx = values["max_tx_bytes"]
    ok = True
    if not workers and values[_THREADS]:
        t.problem(
            _THREADS,
            f"is {values[_THREADS]}, but worker_threads = false checks signatures on the "
            "event loop's thread; remove one of the two settings",
        )
        ok = False
    for bound in ("max_frame_bytes", "mempool_max_bytes"):
        if tx > values[bound]:
            t.problem(
                "max_tx_bytes",
                f"{tx} is more than {bound} ({values[bound]}); one transaction must fit in it",
            )
            ok = False
    return NodeLimits(**values, handshake_timeout_s=timeout, worker_threads=workers) if ok else None
