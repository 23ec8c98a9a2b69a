"""``python -m p2pledger`` runs the command line."""

from p2pledger.cli import main

main()
