"""netsim: run many p2pledger daemons on one machine, inject faults, give a verdict.

netsim drives p2pledger only through its public surfaces (CLI, config files, API,
exported ledgers), as a tester would. p2pledger never imports netsim.
"""
