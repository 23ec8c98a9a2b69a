"""p2pledger: a permissioned ledger for consortiums of named institutions.

The pure layers (codec, crypto, chain, membership, config) do no I/O and read no
clock; the adapters (store, and later transport, node, api) do. See DESIGN.md.
"""

__version__ = "0.1.0"
