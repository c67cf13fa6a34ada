#!/usr/bin/env bash
# A PostgreSQL server for the tests of the shared job store: $1/bin becomes a link to the bin directory of
# Debian's PostgreSQL server package (initdb, postgres). The tests start their own servers from it, as an
# unprivileged user when they run as root (PostgreSQL refuses to run as root).
#   - a server package already installed is used as it is;
#   - as root, the package is installed without creating or starting a cluster;
#   - otherwise it is unpacked under $1 (apt-get download + dpkg-deb -x, no root), with the libraries it
#     links that this machine lacks, the way tools/get_prometheus.sh does for Prometheus.
# MONOLITH_PG_UNPACK=1 takes the last path even where the first two would do (to test it).
set -euo pipefail
dest="$1"
[ -x "$dest/bin/postgres" ] && exit 0
mkdir -p "$dest"

newest_bindir() { ls -d "$1"/usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
server_package() { apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: \(postgresql-[0-9][0-9]*\)$/\1/p' | head -1; }

bindir=""
if [ "${MONOLITH_PG_UNPACK:-0}" != 1 ]; then
    bindir="$(newest_bindir "")"
    if [ -z "$bindir" ] && [ "$(id -u)" = 0 ]; then
        # No cluster: the package's own would listen on 5432 and outlive the tests.
        mkdir -p /etc/postgresql-common
        grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
            || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
        install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null; }
        install || { apt-get update -q >/dev/null && install; }
        bindir="$(newest_bindir "")"
    fi
fi
if [ -z "$bindir" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    package="$(server_package)"
    [ -n "$package" ] || { echo "cannot get PostgreSQL: apt-cache knows no postgresql package" >&2; exit 1; }
    (cd "$work" && apt-get download "$package" >/dev/null)
    dpkg-deb -x "$work"/"$package"_*.deb "$dest/root"
    bindir="$(newest_bindir "$dest/root")"
    libs="$dest/root/usr/lib/$(uname -m)-linux-gnu"
    # Only the libraries this machine lacks, found through the package's own Depends.
    if LD_LIBRARY_PATH="$libs" ldd "$bindir/postgres" "$bindir/initdb" | grep -q 'not found'; then
        deps="$(apt-cache depends "$package" | sed -n 's/^ *Depends: \(lib[^ ]*\)$/\1/p' | sort -u)"
        # shellcheck disable=SC2086
        (cd "$work" && apt-get download $deps >/dev/null)
        for deb in "$work"/lib*.deb; do dpkg-deb -x "$deb" "$dest/root"; done
    fi
    echo "$libs" > "$dest/library_path"
fi
ln -sfn "$bindir" "$dest/bin"
LD_LIBRARY_PATH="$(cat "$dest/library_path" 2>/dev/null || true)" "$dest/bin/postgres" --version
