"""Child processes in tests: started with the repo on the path, read line by line
with a deadline (never a sleep), and always reaped."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE_TIMEOUT = 30.0


def start_module(module: str, *args: str) -> subprocess.Popen[bytes]:
    """Run ``python -m module args`` from the repository root, with pipes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Kill ``proc`` if it still runs, reap it, and return what it wrote on stderr."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=LINE_TIMEOUT)
    err = b""
    if proc.stderr is not None and not proc.stderr.closed:
        err = proc.stderr.read()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return err.decode(errors="replace")


class Lines:
    """Lines from a child's stdout, each awaited with a deadline (no sleeps)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._buffer = b""
        self._eof = False

    def next(self, deadline: float) -> str | None:
        """The next line; None at end of output; TimeoutError once ``deadline`` passes."""
        while b"\n" not in self._buffer:
            if self._eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no line from the child before the deadline")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 65536)
                self._eof = not chunk
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def drain(self, deadline: float) -> list[str]:
        """Every remaining whole line, up to end of output (a dead child's last words)."""
        rest: list[str] = []
        while (line := self.next(deadline)) is not None:
            rest.append(line)
        return rest
