"""The ``netsim`` command: run scenarios, or keep a cluster up and fault it by hand.

``netsim run SCENARIO`` runs a scenario file (or a shipped one by name) and prints
its report, verdict first; the exit code is 0 on PASS, 1 on FAIL (or when the run
could not be carried out) and 2 for a mistake in the command line or the scenario.
Ctrl-C stops a run with every member and relay (exit 130; SIGTERM and SIGHUP
likewise, exit 143). ``netsim up`` keeps a cluster running behind relays until
``netsim down`` or Ctrl-C (exit 0); ``status``, ``partition``, ``heal``, ``kill``,
``restart``, ``pause``, ``resume`` and ``latency`` act on it through its control
socket (``netsim.control``), and exit 1 when no cluster answers, 2 when it refuses the command.

Every expected failure is one ``error: ...`` message on stderr, never a traceback.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import click
import trio
from rich.console import Console
from rich.table import Table

from netsim import control
from netsim.cluster import Cluster, ClusterError
from netsim.history import HistoryError
from netsim.runner import RunError, run_scenario
from netsim.scenario import Scenario, ScenarioError, load_scenario
from netsim.workload import WorkloadError
from p2pledger import __version__, log
from p2pledger.errors import P2PLedgerError

__all__ = [
    "EXIT_FAIL",
    "EXIT_PASS",
    "EXIT_USAGE",
    "SCENARIOS",
    "main",
    "resolve_scenario",
]

EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143
#: The scenarios shipped with netsim.
SCENARIOS: Final = Path(__file__).resolve().parent / "scenarios"
WORK_ROOT: Final = Path("netsim-work")

#: Failures of a run that are not a verdict: reported in one line, exit 1.
_RUN_FAILURES: Final = (
    RunError,
    ClusterError,
    WorkloadError,
    HistoryError,
    P2PLedgerError,
    OSError,
)


_T = TypeVar("_T")


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _find(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kinds)
            if found is not None:
                return found
        return None
    return exc if isinstance(exc, kinds) else None


def _trio_run(fn: Callable[[], Any], what: str) -> Any:
    """``trio.run(fn)``; failures become one-line errors, Ctrl-C exit 130."""
    try:
        return trio.run(fn)
    except BaseException as exc:
        terminated = _find(exc, (_Terminated,))
        ctrl_c = isinstance(terminated, _Terminated) and terminated.signal == signal.SIGINT
        if ctrl_c or _find(exc, (KeyboardInterrupt,)) is not None:
            click.echo(f"\ninterrupted: {what} stopped, every member and relay with it", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if terminated is not None:
            click.echo(f"{terminated}: {what} stopped, every member and relay with it", err=True)
            sys.exit(EXIT_TERMINATED)
        found = _find(exc, _RUN_FAILURES)
        if found is not None:
            _fail(f"{what} failed: {found}", EXIT_FAIL)
        raise


class _Terminated(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived (``signal``; None: the run was cancelled
    otherwise): the run was cancelled and cleaned up."""

    def __init__(self, signal_number: int | None) -> None:
        self.signal = None if signal_number is None else signal.Signals(signal_number)
        super().__init__(self.signal.name if self.signal is not None else "cancelled")


async def _until_terminated(work: Coroutine[Any, Any, _T]) -> _T:
    """Await ``work``; SIGINT (Ctrl-C), SIGTERM or SIGHUP cancel it, so every member
    and relay is stopped on the way out, and raise _Terminated naming the signal.

    Ctrl-C is received here like the others rather than left to trio's
    KeyboardInterrupt, which is raised wherever the main thread happens to be and
    can be lost there (a run once went on to its end after Ctrl-C)."""
    done: list[_T] = []
    signalled: list[int] = []

    async def watch(
        scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            task_status.started()
            async for number in signals:
                signalled.append(number)
                scope.cancel()
                return

    async with trio.open_nursery() as nursery:
        await nursery.start(watch, nursery.cancel_scope)  # open before the work starts
        done.append(await work)
        nursery.cancel_scope.cancel()
    if signalled or not done:
        raise _Terminated(signalled[0] if signalled else None)
    return done[0]


def resolve_scenario(text: str) -> Path:
    """A scenario file: ``text`` itself if it is a path, else a shipped one by name."""
    path = Path(text)
    if path.suffix == ".toml" or "/" in text or path.exists():
        return path
    shipped = SCENARIOS / f"{text}.toml"
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.toml")))
    _fail(f"no scenario {text!r}: not a file, and not a shipped scenario ({names})")


def _default_workdir(name: str) -> Path:
    return WORK_ROOT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_workdir(workdir: Path) -> None:
    if (workdir / "network.toml").exists():
        _fail(f"{workdir} already holds a cluster; choose another --workdir or delete it")
    if workdir.exists() and not workdir.is_dir():
        _fail(f"{workdir} exists and is not a directory")


@click.group()
@click.version_option(__version__, prog_name="netsim")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="netsim's own log lines (on stderr); the members log to WORK/m<i>.log.",
)
def main(log_level: str) -> None:
    """Run many p2pledger members on one machine under faults, and judge the result."""
    log.configure("console", log_level, stream=sys.stderr)


