"""Callback destinations: only http(s) to public addresses unless an operator allows them; malformed URLs are
400s naming callback_url; what a job body shows of a URL carries no credentials."""

from __future__ import annotations

import pytest

from monolith.config import parse_callback_rule as parse_rule
from monolith.errors import BadRequest
from monolith.jobs.destinations import CallbackPolicy, parse, shown

BLOCKED = [
    "http://127.0.0.1/hook",
    "http://127.0.0.1:9000/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://2130706433/",  # 127.0.0.1 written as one decimal number
    "http://0x7f000001/",  # ... and in hex
    "http://127.1/",  # ... and shortened
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[fe80::1]/",  # link-local
    "http://[fc00::1]/",  # unique local
    "http://224.0.0.1/",  # multicast
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://localhost:8080/",
    "https://user:pw@127.0.0.1/",
]
MALFORMED = [
    "ftp://example.com/x",
    "file:///etc/passwd",
    "gopher://127.0.0.1/",
    "http:///no-host",
    "http://[::1/",  # unclosed IPv6 literal
    "http://[::1]]:80/",
    "http://example.com:99999/",  # port out of range
    "http://example.com:-1/",
    "http://exa mple.com/",
    "http://example.com/\r\nX-Injected: 1",
    "//example.com/no-scheme",
    "not a url",
    "",
]


@pytest.mark.parametrize("url", BLOCKED)
async def test_non_public_destinations_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(BadRequest) as refused:
        await CallbackPolicy([]).check(url)
    assert refused.value.param == "callback_url" and "callbacks.allow" in refused.value.message


@pytest.mark.parametrize("url", MALFORMED)
async def test_malformed_urls_are_400s_never_500s(url: str) -> None:
    with pytest.raises(BadRequest) as refused:
        await CallbackPolicy([]).check(url)
    assert refused.value.param == "callback_url"


async def test_public_addresses_pass_without_any_lookup() -> None:
    target = await CallbackPolicy([]).check("https://93.184.216.34:8443/hooks?x=1")
    assert (target.scheme, target.host, target.port, target.path) == ("https", "93.184.216.34", 8443, "/hooks?x=1")


async def test_a_host_that_does_not_resolve_is_a_400() -> None:
    with pytest.raises(BadRequest, match="does not resolve"):
        await CallbackPolicy([]).check("http://no-such-host.invalid/hook")


@pytest.mark.parametrize(
    ("allow", "url", "admitted"),
    [
        (["127.0.0.1:9000"], "http://127.0.0.1:9000/hook", True),
        (["127.0.0.1:9000"], "http://127.0.0.1:9001/hook", False),  # another port
        (["127.0.0.1"], "http://127.0.0.1:12345/hook", True),
        (["10.0.0.0/8"], "http://10.20.30.40/", True),
        (["10.0.0.0/8"], "http://11.0.0.1/", True),  # public anyway
        (["10.0.0.0/8"], "http://192.168.0.1/", False),
        (["[::1]:9000"], "http://[::1]:9000/", True),
        (["::1"], "http://[::1]:80/", True),
        (["localhost"], "http://localhost:8080/", True),
        (["localhost:8080"], "http://LOCALHOST:8081/", False),
        (["hooks.internal"], "http://localhost/", False),
    ],
)
async def test_the_allow_list_admits_what_an_operator_trusts(allow: list[str], url: str, admitted: bool) -> None:
    policy = CallbackPolicy(allow)
    if admitted:
        await policy.check(url)
    else:
        with pytest.raises(BadRequest):
            await policy.check(url)


@pytest.mark.parametrize("entry", ["", "10.0.0.0/33", "a/b", "host:port"])
def test_a_bad_allow_entry_is_refused_at_start(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_rule(entry)


def test_a_job_body_shows_no_credentials_path_or_query() -> None:
    assert (
        shown("https://user:s3cret@hooks.example.com:8443/t/TOKEN123?sig=abc#x") == "https://hooks.example.com:8443/…"
    )
    assert shown("http://[2001:db8::1]/a") == "http://[2001:db8::1]/…"
    assert shown("http://[::1") == "(not a valid URL)"
    assert parse("https://h.example.com/a/b?c=d").path == "/a/b?c=d"
