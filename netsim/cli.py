"""The ``netsim`` command. Scenarios, clusters and faults arrive in a later issue."""

from __future__ import annotations

import click

from p2pledger import __version__


@click.group()
@click.version_option(__version__, prog_name="netsim")
def main() -> None:
    """Run many p2pledger members on one machine under faults, and judge the result."""
