"""The HTTP side of webhooks: where a callback URL may point, and one bounded POST to it.

Callback URLs come from integrators, so this is where server-side request forgery is stopped:
- the URL's host (or host:port) must be on the API key's callback allow-list, checked again at
  send time because the key may have changed since the event was accepted;
- the host is resolved here and every address is classified; an address that is not globally
  routable (private, loopback, link-local, multicast, reserved, unspecified, shared, and the
  same hidden inside IPv4-mapped, 6to4 or NAT64 IPv6 addresses) is refused unless the
  allow-list names that address itself (an IP literal entry) or, for a loopback address,
  names `localhost`. So a DNS name on the allow-list that resolves into the private network
  is refused until an administrator lists that address too;
- the connection goes to the address that was checked, never to a second lookup of the name
  (no DNS rebinding between check and connect); TLS still verifies the certificate against
  the host name (SNI and hostname check), and the Host header carries the name;
- redirects are never followed (a 3xx is an answer like any other: a failure).
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from mecc import __version__

USER_AGENT = f"MECC-Prompts-Webhooks/{__version__}"
# A Retry-After further away than this is read as this (a receiver cannot park us for days).
RETRY_AFTER_CAP = 3600.0
# At most this many of a name's checked addresses are tried when connecting fails.
MAX_ADDRESSES = 3
DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[Any]]


class Refused(Exception):
    """Policy forbids this URL (allow-list, scheme, address): retrying cannot help."""


class Unresolvable(Exception):
    """The name did not resolve now; it may later."""


@dataclass(frozen=True)
class Timeouts:
    connect: float = 3.0
    total: float = 10.0


@dataclass(frozen=True)
class Target:
    """A checked callback: where to connect, and what to call the host while doing so."""

    scheme: str
    host: str
    port: int
    path: str
    host_header: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status code, or an error and its kind (for the metric)."""

    status_code: int | None = None
    error: str | None = None
    reason: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _entry_host(entry: str) -> tuple[str, int | None]:
    """An allow-list entry HOST, HOST:PORT, [V6] or [V6]:PORT as (host, port)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    return host, int(port) if port.isdigit() else None


def host_allowed(host: str, port: int, allow_list: Sequence[str]) -> bool:
    """The host is on the allow-list, for any port or for this one."""
    for entry in allow_list:
        name, entry_port = _entry_host(entry)
        if name == host and entry_port in (None, port):
            return True
    return False


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPAddress) -> bool:
    """Globally routable, and not any of the special ranges (nor one hidden inside IPv6)."""
    inner = _embedded_ipv4(ip)
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip in _NAT64):
        # Only a way of writing (or reaching) an IPv4 address: that address decides.
        return is_public_address(inner) if inner is not None else False
    special = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
               or ip.is_reserved or ip.is_unspecified or not ip.is_global)
    return not special and (inner is None or is_public_address(inner))


def address_permitted(ip: IPAddress, allow_list: Sequence[str]) -> bool:
    """Public, or a non-public address the allow-list names (itself, or `localhost`)."""
    if is_public_address(ip):
        return True
    named = {_entry_host(entry)[0] for entry in allow_list}
    if ip.is_loopback and "localhost" in named:
        return True
    inner = _embedded_ipv4(ip)
    return str(ip) in named or (inner is not None and str(inner) in named)


def resolve_target(url: str, allow_list: Sequence[str], *,
                   resolver: Resolver = socket.getaddrinfo) -> Target:
    """Check a callback URL against the policy and resolve it to addresses we may connect to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise Refused(f"scheme '{scheme}' is not http or https")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise Refused("the URL's port is not valid") from None
    if not host or parts.username or parts.password:
        raise Refused("the URL must name a host and carry no credentials")
    if not host_allowed(host, port, allow_list):
        raise Refused(f"host '{host}' is not on the API key's callback allow-list")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        try:
            infos = resolver(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unresolvable(f"could not resolve '{host}' ({type(exc).__name__})") from None
        candidates = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in candidates:
                candidates.append(ip)
    allowed = tuple(str(ip) for ip in candidates if address_permitted(ip, allow_list))
    if not allowed:
        shown = ", ".join(str(ip) for ip in candidates[:3]) or "nothing"
        raise Refused(f"'{host}' resolves to {shown}, not a public address; list the address "
                      "itself on the key's allow-list to allow it")
    name = f"[{host}]" if ":" in host else host
    explicit = parts.port is not None
    return Target(scheme=scheme, host=host, port=port,
                  path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                  host_header=f"{name}:{port}" if explicit else name, addresses=allowed)


def parse_retry_after(value: str | None, *, now: datetime | None = None,
                      cap: float = RETRY_AFTER_CAP) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(seconds, cap))