# --- scenarios ------------------------------------------------------------------


@main.command("run")
@click.argument("scenario")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the run's files go (default: ./netsim-work/<scenario>-<time>).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds of load instead of the scenario's duration_s.",
)
@click.option("--no-progress", is_flag=True, help="No live status line on stderr.")
def run_command(
    scenario: str, workdir: Path | None, duration: float | None, no_progress: bool
) -> None:
    """Run SCENARIO (a .toml file, or a shipped scenario's name) and print its report."""
    path = resolve_scenario(scenario)
    try:
        loaded = load_scenario(path)
    except ScenarioError as exc:
        _fail(str(exc))
    workdir = workdir or _default_workdir(loaded.name)
    _check_workdir(workdir)
    window = duration if duration is not None else loaded.duration_s
    click.echo(
        f"netsim: {loaded.name}, {loaded.cluster.members} members, {window:g} s of load, "
        f"seed {loaded.seed}, in {workdir}",
        err=True,
    )

    async def go() -> Any:
        return await _until_terminated(
            run_scenario(loaded, workdir, duration_override=duration, progress=not no_progress)
        )

    result = _trio_run(go, f"scenario {loaded.name}")
    click.echo(result.text, nl=False)
    click.echo("")
    for label, p in (
        ("report", result.paths.report_txt),
        ("json", result.paths.report_json),
        ("timeline", result.paths.timeline_png),
        ("events", result.paths.events),
        ("history", result.paths.history),
        ("ledgers", result.paths.ledgers),
    ):
        click.echo(f"{label + ':':10}{p}")
    sys.exit(EXIT_PASS if result.ok else EXIT_FAIL)


@main.command("scenarios")
def scenarios_command() -> None:
    """List the shipped scenarios with their descriptions."""
    found: list[Scenario] = []
    for path in sorted(SCENARIOS.glob("*.toml")):
        try:
            found.append(load_scenario(path))
        except ScenarioError as exc:
            _fail(str(exc), EXIT_FAIL)
    width = max((len(s.name) for s in found), default=0)
    for s in found:
        head = f"{s.name:{width}}  {s.duration_s:>4g} s  {s.cluster.members} members"
        click.echo(f"{head}  {s.description}")


# --- a cluster kept up ----------------------------------------------------------------


@main.command("up")
@click.option("--members", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--observers", type=click.IntRange(0, 63), default=0, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the cluster lives (default: ./netsim-work/up-<time>).",
)
def up_command(members: int, observers: int, seed: int, workdir: Path | None) -> None:
    """Start a cluster behind relays and keep it up until Ctrl-C or `netsim down`."""
    if observers >= members:
        _fail(f"--observers {observers} of --members {members} leaves no voter")
    workdir = workdir or _default_workdir("up")
    _check_workdir(workdir)
    config = control.UpConfig(members=members, observers=observers, seed=seed)

    def ready(cluster: Cluster, sock: Path) -> None:
        control.record_current(cluster.workdir)
        for info in cluster.members:
            click.echo(f"{info.name}  {info.api_url}  (log {info.log})")
        click.echo(f"control socket: {sock}")
        click.echo(f"work directory: {cluster.workdir}")
        click.echo("ready: stop with Ctrl-C or `netsim down`")
        sys.stdout.flush()

    async def go() -> None:
        await control.serve_up(workdir, config, ready=ready)

    _trio_run(go, "netsim up")
    click.echo("down: every member and relay stopped")


