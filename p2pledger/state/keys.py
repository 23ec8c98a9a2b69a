"""The key layout of the application state: what lives under which bytes.

Keys are ASCII paths, ``/``-separated, so that every kind of record is one prefix
and a store can scan it (``fund/relief/lot/<acct>/`` lists an account's lots in
spending order). Fund names are escaped (``%`` -> ``%25``, ``/`` -> ``%2F``) so
that a name can never reach into another fund's prefix; accounts, transaction ids
and digests are lowercase hex; lot sequence numbers are 16 hex digits, so byte order
is numeric order.

::

    fund/<name>/supply              FundTotals   units ever issued into the fund
    fund/<name>/acct/<acct>         AccountHead  balance, and the live lot range
    fund/<name>/lot/<acct>/<seq>    StoredLot    one lot, FIFO by seq
    fund/<name>/issue/<txid>        IssueRecord  an issue: who, to whom, how much
    fund/<name>/xfer/<txid>         TransferRecord  a transfer and the pieces it moved
    notary/<digest>                 AnchorRecord the first anchoring of a digest
    config/network                  Network      the membership in force (absent: genesis)
    config/version/<version>        ConfigRecord how membership version N came about

``<acct>`` is the account's 32-byte user public key, ``<txid>`` a transaction id,
``<digest>`` a SHA-256 document digest, each as 64 hex digits. Values are the
deterministic CBOR of the records (see ``records`` and ``notary``). Issue and
transfer records are never deleted: they are the provenance history. Account heads
and lots are deleted when they reach zero. Config records are never deleted: they
are the history of the membership.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONFIG_VERSION_PREFIX",
    "NETWORK_KEY",
    "NOTARY_PREFIX",
    "account_key",
    "anchor_key",
    "config_version_key",
    "fund_prefix",
    "issue_key",
    "lot_key",
    "lot_prefix",
    "supply_key",
    "transfer_key",
]

NOTARY_PREFIX: Final = b"notary/"
NETWORK_KEY: Final = b"config/network"
CONFIG_VERSION_PREFIX: Final = b"config/version/"


def _segment(name: str) -> bytes:
    return name.replace("%", "%25").replace("/", "%2F").encode("utf-8")


def fund_prefix(fund: str) -> bytes:
    """Every key of ``fund`` starts with this."""
    return b"fund/" + _segment(fund) + b"/"


def supply_key(fund: str) -> bytes:
    return fund_prefix(fund) + b"supply"


def account_key(fund: str, account: bytes) -> bytes:
    return fund_prefix(fund) + b"acct/" + account.hex().encode("ascii")


def lot_prefix(fund: str, account: bytes) -> bytes:
    return fund_prefix(fund) + b"lot/" + account.hex().encode("ascii") + b"/"


def lot_key(fund: str, account: bytes, seq: int) -> bytes:
    return lot_prefix(fund, account) + b"%016x" % seq


def issue_key(fund: str, tx_id: bytes) -> bytes:
    return fund_prefix(fund) + b"issue/" + tx_id.hex().encode("ascii")


def transfer_key(fund: str, tx_id: bytes) -> bytes:
    return fund_prefix(fund) + b"xfer/" + tx_id.hex().encode("ascii")


def anchor_key(digest: bytes) -> bytes:
    return NOTARY_PREFIX + digest.hex().encode("ascii")


def config_version_key(version: int) -> bytes:
    return CONFIG_VERSION_PREFIX + b"%016x" % version
