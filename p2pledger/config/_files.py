"""Reading a config file into TOML tables, turning every failure into a problem.

The one place config touches the file system: a missing, unreadable, oversized,
non-UTF-8 or syntactically broken file becomes a ``ConfigProblem`` that says what to
fix, with tomllib's line and column for syntax errors.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

from p2pledger.config._fields import Problems

#: A config file larger than this is refused rather than read into memory.
MAX_FILE_BYTES: Final = 16 * 1024 * 1024


def read_text(path: Path, problems: Problems) -> str | None:
    """The file's text, or None after recording why it cannot be read."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        problems.add("", f"file not found (looked for {path.absolute()})")
        return None
    except IsADirectoryError:
        problems.add("", "is a directory, not a file")
        return None
    except PermissionError:
        problems.add("", "permission denied; make the file readable by this user")
        return None
    except OSError as exc:
        problems.add("", f"cannot read the file: {exc.strerror or exc}")
        return None
    if len(data) > MAX_FILE_BYTES:
        problems.add("", f"file is larger than {MAX_FILE_BYTES} bytes; is it the right file?")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add("", f"not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8")
        return None


def parse_toml(text: str, problems: Problems) -> dict[str, Any] | None:
    """The parsed document, or None after recording the syntax error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.add("", f"invalid TOML: {exc}")
        return None
