"""The chat page: GET / and its files under /ui/, a reference client of the server's own public API.

The files ship inside the package (no build step, nothing fetched from elsewhere at run time, so the page works on
an offline laptop). They are read and gzip-compressed once at start-up; every answer carries a strong ETag and
`Cache-Control: no-cache`, so a browser revalidates and gets a 304 without the body. The page needs no key to load
(the calls it makes do), and its Content-Security-Policy allows no inline script, so nothing a model or a source
writes can run even if it reached the DOM as markup.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler

from monolith.config import Settings

STATIC = Path(__file__).with_name("static")
INDEX = "index.html"
ICON = "icon.svg"  # index.html links it; /favicon.ico answers with it too
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# The handlers the API-key guard lets through without a key: the page itself holds no data.
PUBLIC = {"public": True}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    etag: str  # of the identity body; the gzipped one is this with a -gz suffix (another representation)


def load_assets(folder: Path = STATIC) -> dict[str, Asset]:
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in MEDIA_TYPES:
            continue
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:20]
        # mtime=0: the same bytes, so the same ETag, on every replica and every start.
        assets[path.name] = Asset(body, gzip.compress(body, 9, mtime=0), MEDIA_TYPES[path.suffix], digest)
    return assets


def accepts_gzip(accept_encoding: str | None) -> bool:
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=").strip() if params.strip().startswith("q=") else "1"
            try:
                return float(quality) > 0
            except ValueError:
                return False
    return False


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match compares weakly (RFC 9110 13.1.2): W/ prefixes are ignored, * matches anything."""
    tags = [tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")]
    return "*" in tags or etag in tags


def serve(asset: Asset, request: Request) -> Response[bytes]:
    zipped = accepts_gzip(request.headers.get("accept-encoding"))
    etag = f'"{asset.etag}-gz"' if zipped else f'"{asset.etag}"'
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(b"", status_code=304, headers=headers, media_type=asset.media_type)
    if zipped:
        headers["Content-Encoding"] = "gzip"
    return Response(asset.gzipped if zipped else asset.body, headers=headers, media_type=asset.media_type)


@get("/", opt=PUBLIC, include_in_schema=False)
async def page(request: Request) -> Response[bytes]:
    return serve(request.app.state.web_assets[INDEX], request)


@get("/ui/{name:str}", opt=PUBLIC, include_in_schema=False)
async def asset(request: Request, name: str) -> Response[bytes]:
    found = request.app.state.web_assets.get(name)
    if found is None:
        raise NotFoundException(f"no file {name!r} in the chat page")
    return serve(found, request)


@get("/favicon.ico", opt=PUBLIC, include_in_schema=False)
async def favicon(request: Request) -> Response[bytes]:
    """The page's icon where browsers look for one by default (any document of this origin without an icon of its
    own: an asset opened by itself, an error page), instead of a 404 in the console and the access log."""
    return serve(request.app.state.web_assets[ICON], request)


@get("/", opt=PUBLIC, include_in_schema=False)
async def page_off() -> None:
    raise NotFoundException("the chat page is turned off (server.web_ui: false)")


def web_ui_handlers(settings: Settings) -> list[HTTPRouteHandler]:
    """The page, or (server.web_ui: false) a 404 that says why, where GET / would otherwise be a 405 beside TGI's
    POST /. Plain handlers, registered after the controllers: Litestar 2.25 refuses a second controller on a path
    a controller already has (both bring an OPTIONS handler), but merges a plain handler into it."""
    return [page, asset, favicon] if settings.server.web_ui else [page_off]
