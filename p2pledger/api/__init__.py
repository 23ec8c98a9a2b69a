"""The client API of a member: HTTP/JSON over a narrow ``LedgerService``.

``create_app`` builds the ASGI application (``app``), ``serve_api`` serves it with
hypercorn under trio (``server``). The node implements ``LedgerService``
(``service``) and may use ``check_entry`` (``admission``) for the stateless entry
checks; ``errors`` has what a service raises and the HTTP status each maps to.
"""

from p2pledger.api.admission import check_entry
from p2pledger.api.app import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_WAIT_S,
    ApiLimits,
    create_app,
)
from p2pledger.api.errors import ENTRY_REASONS, MempoolFull, RequestRefused, TxRejected
from p2pledger.api.server import ApiServeError, serve_api
from p2pledger.api.service import LedgerService, NodeStatus, PeerStatus, TxState, TxStatus

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_WAIT_S",
    "ENTRY_REASONS",
    "ApiLimits",
    "ApiServeError",
    "LedgerService",
    "MempoolFull",
    "NodeStatus",
    "PeerStatus",
    "RequestRefused",
    "TxRejected",
    "TxState",
    "TxStatus",
    "check_entry",
    "create_app",
    "serve_api",
]
