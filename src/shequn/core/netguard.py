"""Outgoing requests to addresses a tenant chose (webhook URLs) must not reach the platform's own
network: no loopback, private (RFC 1918, unique-local), link-local (the cloud metadata services at
169.254.169.254 / fd00:ec2::254), shared (100.64.0.0/10, Alibaba Cloud's metadata 100.100.100.200),
multicast, reserved or unspecified address — anything that is not globally routable (SSRF).

Two checks, both by :func:`check_host`:

* **at save time** (:func:`shequn.core.webhooks.check_url`): an IP literal or a name that resolves
  to a refused address is a field error; a name that does not resolve (yet) is accepted, the
  delivery-time check decides;
* **at delivery time** (:func:`guarded_opener`): the connection resolves the host itself, checks
  **every** address it got, and connects to the checked address — so a DNS answer that changes
  between the check and the connection (rebinding) cannot slip through. Proxies from the environment
  are not used (the proxy would make the connection, not the checked one).

``settings.SHEQUN_WEBHOOK_ALLOW_PRIVATE`` (env ``SHEQUN_WEBHOOK_ALLOW_PRIVATE=1``; default off)
allows such addresses — for a receiver on the same host or network, and for tests that deliver to
127.0.0.1."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from typing import Any

from django.conf import settings


class BlockedAddress(OSError):
    """The host is, or resolves to, an address outgoing requests may not reach."""


def allow_private() -> bool:
    return bool(getattr(settings, "SHEQUN_WEBHOOK_ALLOW_PRIVATE", False))


def is_blocked(address: str) -> bool:
    """True for every address that is not globally routable unicast (IPv4-mapped IPv6 included)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int | None) -> list[str]:
    """Every address ``host`` resolves to (an IP literal: itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, port: int | None = None, *, unresolvable_ok: bool = False) -> list[str]:
    """The addresses of ``host`` after checking each; :class:`BlockedAddress` names the first refused
    one. With ``unresolvable_ok`` a name that does not resolve gives ``[]`` instead of an error."""
    host = (host or "").strip("[]")
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        if unresolvable_ok:
            return []
        raise BlockedAddress(f"cannot resolve {host}: {exc}") from exc
    if not allow_private():
        for address in addresses:
            if is_blocked(address):
                raise BlockedAddress(f"{host} resolves to a non-public address {address}")
    return addresses


def _connect(host: str, port: int, timeout: Any, source_address: Any) -> socket.socket:
    """A socket to the first reachable checked address of ``host``."""
    last: OSError | None = None
    for address in check_host(host, port):
        try:
            return socket.create_connection((address, port), timeout, source_address)
        except OSError as exc:
            last = exc
    raise last or BlockedAddress(f"no address for {host}")


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = _connect(self.host, self.port, self.timeout, getattr(self, "source_address", None))


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        sock = _connect(self.host, self.port, self.timeout, getattr(self, "source_address", None))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: Any) -> Any:
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


def guarded_opener(*handlers: Any) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections check every address of the host first (no env proxies)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _GuardedHTTPHandler(),
                                       _GuardedHTTPSHandler(), *handlers)


__all__ = ["BlockedAddress", "allow_private", "check_host", "guarded_opener", "is_blocked"]
