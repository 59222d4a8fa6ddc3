#!/usr/bin/env bash
# Installs Meetecho's simple-whip-server (the WHIP front end of the Janus
# tests and benchmark) into $PEEP_WHIP_SERVER_DIR (default
# /var/tmp/peep-whip-server, outside the clone so CI runs reuse it).
#
# `apt-get install simple-whip-server` conflicts with the preinstalled
# Node.js on this image (Debian's libnode108), so the Debian package is
# downloaded and unpacked, and its Node modules come from npm, pinned by
# .ci/whip-server/package-lock.json (`npm ci`, no install scripts).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir=${PEEP_WHIP_SERVER_DIR:-/var/tmp/peep-whip-server}
stamp="$dir/.installed-$(sha256sum "$here/whip-server/package-lock.json" | cut -c1-16)"
if [[ -f "$stamp" && -f "$dir/src/server.js" ]]; then
    exit 0
fi
rm -rf "$dir" && mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && { apt-get download -qq simple-whip-server 2>/dev/null \
    || { apt-get update -qq && apt-get download -qq simple-whip-server; }; })
dpkg-deb -x "$work"/simple-whip-server_*.deb "$work/x"
cp -r "$work/x/usr/share/simple-whip-server/src" "$dir/src"
# src/config.js is a symlink to /etc in the package; the tests write their own.
rm -f "$dir/src/config.js"
cp "$here/whip-server/package.json" "$here/whip-server/package-lock.json" "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
touch "$stamp"
echo "simple-whip-server installed in $dir"
