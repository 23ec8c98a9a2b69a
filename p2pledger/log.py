"""Logging set-up: structlog, JSON lines for log shippers or console for people.

``configure`` is called once by the CLI; modules get loggers with ``get_logger`` and
emit ``name.started`` / ``name.complete`` / ``name.failed`` events with key=value
fields. The member name is bound through a context variable (``bind``) and the
current term and height are added to each line as it is written
(``add_live_fields``), so every line carries them without each call passing them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, Literal

import structlog

__all__ = ["add_live_fields", "bind", "configure", "get_logger"]

Format = Literal["json", "console", "auto"]


def configure(fmt: Format = "auto", level: str = "info", *, stream: Any = None) -> None:
    """Route structlog to ``stream`` (stderr) as JSON lines or a console format."""
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(out, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_live_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


_live: list[Callable[[], dict[str, Any]]] = []


def add_live_fields(provider: Callable[[], dict[str, Any]]) -> None:
    """Add fields computed at each log call (the node's current term and height), so
    every line carries them though they change after tasks have started."""
    _live.append(provider)


def _add_live_fields(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for provider in _live:
        for key, value in provider().items():
            event.setdefault(key, value)
    return event


def get_logger(name: str) -> Any:
    """A structlog logger tagged with the emitting component."""
    return structlog.get_logger(component=name)


def bind(**fields: Any) -> None:
    """Bind fields (member, term, height, ...) to every later line of this context."""
    structlog.contextvars.bind_contextvars(**fields)
