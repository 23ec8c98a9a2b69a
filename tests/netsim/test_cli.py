"""The ``netsim`` command: mistakes give one line and exit 2, ``netsim run smoke``
passes end to end, Ctrl-C stops every daemon, and a ``netsim up`` cluster is
partitioned, healed and taken down through its control socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from netsim.cli import main
from tests.procs import Lines

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
SHIPPED = sorted(p.stem for p in (ROOT / "netsim" / "scenarios").glob("*.toml"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def python(cwd: Path, code: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -c code args`` in a child process, from ``cwd``, with pipes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def netsim(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    """``netsim args`` in a child process, from ``cwd``, with pipes."""
    return python(cwd, "from netsim.cli import main; main()", *args)


def finish(proc: subprocess.Popen[bytes], timeout_s: float = DEADLINE_S) -> tuple[int, str, str]:
    """Wait for ``proc`` (killing it past the deadline) and return code, out, err."""
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"netsim did not finish in {timeout_s} s: {err.decode()}") from None
    return proc.returncode, out.decode(), err.decode()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def member_pids(workdir: Path) -> list[int]:
    state = json.loads((workdir / "cluster.json").read_text())
    return [m["pid"] for m in state["members"] if m["pid"] is not None]


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def wait_until(check: object, what: str, timeout_s: float = DEADLINE_S) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # a poll interval


# --- mistakes --------------------------------------------------------------------


def test_scenarios_lists_every_shipped_one_with_its_description() -> None:
    result = invoke("scenarios")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == SHIPPED
    assert all(len(line) > 40 for line in lines)


def test_an_unknown_scenario_is_a_one_line_usage_error() -> None:
    result = invoke("run", "no-such-scenario")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no scenario 'no-such-scenario'")
    assert "smoke" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_scenario_file_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[scenario]\nname = "b"\ndescription = "x"\nduration_s = 10\nrecovery_bound_s = 5\n'
        '[[faults]]\nat_s = -1\nkind = "melt"\ntarget = "m0"\n'
    )
    result = invoke("run", str(bad), "--workdir", str(tmp_path / "w"))
    assert result.exit_code == 2
    assert "faults[0].at_s" in result.stderr and "faults[0].kind" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()


def test_a_work_directory_holding_a_cluster_is_refused(tmp_path: Path) -> None:
    (tmp_path / "network.toml").write_text("")
    result = invoke("run", "smoke", "--workdir", str(tmp_path))
    assert result.exit_code == 2
    assert "already holds a cluster" in result.stderr


def test_a_bad_duration_is_a_usage_error() -> None:
    assert invoke("run", "smoke", "--duration", "0").exit_code == 2


def test_commands_without_a_cluster_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("status")
    assert result.exit_code == 1
    assert "no cluster is up" in result.stderr and "netsim up" in result.stderr
    result = invoke("heal", "--workdir", str(tmp_path))
    assert result.exit_code == 1
    assert "no `netsim up` answers" in result.stderr


# --- end to end ------------------------------------------------------------------


def test_netsim_run_smoke_passes_and_writes_the_report(tmp_path: Path) -> None:
    work = tmp_path / "smoke"
    code, out, err = finish(
        netsim(tmp_path, "run", "smoke", "--duration", "8", "--workdir", str(work))
    )
    assert code == 0, out + err
    assert out.startswith("PASS: scenario smoke")
    assert "Traceback" not in err
    assert (work / "report.txt").read_text().startswith("PASS")
    report = json.loads((work / "report.json").read_text())
    assert report["verdict"]["ok"] is True
    assert report["load"]["tx_per_s"] > 5
    assert report["load"]["committed"] > 50
    assert (work / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"report:   {work / 'report.txt'}" in out
    state = json.loads((work / "cluster.json").read_text())
    assert {m["state"] for m in state["members"]} == {"down"}


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_and_sigterm_stop_every_member(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    work = tmp_path / "interrupted"
    proc = netsim(tmp_path, "run", "smoke", "--no-progress", "--workdir", str(work))
    pids: list[int] = []
    try:
        events = work / "events.jsonl"
        wait_until(lambda: events.exists() and '"sample"' in events.read_text(), "samples")
        pids = member_pids(work)
        assert len(pids) == 3
        proc.send_signal(sig)
        exit_code, _, err = finish(proc)
        assert exit_code == code, err
        assert "stopped, every member and relay with it" in err and "Traceback" not in err
        for pid in pids:
            assert gone(pid), f"member pid {pid} survived Ctrl-C"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_leftovers(pids)


def until_ready(up: subprocess.Popen[bytes]) -> list[str]:
    """The lines ``netsim up`` prints up to its "ready" line, that one included."""
    lines = Lines(up)
    deadline = time.monotonic() + DEADLINE_S
    seen: list[str] = []
    while not seen or not seen[-1].startswith("ready"):
        line = lines.next(deadline)
        assert line is not None, "netsim up ended before it was ready:\n" + "\n".join(seen)
        seen.append(line)
    return seen


def test_netsim_up_partition_heal_down(tmp_path: Path) -> None:
    up = netsim(tmp_path, "up", "--members", "3")
    pids: list[int] = []
    try:
        seen = until_ready(up)
        assert [s.split()[0] for s in seen[:3]] == ["m0", "m1", "m2"]
        assert all("http://127.0.0.1:" in s for s in seen[:3])
        current = tmp_path / "netsim-work" / "current"
        work = current.resolve()
        pids = member_pids(work)
        assert len(pids) == 3

        code, out, err = finish(netsim(tmp_path, "status"))
        assert code == 0, err
        for name in ("m0", "m1", "m2"):
            assert name in out
        assert out.count("running") == 3 and "peers connected" in out

        code, out, err = finish(netsim(tmp_path, "partition", "isolate:m0"))
        assert code == 0, err
        assert out.startswith("fault #1: partition m0 | m1,m2")
        code, out, err = finish(netsim(tmp_path, "status"))
        assert code == 0 and "#1 partition isolate:m0" in out

        code, out, err = finish(netsim(tmp_path, "partition", "thirds"))
        assert code == 2 and err.startswith("error: unknown partition spec")

        code, out, err = finish(netsim(tmp_path, "heal"))
        assert code == 0, err
        assert out.strip() == "healed: #1"

        code, out, err = finish(netsim(tmp_path, "down"))
        assert code == 0, err
        code, out, err = finish(up)
        assert code == 0, err
        assert "down: every member and relay stopped" in out
        for pid in pids:
            assert gone(pid), f"member pid {pid} survived netsim down"
        assert not (work / "control.sock").exists()
        events = [json.loads(x) for x in (work / "events.jsonl").read_text().splitlines()]
        faults = [(e["kind"], e.get("fault"), e.get("target")) for e in events]
        assert ("fault.start", "partition", "isolate:m0") in faults
        assert ("fault.end", "partition", "isolate:m0") in faults
        assert events[-1]["kind"] == "run.end"
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        kill_leftovers(pids)


CTRL_C_AT_READY = """
import functools, os, signal, sys
from pathlib import Path
import trio
from netsim import control