_workdir_option = click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The `netsim up` work directory (default: the most recent, ./netsim-work/current).",
)


def _ask(workdir: Path | None, cmd: str, **args: Any) -> Any:
    try:
        where = workdir if workdir is not None else control.current_workdir()
        return control.request(where, cmd, args)
    except control.Refused as exc:
        _fail(str(exc), EXIT_USAGE)
    except control.ControlError as exc:
        _fail(str(exc), EXIT_FAIL)


@main.command("status")
@_workdir_option
def status_command(workdir: Path | None) -> None:
    """Each member's state, height, term, leader and connected peers."""
    result = _ask(workdir, "status")
    table = Table(title=f"netsim up: {result['workdir']}")
    for column in ("member", "state", "height", "term", "leader", "peers connected"):
        table.add_column(column, justify="right" if column in ("height", "term") else "left")
    for row in result["members"]:
        peers = "-" if row["peers"] is None else f"{row['peers_connected']}/{row['peers']}"
        table.add_row(
            row["member"],
            row["state"],
            _dash(row["height"]),
            _dash(row["term"]),
            _dash(row["leader"]),
            peers,
        )
    console = Console()
    console.print(table)
    console.print(f"leader: {result['leader'] or '-'} (term {result['term']})")
    console.print("faults: " + (", ".join(result["faults"]) or "none"))


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


@main.command("partition")
@click.argument("spec")
@_workdir_option
def partition_command(spec: str, workdir: Path | None) -> None:
    """Block the links of partition SPEC (halves, isolate:m0, isolate-leader, a,b|c...)."""
    result = _ask(workdir, "partition", spec=spec)
    click.echo(f"fault #{result['id']}: partition {result['cut']}")


@main.command("heal")
@_workdir_option
def heal_command(workdir: Path | None) -> None:
    """End every partition and stall."""
    result = _ask(workdir, "heal")
    ended = ", ".join(f"#{i}" for i in result["ended"]) or "none in force"
    click.echo(f"healed: {ended}")


@main.command("kill")
@click.argument("member")
@_workdir_option
def kill_command(member: str, workdir: Path | None) -> None:
    """SIGKILL MEMBER's daemon (`netsim restart MEMBER` brings it back)."""
    result = _ask(workdir, "kill", member=member)
    click.echo(f"fault #{result['id']}: killed {member}")


@main.command("restart")
@click.argument("member")
@click.option("--hard", is_flag=True, help="SIGKILL a running member instead of SIGTERM.")
@_workdir_option
def restart_command(member: str, hard: bool, workdir: Path | None) -> None:
    """Start MEMBER again if it is down, else restart it (SIGTERM, or SIGKILL with --hard)."""
    _ask(workdir, "restart", member=member, hard=hard)
    click.echo(f"restarted {member}")


@main.command("pause")
@click.argument("member")
@_workdir_option
def pause_command(member: str, workdir: Path | None) -> None:
    """SIGSTOP MEMBER's daemon (`netsim resume MEMBER` continues it)."""
    result = _ask(workdir, "pause", member=member)
    click.echo(f"fault #{result['id']}: paused {member}")


@main.command("resume")
@click.argument("member")
@_workdir_option
def resume_command(member: str, workdir: Path | None) -> None:
    """SIGCONT a paused MEMBER."""
    _ask(workdir, "resume", member=member)
    click.echo(f"resumed {member}")


@main.command("latency")
@click.argument("a")
@click.argument("b")
@click.argument("ms", type=click.FloatRange(min=0))
@click.option("--jitter", type=click.FloatRange(min=0), default=0.0, help="Jitter in ms.")
@_workdir_option
def latency_command(a: str, b: str, ms: float, jitter: float, workdir: Path | None) -> None:
    """Delay the bytes between A and B by MS ms each way (0 removes the delay)."""
    result = _ask(workdir, "latency", a=a, b=b, ms=ms, jitter_ms=jitter)
    if "id" in result:
        click.echo(f"fault #{result['id']}: {a}<->{b} {ms:g} ms each way, jitter {jitter:g} ms")
    else:
        click.echo(f"{a}<->{b}: no added latency")


@main.command("down")
@_workdir_option
def down_command(workdir: Path | None) -> None:
    """Stop the `netsim up` cluster: every member and relay."""
    _ask(workdir, "down")
    click.echo("stopping: `netsim up` stops every member and exits")
