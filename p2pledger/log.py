"""Logging set-up: structlog, JSON lines for log shippers or console for people.

``configure`` is called once by the CLI; modules get loggers with ``get_logger`` and
emit ``name.started`` / ``name.complete`` / ``name.failed`` events with key=value
fields. Member name, term and height are bound through context variables
(``bind``), so every line carries them without each call passing them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

__all__ = ["bind", "configure", "get_logger"]

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


def get_logger(name: str) -> Any:
    """A structlog logger tagged with the emitting component."""
    return structlog.get_logger(component=name)


def bind(**fields: Any) -> None:
    """Bind fields (member, term, height, ...) to every later line of this context."""
    structlog.contextvars.bind_contextvars(**fields)
