#!/usr/bin/env bash
# Builds coturn from a source tree the caller extracted (nothing of coturn is committed or
# vendored here), out of tree with cmake, into target/coturn-<version>/ of this repository,
# and prints the path of the turnserver it built (the only thing on stdout).
#
#   git -C /path/to/coturn.git archive 4.17.1 | tar -x -C /tmp/coturn-src
#   COTURN_NEW=$(benches/build-coturn.sh /tmp/coturn-src) benches/xdp.sh
#
# Needs cmake, a C compiler, pkg-config, libevent-dev, libssl-dev and libmicrohttpd-dev
# (Debian's names; coturn 4.17 requires libmicrohttpd for its Prometheus exporter, which is
# compiled in and off unless --prometheus). The database back ends SQLite, PostgreSQL and MySQL
# and systemd's notify are left out, so the build depends less on what else the machine has
# installed (Redis comes in through pkg-config when libhiredis-dev is there; cmake has no switch
# for it). The benchmarks use none of them. Env: JOBS (parallel compile jobs, default the CPU count), REBUILD=1 (start the
# build directory afresh).
set -euo pipefail
[[ $# == 1 ]] || { echo "usage: $0 COTURN_SOURCE_DIR" >&2; exit 2; }
SRC=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
[[ -f $SRC/CMakeLists.txt && -f $SRC/src/ns_turn_defs.h ]] ||
    { echo "$SRC: not a coturn source tree (no CMakeLists.txt or src/ns_turn_defs.h)" >&2; exit 1; }
for tool in cmake pkg-config cc; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
for pc in libevent openssl libmicrohttpd; do
    pkg-config --exists "$pc" ||
        { echo "pkg-config finds no $pc (install libevent-dev, libssl-dev, libmicrohttpd-dev)" >&2; exit 1; }
done

# The version the sources declare (the release's own number, not `git describe`: an extracted
# archive has no .git, and cmake then takes its BUILD_VERSION from CMakeLists.txt as well).
VERSION=$(sed -n 's/^#define TURN_SERVER_VERSION "\([0-9][0-9.]*\)"$/\1/p' "$SRC/src/ns_turn_defs.h")
[[ -n $VERSION ]] || { echo "no TURN_SERVER_VERSION in $SRC/src/ns_turn_defs.h" >&2; exit 1; }
OUT=$ROOT/target/coturn-$VERSION
[[ ${REBUILD:-0} == 1 ]] && rm -rf "$OUT"
mkdir -p "$OUT"

# Optional dependencies are turned off explicitly (CMAKE_DISABLE_FIND_PACKAGE_*), so a
# library that happens to be installed does not change the binary. coturn's relay calls
# pkg_check_modules (for hiredis) without loading PkgConfig itself, counting on a Find module
# before it (SQLite's) to have done so; with SQLite off, this hook loads it first.
echo 'find_package(PkgConfig REQUIRED)' >"$OUT/pkgconfig.cmake"
cmake -S "$SRC" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DFUZZER=OFF \
    -DWITH_MYSQL=OFF -DCMAKE_PROJECT_INCLUDE_BEFORE="$OUT/pkgconfig.cmake" \
    -DCMAKE_DISABLE_FIND_PACKAGE_SQLite=ON -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_mongo=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_libsystemd=ON \
    -DCMAKE_INSTALL_PREFIX="$OUT" >"$OUT/cmake.log" 2>&1 ||
    { echo "cmake configure failed; the end of $OUT/cmake.log:" >&2; tail -30 "$OUT/cmake.log" >&2; exit 1; }
cmake --build "$OUT/build" --target turnserver -j "${JOBS:-$(nproc)}" >"$OUT/build.log" 2>&1 ||
    { echo "build failed; the end of $OUT/build.log:" >&2; tail -30 "$OUT/build.log" >&2; exit 1; }

BIN=$(find "$OUT/build" -type f -name turnserver -perm -u+x | head -1)
[[ -n $BIN ]] || { echo "no turnserver binary under $OUT/build" >&2; exit 1; }
install -m 755 "$BIN" "$OUT/turnserver"
# The binary must say it is the version built (a stale or wrong build directory would not).
"$OUT/turnserver" --version 2>/dev/null | grep -qx "$VERSION" ||
    { echo "$OUT/turnserver --version does not print $VERSION" >&2; exit 1; }
echo "$OUT/turnserver"