def _pool(target: Target, address: str, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    if target.scheme == "https":
        # Connect to the checked address; verify the certificate against the name.
        return urllib3.HTTPSConnectionPool(
            address, target.port, timeout=timeout, retries=False, maxsize=1,
            cert_reqs="CERT_REQUIRED", server_hostname=target.host,
            assert_hostname=target.host)
    return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False,
                                      maxsize=1)


def post(target: Target, body: bytes, headers: Mapping[str, str],
         timeouts: Timeouts = Timeouts()) -> Answer:  # noqa: B008 - a frozen value
    """POST once. Connecting takes at most `connect` seconds, and each read waits at most
    what is left of `total`; the response body is never read."""
    deadline = time.monotonic() + timeouts.total
    sent = {**headers, "Host": target.host_header, "User-Agent": USER_AGENT}
    answer = Answer(error="no address to connect to", reason="connection")
    for address in target.addresses[:MAX_ADDRESSES]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Answer(error="timed out", reason="timeout")
        timeout = urllib3.Timeout(connect=min(timeouts.connect, remaining), read=remaining)
        with _pool(target, address, timeout) as pool:
            try:
                response = pool.urlopen("POST", target.path, body=body, headers=sent,
                                        redirect=False, retries=False, preload_content=False,
                                        assert_same_host=False)
            except NewConnectionError:
                answer = Answer(error="could not connect", reason="connection")
                continue  # the next checked address, if any
            except ConnectTimeoutError:
                answer = Answer(error="connect timed out", reason="timeout")
                continue
            except ReadTimeoutError:
                return Answer(error="timed out waiting for the answer", reason="timeout")
            except SSLError as exc:
                return Answer(error=f"TLS failed ({type(exc).__name__})", reason="tls")
            except (ProtocolError, urllib3.exceptions.HTTPError, OSError) as exc:
                return Answer(error=f"connection broken ({type(exc).__name__})",
                              reason="connection")
            try:
                return Answer(status_code=response.status,
                              retry_after=parse_retry_after(response.headers.get("Retry-After")))
            finally:
                response.close()
    return answer


@dataclass(frozen=True)
class Fetched:
    """What one GET got: a status code and the body (at most `max_bytes`), or an error."""

    status_code: int | None = None
    body: bytes = b""
    error: str | None = None


def get(target: Target, headers: Mapping[str, str], timeouts: Timeouts = Timeouts(),  # noqa: B008
        max_bytes: int = 5_000_000) -> Fetched:
    """GET once from a checked target (the CDS Hooks FHIR fetch uses it), under the same rules
    as `post`: the checked address only, no redirects, bounded time; a body larger than
    `max_bytes` is an error rather than a truncated document."""
    deadline = time.monotonic() + timeouts.total
    sent = {**headers, "Host": target.host_header, "User-Agent": USER_AGENT}
    answer = Fetched(error="no address to connect to")
    for address in target.addresses[:MAX_ADDRESSES]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Fetched(error="timed out")
        timeout = urllib3.Timeout(connect=min(timeouts.connect, remaining), read=remaining)
        with _pool(target, address, timeout) as pool:
            try:
                response = pool.urlopen("GET", target.path, headers=sent, redirect=False,
                                        retries=False, preload_content=False,
                                        assert_same_host=False)
            except (NewConnectionError, ConnectTimeoutError):
                answer = Fetched(error="could not connect")
                continue
            except ReadTimeoutError:
                return Fetched(error="timed out waiting for the answer")
            except SSLError as exc:
                return Fetched(error=f"TLS failed ({type(exc).__name__})")
            except (ProtocolError, urllib3.exceptions.HTTPError, OSError) as exc:
                return Fetched(error=f"connection broken ({type(exc).__name__})")
            try:
                body = response.read(max_bytes + 1)
            except (ReadTimeoutError, ProtocolError, urllib3.exceptions.HTTPError,
                    OSError) as exc:
                return Fetched(error=f"reading the answer failed ({type(exc).__name__})")
            finally:
                response.close()
            if len(body) > max_bytes:
                return Fetched(response.status, error=f"the answer is over {max_bytes} bytes")
            return Fetched(response.status, body)
    return answer
