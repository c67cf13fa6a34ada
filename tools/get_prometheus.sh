#!/usr/bin/env bash
# Puts the Debian package `prometheus` (its binary only) under $1 without installing it system-wide:
# apt-get download + dpkg-deb -x need no root and leave the system alone. Falls back to a
# prometheus already on PATH.
set -euo pipefail
dest="$1"
bin="$dest/usr/bin/prometheus"
[ -x "$bin" ] && exit 0
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
    dpkg-deb -x "$work"/prometheus_*.deb "$dest"
elif command -v prometheus >/dev/null; then
    mkdir -p "$dest/usr/bin" && ln -sf "$(command -v prometheus)" "$bin"
else
    echo "cannot get Prometheus: no apt-get download and none on PATH (apt install prometheus)" >&2
    exit 1
fi
"$bin" --version | head -1
