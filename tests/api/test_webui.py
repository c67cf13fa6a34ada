"""The chat page's HTTP side, in process: served at / without a key, its files compressed and revalidated with
ETags, a strict Content-Security-Policy, and a 404 that says why when server.web_ui is off. What the page does in a
browser is tests/api/test_webui_browser.py."""

from __future__ import annotations

import gzip
import re

from litestar.testing import AsyncTestClient
from pydantic import SecretStr

from monolith.api.app import create_app
from monolith.api.webui import STATIC, accepts_gzip, etag_matches
from monolith.config import Settings
from tests.api.test_app import ready_with

KEY = "sk-page-test"


def keyed(settings: Settings, **server: object) -> Settings:
    update = {"api_keys": [SecretStr(KEY)], **server}
    return settings.model_copy(update={"server": settings.server.model_copy(update=update)})


async def test_the_page_loads_without_a_key_and_the_api_still_needs_one(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(keyed(settings), loader=ready_with(None))) as client:
        page = await client.get("/")
        assets = [await client.get(f"/ui/{name}") for name in ("app.js", "style.css", "icon.svg")]
        models = await client.get("/v1/models")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert 'aria-label="Message"' in page.text
    assert [a.status_code for a in assets] == [200, 200, 200]
    assert assets[0].headers["content-type"].startswith("text/javascript")
    assert models.status_code == 401


async def test_every_file_the_page_names_is_served(settings: Settings) -> None:
    """The HTML names its script, stylesheet and icon by path: each of them must exist, or the page breaks."""
    html = (STATIC / "index.html").read_text()
    named = re.findall(r'(?:src|href)="(/[^"]*)"', html)
    assert {"/ui/app.js", "/ui/style.css", "/ui/icon.svg"} <= set(named)
    async with AsyncTestClient(app=create_app(settings, loader=ready_with(None))) as client:
        answers = {path: (await client.get(path)).status_code for path in named}
        missing = await client.get("/ui/nothing.js")
        traversal = await client.get("/ui/..%2Fwebui.py")
    assert set(answers.values()) == {200}, answers
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert traversal.status_code == 404


async def test_the_default_icon_address_answers_with_the_pages_icon_without_a_key(settings: Settings) -> None:
    """Browsers ask for /favicon.ico for any document without an icon of its own (an asset opened by itself)."""
    async with AsyncTestClient(app=create_app(keyed(settings), loader=ready_with(None))) as client:
        favicon = await client.get("/favicon.ico", headers={"Accept-Encoding": "identity"})
    assert favicon.status_code == 200 and favicon.headers["content-type"].startswith("image/svg+xml")
    assert favicon.content == (STATIC / "icon.svg").read_bytes()


async def test_the_page_forbids_inline_script_and_framing(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(settings, loader=ready_with(None))) as client:
        page = await client.get("/")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    # The CSP would refuse an inline script anyway; the page has none, nor inline handlers or styles.
    html = (STATIC / "index.html").read_text()
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert re.search(r"\son[a-z]+=|\sstyle=", html) is None


async def test_files_are_compressed_and_revalidated(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(settings, loader=ready_with(None))) as client:
        plain = await client.get("/ui/app.js", headers={"Accept-Encoding": "identity"})
        zipped = await client.get("/ui/app.js", headers={"Accept-Encoding": "gzip, br"})
        revalidate = {"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
        again = await client.get("/ui/app.js", headers=revalidate)
        other = await client.get("/ui/app.js", headers={"If-None-Match": '"stale"', "Accept-Encoding": "identity"})
    source = (STATIC / "app.js").read_bytes()
    assert plain.content == source and "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(source) / 2
    assert zipped.headers["etag"] != plain.headers["etag"]  # two representations, two strong validators
    assert zipped.headers["vary"] == "Accept-Encoding" and zipped.headers["cache-control"] == "no-cache"
    assert again.status_code == 304 and again.content == b""
    assert other.status_code == 200 and other.content == source


def test_accept_encoding_and_if_none_match_are_read_as_http_says() -> None:
    assert accepts_gzip("gzip") and accepts_gzip("br, gzip;q=0.5") and accepts_gzip("*")
    assert not accepts_gzip(None) and not accepts_gzip("br") and not accepts_gzip("gzip;q=0")
    assert etag_matches('W/"abc", "def"', '"abc"') and etag_matches("*", '"x"')
    assert not etag_matches('"abcd"', '"abc"') and not etag_matches(None, '"abc"')


def test_the_compressed_files_are_what_they_compress(settings: Settings) -> None:
    from monolith.api.webui import load_assets

    for name, asset in load_assets().items():
        assert gzip.decompress(asset.gzipped) == (STATIC / name).read_bytes()


async def test_web_ui_off_is_a_404_that_says_why(settings: Settings) -> None:
    off = settings.model_copy(update={"server": settings.server.model_copy(update={"web_ui": False})})
    async with AsyncTestClient(app=create_app(off, loader=ready_with(None))) as client:
        page = await client.get("/")
        asset = await client.get("/ui/app.js")
    assert page.status_code == 404 and "server.web_ui" in page.json()["error"]["message"]
    assert asset.status_code == 404
