"""Which addresses a photo URL may reach, decided before any connect, and a network backend
that dials exactly the address it checked.

Checking a name and then letting the HTTP client resolve it again would leave a gap: a DNS
answer that changes between the two (DNS rebinding) reaches whatever the second answer names.
So the check happens inside httpcore's ``connect_tcp``: the name is resolved once, every
address is checked, and the socket is opened to the checked address. TLS still verifies the
certificate against the name and sends it as SNI, because httpcore passes the URL's host to
``start_tls`` separately from what ``connect_tcp`` dialled.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpcore

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the name stands for, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class RefusedAddress(Exception):
    """A photo URL's host resolves to an address imports may not reach."""

    def __init__(self, host: str, address: str, why: str) -> None:
        super().__init__(f"{host} resolves to {address} ({why}); imports do not fetch from it")
        self.host = host
        self.address = address


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for ``host``."""
    loop = asyncio.get_running_loop()
    answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in answers]


def parse_allowed(entries: str) -> frozenset[tuple[Address, int]]:
    """``"127.0.0.1:8080,[::1]:9000"`` as (address, port) pairs (ValueError names a bad one)."""
    allowed = set()
    for entry in (e.strip() for e in entries.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        try:
            if not sep:
                raise ValueError(entry)
            allowed.add((ipaddress.ip_address(host.strip("[]")), int(port)))
        except ValueError:
            raise ValueError(f"{entry!r} is not ADDRESS:PORT (such as 127.0.0.1:8080 or [::1]:8080)") from None
    return frozenset(allowed)


def _why_refused(address: Address, allow_private: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # Never, whatever the settings: the cloud metadata service lives on link-local.
    if address.is_link_local:
        return "link-local, such as the cloud metadata service"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return None if allow_private else "loopback"
    if address.is_private:
        return None if allow_private else "a private network"
    if address.is_reserved or not address.is_global:
        return None if allow_private and address in _SHARED else "reserved, not a public address"
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in practice


@dataclass(frozen=True)
class AddressGuard:
    """Resolves a host and picks an address it may reach, or raises RefusedAddress."""

    resolver: Resolver = system_resolver
    allow_private: bool = False
    allowed: frozenset[tuple[Address, int]] = frozenset()

    async def checked(self, host: str, port: int) -> str:
        """The address to dial for ``host``: refused when ANY answer is refused, so a name
        cannot mix a public address with an internal one and hope for the latter."""
        try:
            answers = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                answers = [ipaddress.ip_address(a.split("%")[0]) for a in await self.resolver(host, port)]
            except OSError as error:
                raise ConnectionError(f"cannot resolve {host}: {error}") from None
        if not answers:
            raise ConnectionError(f"{host} has no address")
        for address in answers:
            if (address, port) in self.allowed:
                continue
            why = _why_refused(address, self.allow_private)
            if why is not None:
                raise RefusedAddress(host, str(address), why)
        return str(answers[0])


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, except that every TCP connect goes to an address the guard chose."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self.guard.checked(host, port)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress(path, path, "a local socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
