"""``python -m netsim``: the same as the ``netsim`` command."""

from netsim.cli import main

main()
