"""Where the machine's CPU goes during one load step, native code included.

py-spy sees Python frames only, and with ``--gil`` only the thread holding the GIL,
so it cannot say how much of a member is Ed25519 (PyNaCl releases the GIL), LMDB or
the kernel. ``perf record -a`` samples every CPU, so the benchmark can split all of
the machine's busy time by who ran (each member, the load generator, anything else),
by the member thread's job and by the code that ran:

- the job comes from the thread name: trio names each worker thread after the
  function it runs ("work from ..." is the verification pool, "_apply_sync" the
  apply step, "_build" block building, "_persist" the Raft log); the main thread
  (trio's loop: HTTP, gossip, Raft messages) keeps the process name;
- the code comes from the shared object that held the sample: libsodium is Ed25519
  (and the links' AEAD), libpython the interpreter, and so on.

``perf`` must be installed and allowed to sample the whole system (root, or
``kernel.perf_event_paranoid`` at most 0); otherwise the summary says why not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["PerfRecorder", "summarize_perf"]

#: Thread-name prefixes (as the kernel keeps them, 15 characters) and their job.
_JOBS: tuple[tuple[str, str], ...] = (
    ("work from", "verify"),
    ("_apply_sync", "apply"),
    ("_build", "build"),
    ("_persist", "raft_log"),
)

#: Shared-object names (a substring) and the code they stand for; the first match wins.
_CODE: tuple[tuple[str, str], ...] = (
    ("_sodium", "libsodium (Ed25519, AEAD)"),
    ("libpython", "interpreter"),
    ("kernel", "kernel"),
    ("_cbor2", "cbor2"),
    ("lmdb", "lmdb"),
    ("cpython-3", "lmdb"),  # py-lmdb's extension is named cpython.cpython-3xx-*.so
    ("libcrypto", "openssl (SHA-256)"),
    ("_hashlib", "openssl (SHA-256)"),
    ("libc.so", "libc"),
    ("_json", "json"),
)

# " comm with spaces 12345/12346   7f00aa symbol+0x1f (/path/lib.so)" as printed by
# ``perf script -F comm,pid,tid,ip,sym,dso`` (the comm may itself hold spaces).
_LINE = re.compile(r"^\s*(.*?)\s+(\d+)/(\d+)\s+[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$")


def _job(comm: str, main_names: Iterable[str]) -> str:
    for prefix, job in _JOBS:
        if comm.startswith(prefix):
            return job
    if comm in main_names:
        return "main (trio loop)"
    return "other threads"


def _code(dso: str) -> str:
    for part, code in _CODE:
        if part in dso:
            return code
    return "other code"


def summarize_perf(
    script: str,
    roles: Mapping[int, str],
    *,
    members: Iterable[str],
    main_names: Iterable[str] = ("python", "python3", "p2pledger"),
    top: int = 12,
) -> dict[str, Any]:
    """Shares (percent of all samples, idle included) from ``perf script`` text.

    ``roles`` names the processes of interest by pid (the members, the load
    generator); every other process counts as "other processes", and the idle task
    (pid 0) as "idle". Each named process is split by thread job and by code, and
    the ``members`` (role names) are also added up."""
    names = frozenset(main_names)
    member_roles = frozenset(members)
    by_role: Counter[str] = Counter()
    by_job: dict[str, Counter[str]] = {}
    by_code: dict[str, Counter[str]] = {}
    symbols: Counter[str] = Counter()
    total = 0
    for line in script.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        comm, pid_text, _, sym, dso = match.groups()
        pid = int(pid_text)
        total += 1
        if pid == 0:
            by_role["idle"] += 1
            continue
        role = roles.get(pid)
        if role is None:
            by_role["other processes"] += 1
            continue
        by_role[role] += 1
        code = _code(dso)
        by_job.setdefault(role, Counter())[_job(comm, names)] += 1
        by_code.setdefault(role, Counter())[code] += 1
        if role in member_roles:
            symbols[f"{sym.split('+')[0]} ({code})"] += 1
    if not total:
        return {"error": "perf recorded no samples"}

    def share(counter: Counter[str]) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counter.most_common()}

    everything_code: Counter[str] = Counter()
    everything_job: Counter[str] = Counter()
    for role in member_roles & by_job.keys():
        everything_code.update(by_code[role])
        everything_job.update(by_job[role])
    return {
        "samples": total,
        "percent_by_process": share(by_role),
        "percent_by_job": {role: share(by_job[role]) for role in sorted(by_job)},
        "percent_by_code": {role: share(by_code[role]) for role in sorted(by_code)},
        "all_members_by_job": share(everything_job),
        "all_members_by_code": share(everything_code),
        "top_symbols": dict(list(share(symbols).items())[:top]),
    }


class PerfRecorder:
    """``perf record -a`` for one step, then its summary (``finish``)."""

    def __init__(self, seconds: float, out: Path, *, frequency: int = 499) -> None:
        self.out = out
        self.error: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        perf = shutil.which("perf")
        if perf is None:
            self.error = "perf is not installed (linux-tools); no native profile"
            return
        self.perf = perf
        duration = str(max(1, int(seconds)))
        self.proc = subprocess.Popen(
            [perf, "record", "-a", "-F", str(frequency), "-o", str(out), "--", "sleep", duration],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def finish(self, roles: Mapping[int, str], *, members: Iterable[str]) -> dict[str, Any]:
        """Wait for the recording and summarize it (see ``summarize_perf``)."""
        if self.proc is None:
            return {"error": self.error}
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {"error": "perf record did not finish within 60 s"}
        if self.proc.returncode != 0 or not self.out.exists():
            text = err.decode(errors="replace").strip().splitlines()
            return {"error": f"perf record failed: {text[-1] if text else self.proc.returncode}"}
        script = subprocess.run(
            [self.perf, "script", "-i", str(self.out), "-F", "comm,pid,tid,ip,sym,dso"],
            capture_output=True,
            timeout=300,
            check=False,
        )
        return summarize_perf(script.stdout.decode(errors="replace"), roles, members=members)
