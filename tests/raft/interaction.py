"""Text-scripted interaction tests, in the manner of etcd-io/raft's testdata.

A script is a sequence of stanzas::

    # a comment
    command arg key=value
    ----
    the output the command must produce (every message delivered, every notable
    core event, and whatever the command prints)

``run_script`` executes the commands on a ``Cluster`` and returns the script with
fresh outputs; the test compares it to the file, and ``RAFT_REWRITE=1`` writes it
back (review the diff before committing it).

Commands (members are named n1, n2, ...):

- ``add-nodes N [learners=K] [spares=K] [prevote=false] [checkquorum=false]
  [max-msg-bytes=B] [seed=S]``: a new cluster of N voters, K learners, K spares
- ``campaign M``, ``propose M DATA``, ``transfer M TO``, ``tick M [N]``,
  ``tick-all [N]``: inputs to member M (tick-all stabilizes after each round)
- ``conf-change M add-voter|add-learner|remove NODE``
- ``stabilize``: deliver until nothing is in flight; ``deliver [drop=A->B,...]``: one
  round of delivery
- ``isolate M``, ``partition A,B C,D``, ``block A->B``, ``heal``
- ``crash M``, ``restart M``, ``compact M INDEX``, ``catch-up M``
- ``status M``, ``log M``, ``applied M``
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from p2pledger.raft import (
    ConfChange,
    ConfChangeOp,
    Message,
    RaftError,
)
from tests.raft.cluster import Cluster

__all__ = ["Stanza", "parse", "render", "run_script"]

Stanza = tuple[str, str]  # (command line, expected output); comments are kept in the line


def parse(text: str) -> list[Stanza]:
    stanzas: list[Stanza] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        header: list[str] = []
        while i < len(lines) and lines[i] != "----":
            header.append(lines[i])
            i += 1
        if i == len(lines):
            if any(line.strip() for line in header):
                raise ValueError(f"a command without '----': {header}")
            break
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i] != "":
            body.append(lines[i])
            i += 1
        i += 1
        stanzas.append(("\n".join(header).strip("\n"), "\n".join(body)))
    return stanzas


def render(stanzas: list[Stanza]) -> str:
    return "".join(f"{head}\n----\n{body}\n\n" for head, body in stanzas)


class Interpreter:
    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.out: list[str] = []

    @property
    def c(self) -> Cluster:
        assert self.cluster is not None, "add-nodes first"
        return self.cluster

    def run(self, line: str) -> str:
        self.out = []
        command = [part for part in line.splitlines() if not part.startswith("#")]
        words = shlex.split(" ".join(command))
        if not words:
            return "ok"
        name, args = words[0], words[1:]
        pos = [a for a in args if "=" not in a]
        opts = dict(a.split("=", 1) for a in args if "=" in a)
        handler: Callable[[list[str], dict[str, str]], None] = getattr(
            self, "do_" + name.replace("-", "_")
        )
        try:
            handler(pos, opts)
        except RaftError as exc:
            self.out.append(f"error: {type(exc).__name__}: {exc}")
        return "\n".join(self.out) or "ok"

    def _trace(self, line: str) -> None:
        self.out.append(line.strip())

    # --- commands -------------------------------------------------------------------------

    def do_add_nodes(self, pos: list[str], opts: dict[str, str]) -> None:
        n, learners, spares = int(pos[0]), int(opts.get("learners", 0)), int(opts.get("spares", 0))
        names = [f"n{i}" for i in range(1, n + learners + spares + 1)]
        self.cluster = Cluster(
            names[:n],
            learners=names[n : n + learners],
            spares=names[n + learners :],
            seed=int(opts.get("seed", 0)),
            pre_vote=opts.get("prevote", "true") == "true",
            check_quorum=opts.get("checkquorum", "true") == "true",
            max_msg_bytes=int(opts.get("max-msg-bytes", 1 << 20)),
            trace=self._trace,
        )

    def do_campaign(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.members[pos[0]].n.campaign()
        self.c.flush(pos[0])

    def do_propose(self, pos: list[str], opts: dict[str, str]) -> None:
        e = self.c.propose(pos[0], pos[1].encode())
        self.out.append(f"proposed {e}")

    def do_transfer(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.members[pos[0]].n.transfer_leadership(pos[1])
        self.c.flush(pos[0])

    def do_conf_change(self, pos: list[str], opts: dict[str, str]) -> None:
        op = ConfChangeOp[pos[1].upper().replace("-", "_")]
        e = self.c.members[pos[0]].n.propose_conf_change(ConfChange(op=op, node=pos[2]))
        self.c.flush(pos[0])
        self.out.append(f"proposed {e}")

    def do_tick(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.tick(pos[0], int(pos[1]) if len(pos) > 1 else 1)

    def do_tick_all(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.tick_all(int(pos[0]) if pos else 1)

    def do_stabilize(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.stabilize()

    def do_deliver(self, pos: list[str], opts: dict[str, str]) -> None:
        links = {tuple(link.split("->")) for link in opts.get("drop", "").split(",") if link}

        def drop(m: Message) -> bool:
            dropped = (m.sender, m.recipient) in links
            if dropped:
                self.out.append(f"dropped {m.sender}->{m.recipient} {type(m).__name__}")
            return dropped

        self.c.deliver_all(drop=drop)

    def do_isolate(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.isolate(pos[0])

    def do_partition(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.partition(*(group.split(",") for group in pos))

    def do_block(self, pos: list[str], opts: dict[str, str]) -> None:
        a, b = pos[0].split("->")
        self.c.blocked.add((a, b))

    def do_heal(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.heal()

    def do_crash(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.crash(pos[0])

    def do_restart(self, pos: list[str], opts: dict[str, str]) -> None:
        self.c.restart(pos[0])

    def do_compact(self, pos: list[str], opts: dict[str, str]) -> None:
        meta = self.c.members[pos[0]].storage.compact(int(pos[1]))
        self.out.append(f"compacted to {meta.term}/{meta.index} {meta.conf}")

    def do_catch_up(self, pos: list[str], opts: dict[str, str]) -> None:
        done = self.c.complete_catch_up(pos[0])
        self.out.append("caught up" if done else "nothing to catch up")

    def do_status(self, pos: list[str], opts: dict[str, str]) -> None:
        s = self.c.members[pos[0]].n.status()
        self.out.append(
            f"{s.id} {s.role.value} term={s.term} vote={s.vote} lead={s.lead} "
            f"commit={s.commit} applied={s.applied} log=[{s.first_index},{s.last_index}] "
            f"{s.conf}"
        )
        for member, pr in sorted(s.progress.items()):
            self.out.append(
                f"  {member}: {pr.state.value} match={pr.match} next={pr.next}"
                f" inflight={pr.inflight}{' learner' if pr.is_learner else ''}"
            )

    def do_log(self, pos: list[str], opts: dict[str, str]) -> None:
        m = self.c.members[pos[0]]
        s = m.storage
        entries = s.entries(s.first_index(), s.last_index() + 1)
        snap = s.snapshot()
        self.out.append(f"snapshot {snap.term}/{snap.index}")
        self.out.extend(f"{e} {e.data.decode(errors='replace')}" for e in entries)

    def do_applied(self, pos: list[str], opts: dict[str, str]) -> None:
        data = self.c.applied_data(pos[0])
        self.out.append(" ".join(d.decode() for d in data) or "(nothing)")


def run_script(path: Path) -> str:
    """Run the script at ``path``; return it with the actual outputs."""
    interp = Interpreter()
    stanzas = parse(path.read_text())
    return render([(head, interp.run(head)) for head, _ in stanzas])
