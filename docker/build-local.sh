#!/usr/bin/env bash
# Builds the tern image without a registry: a statically linked tern (glibc, crt-static) is
# built on this machine into target/static, stripped, staged as the only file of a build
# context, and copied into `FROM scratch` by docker/Dockerfile.local.
#
#   docker/build-local.sh [TAG]      (default tag: tern:local)
#
# Prints the image's size in bytes on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-tern:local}"
triple="$(uname -m)-unknown-linux-gnu"
# A target dir of its own: the crt-static RUSTFLAGS would otherwise rebuild (and then
# invalidate) everything in the shared target/.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_STATIC:-target/static}"
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$triple" -p tern --features jemalloc
bin="$CARGO_TARGET_DIR/$triple/release/tern"

if [[ "$(file "$bin" 2>/dev/null)" != *static* ]]; then
    if ldd "$bin" >/dev/null 2>&1; then
        echo "build-local: $bin is dynamically linked; it would not start in scratch" >&2
        exit 1
    fi
fi

context="target/docker-context"
rm -rf "$context"
mkdir -p "$context"
strip -o "$context/tern" "$bin"
cp docker/Dockerfile.local "$context/Dockerfile"
"$context/tern" --version >/dev/null

docker build -q -t "$tag" "$context" >/dev/null
docker image inspect -f '{{.Size}}' "$tag"
