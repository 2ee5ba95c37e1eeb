"""Which network addresses a caller's URL may reach.

A caller's URL (``replicate_weights``) must not make the server connect to its own infrastructure: loopback,
private networks, link-local addresses (``169.254.169.254`` is the cloud metadata service), and every other
address that is not globally routable (unspecified, multicast, reserved, carrier-grade NAT, documentation
ranges). IPv6 addresses that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, the NAT64 prefix
``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by the IPv4 address they reach.

Deployment configuration is trusted and not guarded: a ``COG_WEIGHTS`` URL and the manifest's assets.

A self-hosted weights store on an internal address is allowed by listing it in
``MUSICGEN_REMIX_ALLOWED_HOSTS``: comma-separated host names (matched against the URL's host, so every
address the name resolves to is allowed) and addresses or networks (``10.1.2.3``, ``10.0.0.0/8``, ``::1``,
matched against the resolved address).

The check is on the addresses actually connected to: :func:`musicgen_remix.weights.download.new_session`
resolves each host once per connection, keeps only the addresses :meth:`AddressGuard.permitted` accepts and
connects to one of those, for the first request and for every redirect. A name that does not resolve is
refused the same way as an internal one, so a caller cannot tell internal names, addresses or ports apart.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from musicgen_remix.errors import WeightsError

ALLOWED_HOSTS_ENV = "MUSICGEN_REMIX_ALLOWED_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddrInfo = tuple[Any, ...]
"""One ``socket.getaddrinfo`` result: (family, type, proto, canonname, sockaddr)."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class AddressNotAllowed(Exception):  # noqa: N818 - reads as the condition it reports
    """A connection was refused before it was made: the host is internal or does not resolve.

    The message names the host only; callers report it against their input without saying which rule
    applied, so that refusals of internal names, addresses and ports all look the same.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(f"{host} is not an allowed host")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches through (IPv4-mapped, NAT64 well-known prefix, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def is_internal(address: IPAddress) -> bool:
    """True for every address a caller's URL must not reach (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_internal(inner)
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressGuard:
    """The address policy for a caller's URL, with the deployment's allow-list.

    Attributes:
        names: allowed host names (lower case, no trailing dot).
        networks: allowed addresses and networks.
    """

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AddressGuard:
        """The guard with ``MUSICGEN_REMIX_ALLOWED_HOSTS`` as its allow-list (empty when unset).

        Raises:
            WeightsError: an entry is neither a host name nor an address or network.
        """
        text = (os.environ if environ is None else environ).get(ALLOWED_HOSTS_ENV, "")
        return cls.parse([entry for entry in text.split(",") if entry.strip()])

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AddressGuard:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
            try:
                networks.append(ipaddress.ip_network(bare, strict=False))
                continue
            except ValueError:
                pass
            try:
                name = entry.rstrip(".").encode("idna").decode("ascii")  # URL hosts arrive IDNA-encoded
            except UnicodeError:
                name = ""
            if not name or not all(_LABEL.fullmatch(label) for label in name.split(".")):
                raise WeightsError(f"{ALLOWED_HOSTS_ENV}: {raw.strip()!r} is not a host name, an address or a "
                                   "network (comma-separated, no ports or schemes)")
            names.add(name)
        return cls(frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        """True when ``host`` (a URL's host) is listed by name."""
        return host.lower().rstrip(".") in self.names

    def allows_address(self, address: IPAddress) -> bool:
        """True when ``address`` is listed, or is not internal."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            if address.scope_id is not None:
                candidates[0] = ipaddress.IPv6Address(str(address).split("%", 1)[0])
            inner = embedded_ipv4(address)
            if inner is not None:
                candidates.append(inner)
        if any(a in network for a in candidates for network in self.networks if a.version == network.version):
            return True
        return not is_internal(address)

    def permitted(self, host: str, infos: Sequence[AddrInfo]) -> list[AddrInfo]:
        """The resolved addresses of ``host`` that may be connected to, in resolver order.

        Raises:
            AddressNotAllowed: none may.
        """
        if self.allows_name(host):
            return list(infos)
        kept = []
        for info in infos:
            address = _parse_address(str(info[4][0]))
            if address is not None and self.allows_address(address):
                kept.append(info)
        if not kept:
            raise AddressNotAllowed(host)
        return kept


def resolve(host: str, port: int, family: int) -> list[AddrInfo]:
    """``socket.getaddrinfo`` for a TCP connection (one place, so tests can count resolutions)."""
    return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
