"""Where a webhook may go: the URL's rules and the addresses it may reach (no SSRF).

A partner names a URL and the worker POSTs to it from inside the provider's network,
so the URL must not become a way to reach what only that network can reach.

- :func:`url_check` (when an endpoint is saved): ``https`` (plain ``http`` only outside
  production), a host, no user name or password, and every address the host resolves
  to public: not loopback, private, link-local, shared (CGNAT), multicast, reserved,
  unspecified or documentation space, in IPv4 or IPv6, including the IPv6 forms that
  carry an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, NAT64
  ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo), each checked as what it embeds too.
- :func:`resolve` (at every attempt): the host is resolved again and every address
  checked again; the attempt then connects to one of those checked addresses itself
  (``portal.webhooks.sender``), so no second lookup can answer differently (DNS
  rebinding).

``PORTAL_WEBHOOK_ALLOW_PRIVATE=1`` (development and tests) lifts the address rule, not
the others.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from portal.core.errors import Invalid
from portal.core.text import clean_text

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.ip_network("::/96")


class AddressRefused(Exception):
    """The URL may not be reached; the message says why, for the person or the log."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: what to connect to and what to say to it."""

    scheme: str
    host: str  # as in the URL (a name, or an address without brackets)
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _embedded(address: IPAddress) -> list[IPAddress]:
    """Every IPv4 address an IPv6 form of ``address`` carries, then the address itself
    (so a refusal names what the address really reaches)."""
    found: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64 or address in _NAT64_LOCAL or address in _COMPATIBLE:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    found.append(address)
    return found


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached, or None when it is public."""
    for candidate in _embedded(address):
        if candidate.is_loopback:
            return f"{address} is a loopback address"
        if candidate.is_link_local:
            return f"{address} is a link-local address"
        if candidate.is_multicast:
            return f"{address} is a multicast address"
        if candidate.is_unspecified or candidate.is_reserved:
            return f"{address} is a reserved address"
        if candidate.is_private or not candidate.is_global:
            return f"{address} is a private or internal address"
        if isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local:
            return f"{address} is a site-local address"
    return None


def _parse(url: str) -> tuple[SplitResult, Target]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise AddressRefused(f"The URL is not valid ({exc}).") from None
    scheme = parts.scheme.lower()
    allowed = ("https",) if settings.PRODUCTION else ("https", "http")
    if scheme not in allowed:
        raise AddressRefused(
            "The URL must start with https://."
            if settings.PRODUCTION
            else "The URL must start with https:// (or http:// outside production)."
        )
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("The URL may not contain a user name or password.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise AddressRefused("The URL has no host name.")
    if port == 0:
        raise AddressRefused("The URL's port must be 1 to 65535.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default = 443 if scheme == "https" else 80
    return parts, Target(scheme=scheme, host=host, port=port or default, path=path)


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
        infos = socket.getaddrinfo(ascii_host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise AddressRefused(f"{host} could not be resolved.") from None
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 scope id names an interface
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    if not found:
        raise AddressRefused(f"{host} could not be resolved.")
    return found


def resolve(url: str) -> tuple[Target, list[IPAddress]]:
    """The URL's target and the addresses to connect to, every one of them checked.

    Raises :class:`AddressRefused` when the URL breaks a rule, its host does not
    resolve, or any address it resolves to is not public (unless private addresses
    are allowed): one internal answer among public ones refuses the whole host.
    """
    _parts, target = _parse(url)
    addresses = _addresses(target.host, target.port)
    if not settings.WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            reason = refusal(address)
            if reason:
                named = "" if str(address) == target.host else f"{target.host} resolves to "
                raise AddressRefused(f"{named}{reason}: webhooks go to public addresses only.")
    return target, addresses


def url_check(value: str | None, *, field: str = "url") -> str:
    """The endpoint URL cleaned, or :class:`Invalid` (422) saying why it is refused."""
    url = clean_text(value, field=field, label="URL", max_length=MAX_URL_LENGTH, required=True)
    if any(c.isspace() for c in url):
        raise Invalid("The URL may not contain spaces.", field=field)
    try:
        parts, _target = _parse(url)
        resolve(url)
    except AddressRefused as exc:
        raise Invalid(str(exc), field=field) from None
    # The fragment never leaves the sender; keep the URL as it will be used.
    return parts._replace(fragment="").geturl()
