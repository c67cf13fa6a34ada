"""Screenshots of three pages of the built documentation site (`make docs-screenshots`), taken in the headless
chromium the chat page's browser tests use (tests/browser.py: Debian's, nothing downloaded), the site served
over loopback. tests/docs/test_site.py opens the same pages and checks they load nothing from elsewhere.

    python tools/docs_screenshots.py SITE_DIR OUT_DIR
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"home": "index.html", "getting-started": "getting-started.html", "api-openai": "api/openai.html"}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def served(site: Path) -> Iterator[str]:
    """The built site on a loopback port, for as long as the block runs; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.browser import chromium

    site, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    with served(site) as base, chromium() as driver:
        for name, page in PAGES.items():
            driver.get(f"{base}/{page}")
            driver.save_screenshot(str(out / f"{name}.png"))
            print(f"{out / name}.png: {driver.title}")


if __name__ == "__main__":
    main()
