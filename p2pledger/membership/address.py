"""``host:port`` addresses of members and listeners, checked before anything dials them.

A host is a DNS name, an IPv4 address, or an IPv6 address in brackets
(``[::1]:7401``); the port is 1 to 65535. Checking the text here means a typo in an
address is reported when the file is loaded, not as a connection failure later.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

_PORT: Final = re.compile(r"[0-9]{1,5}")
_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DOTTED: Final = re.compile(r"[0-9.]+")
_MAX_HOSTNAME: Final = 253
_MAX_PORT: Final = 65535


class AddressError(ValueError):
    """Text is not a ``host:port`` address; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class HostPort:
    """A checked address; an IPv6 ``host`` is kept without its brackets."""

    host: str
    port: int


def parse_address(text: str) -> HostPort:
    """Split and check ``host:port``; raise AddressError with the reason otherwise."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise AddressError("an IPv6 address opened with '[' has no closing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if not rest.startswith(":"):
            raise AddressError("no port after the IPv6 address; write it as [::1]:7401")
        _check_ipv6(host)
        return HostPort(host, _port(rest[1:]))
    host, colon, port = text.rpartition(":")
    if not colon:
        raise AddressError("no port; write host:port, e.g. 127.0.0.1:7401")
    if ":" in host:
        raise AddressError("write an IPv6 address in brackets, e.g. [::1]:7401")
    if not host:
        raise AddressError("no host before the port")
    if _DOTTED.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise AddressError(f"{host} is not a valid IPv4 address") from exc
    else:
        _check_hostname(host)
    return HostPort(host, _port(port))


def _check_ipv6(host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError as exc:
        raise AddressError(f"[{host}] is not a valid IPv6 address") from exc


def _check_hostname(host: str) -> None:
    if len(host) > _MAX_HOSTNAME:
        raise AddressError(f"a host name has at most {_MAX_HOSTNAME} characters")
    for label in host.split("."):
        if not _LABEL.fullmatch(label):
            raise AddressError(
                f"{host} is not a valid host name: use letters, digits and hyphens, "
                "in dot-separated labels of 1 to 63 characters"
            )


def _port(text: str) -> int:
    if not text:
        raise AddressError("no port after ':'")
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= _MAX_PORT:
        raise AddressError(f"port {text} is not a number from 1 to {_MAX_PORT}")
    return int(text)
