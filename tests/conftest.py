"""Fixtures for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Each test starts with structlog's defaults: a command run in-process (netsim's
    CLI, ``p2pledger run``) configures it globally, with a level filter that would
    hide the events later tests capture with ``structlog.testing.capture_logs``."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
