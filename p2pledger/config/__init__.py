"""Configuration files: the shared network.toml and each member's node.toml.

Admins edit these files by hand, so loading reports every problem in a file at once,
each with its key path and what to change, and refuses unknown keys rather than
ignoring them. Parsing is pure (text in, frozen objects out); ``load_*`` only add
reading the file. ``*_to_toml`` write files that load back to equal objects.
"""

from p2pledger.config._files import MAX_FILE_BYTES
from p2pledger.config._names import NAME_PATTERN
from p2pledger.config._network import load_network, network_to_toml, parse_network
from p2pledger.config._node import (
    LogConfig,
    LogFormat,
    LogLevel,
    NodeConfig,
    NodeLimits,
    check_node_against_network,
    load_node,
    node_to_toml,
    parse_node,
)
from p2pledger.membership.address import AddressError, HostPort, parse_address

__all__ = [
    "MAX_FILE_BYTES",
    "NAME_PATTERN",
    "AddressError",
    "HostPort",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "NodeConfig",
    "NodeLimits",
    "check_node_against_network",
    "load_network",
    "load_node",
    "network_to_toml",
    "node_to_toml",
    "parse_address",
    "parse_network",
    "parse_node",
]
