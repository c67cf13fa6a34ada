"""The documentation site builds strictly (a broken link, anchor or a page missing from the nav fails it, as
`make docs-build` does) and reads offline: its pages, opened in the headless chromium, load nothing from outside
the site and log no error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tools.docs_screenshots import PAGES, served

from tests.browser import chromium, loaded_resources, severe_console_errors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_site_has_every_page_the_nav_names(site: Path) -> None:
    for page in ["index.html", "getting-started.html", "reference/configuration.html", "bench/results/bench.html"]:
        assert (site / page).is_file(), page
    home = (site / "index.html").read_text()
    assert "make serve" in home and 'href="getting-started.html"' in home, "the README is the home page"


def test_the_pages_load_nothing_from_elsewhere(site: Path) -> None:
    with served(site) as base, chromium() as driver:
        for page in PAGES.values():
            driver.get(f"{base}/{page}")
            assert driver.title.endswith("monolith"), (page, driver.title)
            foreign = [url for url in loaded_resources(driver) if not url.startswith(base)]
            assert foreign == [], (page, foreign)
            assert severe_console_errors(driver) == [], page
