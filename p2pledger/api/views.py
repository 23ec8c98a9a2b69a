"""How the API's answers look in JSON: bytes as lowercase hex, times in milliseconds.

Why a module of its own: the shapes are the API's contract with clients (the CLI,
netsim, institutions' scripts), so they live together and nowhere else.
"""

from __future__ import annotations

from typing import Any

from p2pledger.api.service import NodeStatus, TxState, TxStatus
from p2pledger.config import network_to_toml
from p2pledger.membership import Network
from p2pledger.state import AnchorRecord, ConfigRecord, Lot

__all__ = [
    "anchor_json",
    "balance_json",
    "config_history_json",
    "config_json",
    "node_status_json",
    "tx_status_json",
]


def tx_status_json(status: TxStatus) -> dict[str, Any]:
    """``{"id", "status"}``, plus ``height``, ``index``, ``valid``, ``reason`` once
    committed."""
    out: dict[str, Any] = {"id": status.tx_id.hex(), "status": status.state.value}
    if status.state is TxState.COMMITTED:
        assert status.result is not None  # TxStatus guarantees it
        out.update(
            height=status.height,
            index=status.index,
            valid=status.result.valid,
            reason=status.result.reason,
        )
    return out


def node_status_json(status: NodeStatus, *, healthy: bool) -> dict[str, Any]:
    return {
        "member": status.member,
        "role": status.role,
        "chain_name": status.chain_name,
        "chain_id": status.chain_id.hex(),
        "height": status.height,
        "term": status.term,
        "leader": status.leader,
        "healthy": healthy,
        "peers": [{"name": p.name, "connected": p.connected, "lag": p.lag} for p in status.peers],
    }


def balance_json(fund: str, account: bytes, balance: int, lots: list[Lot]) -> dict[str, Any]:
    """The balance and, for each lot, its amount, its issue (``origin`` and
    ``origin_height``) and its transfer ``path``, oldest first."""
    return {
        "fund": fund,
        "account": account.hex(),
        "balance": balance,
        "lots": [lot.to_json() for lot in lots],
    }


def anchor_json(record: AnchorRecord, receipt: dict[str, Any] | None) -> dict[str, Any]:
    return {"record": record.to_json(), "receipt": receipt}


def config_json(chain_id: bytes, network: Network) -> dict[str, Any]:
    """The membership in force: its version, the chain, the network (keys as hex), and
    the same network as network.toml text (with ``version = N``), ready to edit."""
    return {
        "version": network.version,
        "chain_id": chain_id.hex(),
        "network": network.to_json(),
        "toml": network_to_toml(network),
    }


def config_history_json(records: list[ConfigRecord]) -> dict[str, Any]:
    """Every version: what changed, who approved it, at which height."""
    return {"versions": [r.to_json() for r in records]}
