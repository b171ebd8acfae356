"""Where a channel's back end may be: the rules for its ``api_base_url``.

Member payment passwords and points travel to that URL, so it must be https
outside the local stage, and it must never lead into our own network (a
private, loopback, link-local or otherwise non-public address: the instance
metadata service, a VPC neighbour). Literal addresses are refused when the
URL is set; a host name is resolved and checked again before every call,
since what it resolves to can change after it was set, and the call then
connects to exactly the address that was checked (``pinned``). The local stage
allows http and loopback, where the channel fakes and the reference back end
live.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from chalicelib.core import config
from chalicelib.core.errors import Unprocessable

FIELD = "api_base_url"


def allowed_address(address: str, local: bool) -> bool:
    """A public unicast address; loopback too on the local stage."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if local and ip.is_loopback:
        return True
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> str | None:
    """The address a host written as an IP literal stands for (including forms like ``127.1`` or ``0x7f.1``)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and any(c.isdigit() for c in host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_base_url(url: str, local: bool | None = None, field: str = FIELD) -> None:
    """Refuse a base URL we must never send a channel's members' data to (422, named after ``field``:
    ``api_base_url`` or ``webhook_url``, which follow the same rules)."""
    local = config.IS_LOCAL if local is None else local
    parts = urlsplit(url)
    what = "API base URL" if field == FIELD else "webhook URL"
    if parts.scheme != "https" and not (local and parts.scheme == "http"):
        raise Unprocessable(f"insecure_{field}", f"a channel's {what} must use https", field)
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise Unprocessable(f"invalid_{field}",
                            f"a channel's {what} is scheme, host, optional port and path only", field)
    literal = _literal(parts.hostname)
    if literal is not None and not allowed_address(literal, local):
        raise Unprocessable(f"private_{field}",
                            f"a channel's {what} must not point to a private or reserved address", field)


def resolve(url: str) -> list[str]:
    """The addresses the URL's host resolves to now, in the resolver's order.

    Raises ``OSError`` (``socket.gaierror``) when the name does not resolve."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(parts.hostname, port,
                                                                       type=socket.SOCK_STREAM)))


def refused_addresses(addresses: list[str], local: bool | None = None) -> list[str]:
    """The ones among ``addresses`` that are not allowed (empty when all are)."""
    local = config.IS_LOCAL if local is None else local
    return sorted(a for a in addresses if not allowed_address(a, local))


def pinned(url: str, address: str) -> tuple[str, str]:
    """``url`` with its host replaced by the checked ``address``, and the ``Host`` header naming the host.

    Connecting to the address itself, rather than to the name, is what keeps a DNS answer that
    changes after the check (DNS rebinding) from leading the connection elsewhere."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), parts.netloc
