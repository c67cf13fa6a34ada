"""Where a callback may go. A stranger's `callback_url` must not make this server POST into its own network:
only http(s), and every address the host resolves to must be public, unless the operator trusts it in
`callbacks.allow` (a host name, an IP address or a CIDR, optionally with `:port`). Checked at submit time
and again at delivery, where the connection goes to the address just checked (DNS may have changed since)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from monolith.config import parse_callback_rule
from monolith.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PARAM = "callback_url"


@dataclass(frozen=True)
class Target:
    """A callback URL taken apart: where to connect, and what to call the host there."""

    url: str
    scheme: str
    host: str  # as written (a name, or an address without brackets)
    port: int
    path: str  # path and query, as sent on the request line

    @property
    def shown(self) -> str:
        """What a job body or a log may show: no credentials, no path or query (tokens live there)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}") + "/…"


def parse(url: str) -> Target:
    """A 400 naming callback_url for anything that is not an absolute http(s) URL with a host."""
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:  # a bad port, an unclosed [IPv6 literal
        raise BadRequest(f"callback_url is not a valid URL: {exc}", param=PARAM) from None
    if parts.scheme not in ("http", "https") or not host:
        raise BadRequest("callback_url must be an absolute http(s) URL", param=PARAM)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise BadRequest("callback_url has whitespace or control characters", param=PARAM)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url, parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def shown(url: str) -> str:
    """A callback URL as a job body or a log may show it (see Target.shown)."""
    try:
        return parse(url).shown
    except BadRequest:
        return "(not a valid URL)"


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


class CallbackPolicy:
    def __init__(self, allow: list[str]) -> None:
        self.rules = [parse_callback_rule(entry) for entry in allow]

    def _admitted(self, target: Target, address: IPAddress) -> bool:
        return is_public(address) or any(rule.admits(target.host, target.port, address) for rule in self.rules)

    async def resolve(self, target: Target) -> list[IPAddress]:
        """Every address the host has; all of them must be admitted (DNS may hand out any of them)."""
        try:
            literal = ipaddress.ip_address(target.host.split("%", 1)[0])
            addresses: list[IPAddress] = [literal]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise BadRequest(f"callback_url's host does not resolve ({type(exc).__name__})", param=PARAM) from None
            addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
        refused = [a for a in addresses if not self._admitted(target, a)]
        if refused or not addresses:
            raise BadRequest(
                f"callback_url resolves to {refused[0] if refused else 'no address'}, which is not a public address; "
                "an operator can allow it in callbacks.allow",
                param=PARAM,
            )
        return addresses

    async def check(self, url: str) -> Target:
        """At submit time: a well-formed URL whose host resolves to admitted addresses only."""
        target = parse(url)
        await self.resolve(target)
        return target
