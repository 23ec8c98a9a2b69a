"""Typed reading of parsed TOML tables that collects every problem instead of stopping.

Loaders read values through ``Table`` so that a wrong type, a missing key or an unknown
key anywhere in a file becomes one ``ConfigProblem`` with its key path
(``members[2].node_key``), and all of them reach the user together in one
``ConfigError``: an admin fixes the whole file in one pass.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from p2pledger.errors import ConfigError, ConfigProblem
from p2pledger.membership.checks import INT_MAX, quote, range_problem

__all__ = ["INT_MAX", "Problems", "Table", "describe", "join", "quote"]


class Problems:
    """The problems found so far in one file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._items: list[ConfigProblem] = []

    def add(self, key: str, reason: str) -> None:
        self._items.append(ConfigProblem(self.source, key, reason))

    def __bool__(self) -> bool:
        return bool(self._items)

    def error(self) -> ConfigError:
        """One ConfigError listing every problem found."""
        return ConfigError(self._items)


def describe(value: object) -> str:
    """A value as a person reads it in a TOML file: its TOML type and the value."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {quote(value)}"
    if isinstance(value, list):
        return f"array of {len(value)} items"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, dt.datetime):
        return f"datetime {value.isoformat()}"
    if isinstance(value, dt.date):
        return f"date {value.isoformat()}"
    if isinstance(value, dt.time):
        return f"time {value.isoformat()}"
    return type(value).__name__  # pragma: no cover - tomllib produces nothing else


def join(path: str, key: str) -> str:
    """The key path of ``key`` inside the table at ``path``."""
    return f"{path}.{key}" if path else key


class Table:
    """One TOML table, read key by key; every getter returns None after a problem.

    Keys outside ``allowed`` are reported as soon as the table is made: a misspelt
    key is an error, never silently ignored.
    """

    def __init__(
        self, data: Mapping[str, Any], path: str, problems: Problems, allowed: Collection[str]
    ) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        for key in data:
            if key not in allowed:
                problems.add(self.where(key), _unknown_key(key, allowed))

    def where(self, key: str) -> str:
        return join(self.path, key)

    def problem(self, key: str, reason: str) -> None:
        self.problems.add(self.where(key), reason)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, *, required: bool, hint: str = "") -> Any:
        """The value as parsed, or None (reported when ``required``) if absent."""
        if key in self.data:
            return self.data[key]
        if required:
            self.problem(key, f"missing required key {key!r}{hint}")
        return None

    def string(self, key: str, *, default: str | None = None) -> str | None:
        """A string; required unless a ``default`` is given."""
        value = self.raw(key, required=default is None)
        if value is None:
            return default
        if not isinstance(value, str):
            self.problem(key, f"expected a string, got {describe(value)}")
            return None
        return value

    def integer(self, key: str, *, default: int | None = None, minimum: int = 1) -> int | None:
        """An integer between ``minimum`` and the 64-bit maximum."""
        value = self.raw(key, required=default is None)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(key, f"expected an integer, got {describe(value)}")
            return None
        problem = range_problem(value, minimum=minimum)
        if problem is not None:
            self.problem(key, problem)
            return None
        return value

    def number(self, key: str, *, default: float) -> float | None:
        """A positive, finite number; an integer is accepted and made a float."""
        value = self.raw(key, required=False)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.problem(key, f"expected a number, got {describe(value)}")
            return None
        number = float(value)
        if not math.isfinite(number) or number <= 0:
            self.problem(key, f"must be a positive finite number, got {value}")
            return None
        return number

    def strings(self, key: str, *, required: bool) -> list[tuple[str, str]]:
        """An array of strings, as (key path, string) pairs; bad items are reported."""
        value = self.raw(key, required=required)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected an array of strings, got {describe(value)}")
            return []
        out: list[tuple[str, str]] = []
        for i, item in enumerate(value):
            where = f"{self.where(key)}[{i}]"
            if isinstance(item, str):
                out.append((where, item))
            else:
                self.problems.add(where, f"expected a string, got {describe(item)}")
        return out

    def table(self, key: str, allowed: Collection[str], *, required: bool = False) -> Table | None:
        """A sub-table; an absent optional one reads as empty, so defaults apply."""
        value = self.raw(key, required=False)
        if value is None:
            if required:
                self.problem(key, f"missing required table [{self.where(key)}]")
                return None
            return Table({}, self.where(key), self.problems, allowed)
        if not isinstance(value, dict):
            self.problem(key, f"expected a table [{self.where(key)}], got {describe(value)}")
            return None
        return Table(value, self.where(key), self.problems, allowed)

    def tables(self, key: str, allowed: Collection[str], *, required: bool) -> Iterator[Table]:
        """An array of tables (``[[key]]`` sections), yielded one by one so that
        problems are reported in file order; bad items are reported."""
        value = self.raw(key, required=required, hint=f"; add at least one [[{key}]] table")
        if value is None:
            return
        if not isinstance(value, list):
            self.problem(key, f"expected [[{key}]] tables, got {describe(value)}")
            return
        for i, item in enumerate(value):
            where = f"{self.where(key)}[{i}]"
            if isinstance(item, dict):
                yield Table(item, where, self.problems, allowed)
            else:
                self.problems.add(where, f"expected a table, got {describe(item)}")


def _unknown_key(key: str, allowed: Collection[str]) -> str:
    reason = f"unknown key {key!r}"
    close = difflib.get_close_matches(key, list(allowed), n=1)
    if close:
        reason += f" (did you mean {close[0]!r}?)"
    if allowed:
        return f"{reason}; allowed keys here: {', '.join(sorted(allowed))}"
    return f"{reason}; no keys are allowed here"
