#!/usr/bin/env bash
# Builds a statically linked waldur-site-agent for x86_64 Linux with the installed gnu target
# (glibc linked statically: no glibc version dependency on the host). TLS is rustls with ring, so
# no OpenSSL is involved. Output: target/x86_64-unknown-linux-gnu/release/waldur-site-agent
# (or $CARGO_TARGET_DIR/...). Prints the path on the last line.
#
# Name resolution: a static glibc cannot load NSS modules; the agent resolves host names through
# getaddrinfo, which in a static binary still reads /etc/hosts and /etc/resolv.conf (the "files"
# and "dns" sources compiled in), which is all a container or a unit needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
target=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" -p waldur-site-agent --bin waldur-site-agent
out="${CARGO_TARGET_DIR:-target}/$target/release/waldur-site-agent"
if ldd "$out" 2>&1 | grep -q "not a dynamic executable\|statically linked"; then
    :
else
    echo "build-static: $out is dynamically linked:" >&2
    ldd "$out" >&2 || true
    exit 1
fi
echo "$out"
