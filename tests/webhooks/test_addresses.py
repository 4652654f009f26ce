"""Where webhooks may go (domain §8.3): every address checked, IPv4 and IPv6, including the
IPv6 forms that carry an IPv4 address; the URL's own rules."""

from __future__ import annotations

import ipaddress

import pytest

from portal.core.errors import Invalid
from portal.webhooks.addresses import refusal, resolve, url_check


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # shared address space (CGNAT)
        "169.254.169.254",  # link-local: cloud metadata
        "0.0.0.0",  # noqa: S104 (the address refused, not bound)
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "198.18.0.1",  # benchmarking
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "fec0::1",  # site-local (deprecated)
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
        "2001:db8::1",  # documentation
    ],
)
def test_internal_addresses_are_refused(address):
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450::1"]
)
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None


def test_one_internal_answer_among_public_ones_refuses_the_host(monkeypatch, settings):
    import socket

    settings.WEBHOOK_ALLOW_PRIVATE = False

    def mixed(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:192.168.0.1", port, 0, 0)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    with pytest.raises(Invalid, match=r"hooks.example resolves to ::ffff:192.168.0.1"):
        url_check("https://hooks.example/in")


def test_the_setting_lifts_the_address_rule_only(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    target, addresses = resolve("http://127.0.0.1:9000/in?x=1")
    assert (target.host, target.port, target.path) == ("127.0.0.1", 9000, "/in?x=1")
    assert addresses == [ipaddress.ip_address("127.0.0.1")]
    settings.PRODUCTION = True
    with pytest.raises(Invalid, match="https://"):
        url_check("http://127.0.0.1:9000/in")
    with pytest.raises(Invalid, match="user name"):
        url_check("https://a:b@127.0.0.1/in")


def test_the_url_is_kept_without_its_fragment(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert url_check(" https://93.184.215.14/in?a=1#frag ") == "https://93.184.215.14/in?a=1"
    assert resolve("https://[2606:4700:4700::1111]:8443/x")[0].host_header == (
        "[2606:4700:4700::1111]:8443"
    )


@pytest.mark.parametrize(
    "url",
    ["https://93.184.215.14:0/x", "https://93.184.215.14:99999/x", "https://[::1/x", "x" * 2001],
)
def test_malformed_urls_are_refused(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(Invalid):
        url_check(url)
