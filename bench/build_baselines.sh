#!/bin/sh
# Build the conversion-only C baselines (libyuv, swscale).
# Usage: bench/build_baselines.sh [OUTDIR]   (default: target/bench-bin)
# Produces OUTDIR/convert_baselines. Needs Debian: gcc pkg-config libyuv-dev
# libswscale-dev libavutil-dev.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-target/bench-bin}
CC=${CC:-gcc}
PKGS="gcc pkg-config libyuv-dev libswscale-dev libavutil-dev"

die() {
    echo "build_baselines: $1" >&2
    echo "build_baselines: install with: apt-get install -y $PKGS" >&2
    exit 1
}

command -v "$CC" >/dev/null 2>&1 || die "C compiler '$CC' not found (Debian package: gcc)"
command -v pkg-config >/dev/null 2>&1 || die "pkg-config not found (Debian package: pkg-config)"
pkg-config --exists libswscale libavutil ||
    die "libswscale/libavutil development files not found (Debian packages: libswscale-dev libavutil-dev)"

# libyuv-dev ships no .pc file on Debian 12; probe the header and library directly.
printf '#include <libyuv.h>\nint main(void){return ARGBToI420(0,0,0,0,0,0,0,0,0,0)==0;}\n' |
    "$CC" -x c - -o /dev/null -lyuv >/dev/null 2>&1 ||
    die "libyuv header or library not found (Debian package: libyuv-dev)"

mkdir -p "$out"
set -x
"$CC" -O2 -std=c11 -Wall -Wextra -o "$out/convert_baselines" "$here/convert_baselines.c" \
    $(pkg-config --cflags libswscale libavutil) \
    -lyuv $(pkg-config --libs libswscale libavutil) -lm
