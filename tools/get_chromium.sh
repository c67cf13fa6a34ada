#!/usr/bin/env bash
# A headless browser for the chat page's tests: Debian's chromium with its matching chromium-driver, installed
# from the distribution's archive the way PostgreSQL is (tools/get_postgres.sh). Nothing downloads a browser
# or a driver of its own (no Selenium Manager, no `playwright install`).
#   - both already on PATH: used as they are;
#   - as root: apt-get installs the two packages (after an update when the index is stale);
#   - otherwise: a clear error with the command to run, since a browser's dozens of shared libraries cannot be
#     unpacked beside the tests the way one server binary can.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "the browser tests need Debian's chromium and chromium-driver:" >&2
    echo "  sudo apt-get install --no-install-recommends chromium chromium-driver" >&2
    exit 1
fi
install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }
install || { apt-get update -q >/dev/null && install; }
chromium --version 2>/dev/null
chromedriver --version
