"""A real headless browser for the chat page's tests: Debian's chromium driven through Debian's chromium-driver by
Selenium 4, both named by path so that Selenium Manager never looks for (or downloads) a driver of its own.

Selenium rather than Playwright: Playwright's Python package drives browsers through its own Node.js driver, is
tested against the Chromium builds it downloads, and would need `executable_path` pointed at a Debian browser of a
version it does not pin; chromium-driver is built from the same source as Debian's chromium, so the two always
match, and WebDriver is the W3C protocol the browser ships for this."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

WINDOW = (1280, 860)


def _path_of(variable: str, program: str) -> str:
    found = os.environ.get(variable) or shutil.which(program)
    if not found:
        raise RuntimeError(f"{program} is missing: `make chromium` installs Debian's chromium and chromium-driver")
    return found


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, should anything call it, must not reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = _path_of("MONOLITH_CHROMIUM", "chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",  # nothing outside the loopback server
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_path_of("MONOLITH_CHROMEDRIVER", "chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def severe_console_errors(driver: webdriver.Chrome) -> list[str]:
    """What the page logged at SEVERE (script errors, refused resources, CSP violations) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def loaded_resources(driver: webdriver.Chrome) -> list[str]:
    """Every URL the page loaded (its scripts, styles, images, fonts), as the browser's resource timing says."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
