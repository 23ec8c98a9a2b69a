"""Golden-output interaction scripts under ``testdata/`` (see ``interaction.py``).

To update after an intended change: ``RAFT_REWRITE=1 .venv/bin/pytest
tests/raft/test_interaction.py``, then review ``git diff tests/raft/testdata``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.raft.interaction import parse, run_script

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


def test_there_are_scripts() -> None:
    assert len(SCRIPTS) >= 4


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script(path: Path) -> None:
    actual = run_script(path)
    if os.environ.get("RAFT_REWRITE"):
        path.write_text(actual)
        return
    expected = path.read_text()
    for (head, want), (_, got) in zip(parse(expected), parse(actual), strict=True):
        assert got == want, f"{path.name}: output of\n{head}\nchanged"