def ready(cluster, sock):
    os.kill(os.getpid(), signal.SIGINT)

config = control.UpConfig(members=1, observers=0, seed=0)
trio.run(functools.partial(control.serve_up, Path(sys.argv[1]), config, ready=ready))
print("down")
"""


def test_ctrl_c_the_moment_netsim_up_is_ready_takes_it_down(tmp_path: Path) -> None:
    # the race CI once lost: Ctrl-C right after "ready" beat the signal watcher to
    # its receiver and became a KeyboardInterrupt (exit 130, not a clean down)
    code, out, err = finish(python(tmp_path, CTRL_C_AT_READY, str(tmp_path / "up")))
    assert code == 0, err
    assert out.splitlines()[-1] == "down" and "KeyboardInterrupt" not in err
    assert not (tmp_path / "up" / "control.sock").exists()


def test_ctrl_c_takes_netsim_up_down(tmp_path: Path) -> None:
    up = netsim(tmp_path, "up", "--members", "1")
    pids: list[int] = []
    try:
        until_ready(up)
        work = (tmp_path / "netsim-work" / "current").resolve()
        pids = member_pids(work)
        assert len(pids) == 1
        up.send_signal(signal.SIGINT)
        code, out, err = finish(up)
        assert code == 0, err
        assert "down: every member and relay stopped" in out and "Traceback" not in err
        assert gone(pids[0]), f"member pid {pids[0]} survived Ctrl-C"
        assert not (work / "control.sock").exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        kill_leftovers(pids)
