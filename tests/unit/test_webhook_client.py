"""Where a callback URL may point (the SSRF policy) and reading Retry-After: pure functions,
no network (a stand-in resolver plays DNS)."""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from mecc.delivery import webhook_client as client


# ------------------------------------------------------------------------------ addresses
@pytest.mark.parametrize("address", [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "127.8.8.8", "169.254.169.254",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "100.64.0.1",
    "0.0.0.0",  # noqa: S104 - classified, never bound
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "2002:a00:1::", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",
])
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not client.is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [
    "93.184.216.34", "8.8.8.8", "1.1.1.1", "2a00:1450:4009:81f::200e",
    "::ffff:93.184.216.34", "64:ff9b::808:808",
])
def test_public_addresses_are_public(address: str) -> None:
    assert client.is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address, allow_list, permitted", [
    ("93.184.216.34", [], True),
    ("10.0.0.5", ["gp.example"], False),
    ("10.0.0.5", ["gp.example", "10.0.0.5"], True),
    ("10.0.0.5", ["gp.example", "10.0.0.5:8443"], True),  # the port is the host check's
    ("10.0.0.6", ["10.0.0.5"], False),
    ("127.0.0.1", ["localhost"], True),
    ("::1", ["localhost:8080"], True),
    ("::1", ["[::1]:8080"], True),
    ("169.254.169.254", ["localhost"], False),  # localhost vouches for loopback only
    ("::ffff:10.0.0.5", ["10.0.0.5"], True),
])
def test_a_private_address_needs_the_allow_list_to_name_it(
        address: str, allow_list: list[str], permitted: bool) -> None:
    assert client.address_permitted(ipaddress.ip_address(address), allow_list) is permitted


def resolver_for(*addresses: str) -> Any:
    def resolve(host: str, port: int, type: int = 0) -> list[Any]:  # getaddrinfo's names
        assert type == socket.SOCK_STREAM
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]
    return resolve


@pytest.mark.parametrize("resolved", ["10.0.0.1", "127.0.0.1", "169.254.169.254", "::1",
                                      "::ffff:192.168.0.10", "0.0.0.0"])  # noqa: S104
def test_an_allow_listed_name_resolving_into_the_private_network_is_refused(
        resolved: str) -> None:
    with pytest.raises(client.Refused, match="not a public address"):
        client.resolve_target("https://gp.example/hook", ["gp.example"],
                              resolver=resolver_for(resolved))


def test_an_allow_listed_name_resolving_to_a_listed_private_address_is_allowed() -> None:
    target = client.resolve_target("http://gp.example:8080/hook?x=1",
                                   ["gp.example:8080", "10.0.0.1"],
                                   resolver=resolver_for("10.0.0.1"))
    assert target.addresses == ("10.0.0.1",)
    assert (target.host, target.port, target.path) == ("gp.example", 8080, "/hook?x=1")
    assert target.host_header == "gp.example:8080"


def test_only_the_checked_addresses_are_kept() -> None:
    target = client.resolve_target("https://gp.example/hook", ["gp.example"],
                                   resolver=resolver_for("10.0.0.1", "93.184.216.34"))
    assert target.addresses == ("93.184.216.34",)
    assert target.host_header == "gp.example" and target.port == 443 and target.path == "/hook"


@pytest.mark.parametrize("url, allow_list, message", [
    ("https://other.example/hook", ["gp.example"], "allow-list"),
    ("https://gp.example:9443/hook", ["gp.example:8443"], "allow-list"),
    ("https://gp.example.evil.test/hook", ["gp.example"], "allow-list"),
    ("ftp://gp.example/hook", ["gp.example"], "scheme"),
    ("https://user:pw@gp.example/hook", ["gp.example"], "credentials"),
    ("http://10.0.0.1/hook", ["gp.example"], "allow-list"),
    ("https://gp.example:99999/hook", ["gp.example"], "port"),
])
def test_urls_off_the_policy_are_refused(url: str, allow_list: list[str], message: str) -> None:
    with pytest.raises(client.Refused, match=message):
        client.resolve_target(url, allow_list, resolver=resolver_for("93.184.216.34"))


def test_ip_literals_and_localhost_on_the_allow_list() -> None:
    never = resolver_for()  # an IP literal is never looked up
    assert client.resolve_target("http://127.0.0.1:8080/h", ["127.0.0.1:8080"],
                                 resolver=never).addresses == ("127.0.0.1",)
    assert client.resolve_target("http://[::1]:8080/h", ["[::1]:8080"],
                                 resolver=never).host_header == "[::1]:8080"
    target = client.resolve_target("http://localhost:8080/h", ["localhost:8080"],
                                   resolver=resolver_for("::1", "127.0.0.1"))
    assert target.addresses == ("::1", "127.0.0.1")


def test_a_name_that_does_not_resolve_is_retried_not_refused() -> None:
    def fail(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(client.Unresolvable):
        client.resolve_target("https://gp.example/hook", ["gp.example"], resolver=fail)


# ------------------------------------------------------------------------------ Retry-After
def test_retry_after_in_seconds() -> None:
    assert client.parse_retry_after("120") == 120.0
    assert client.parse_retry_after(" 0 ") == 0.0
    assert client.parse_retry_after("999999") == client.RETRY_AFTER_CAP


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    later = format_datetime(now + timedelta(minutes=5), usegmt=True)
    assert client.parse_retry_after(later, now=now) == 300.0
    earlier = format_datetime(now - timedelta(minutes=5), usegmt=True)
    assert client.parse_retry_after(earlier, now=now) == 0.0
    far = format_datetime(now + timedelta(days=3), usegmt=True)
    assert client.parse_retry_after(far, now=now) == client.RETRY_AFTER_CAP


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Fri, 99 Foo 2026"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert client.parse_retry_after(value) is None
