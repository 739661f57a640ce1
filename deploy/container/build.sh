#!/usr/bin/env bash
# Builds the container image from deploy/container/Dockerfile.
#   bash deploy/container/build.sh [TAG]        (default waldur-site-agent:dev)
# Env: AGENT_BIN  an already built static binary (default: scripts/build-static.sh builds one)
#      DOCKER     the docker client (default: docker); DOCKER_HOST as usual.
# Prints the tag on the last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TAG=${1:-waldur-site-agent:dev}
DOCKER=${DOCKER:-docker}
BIN=${AGENT_BIN:-}
if [ -z "$BIN" ]; then
  BIN=$(bash "$REPO/scripts/build-static.sh" | tail -1)
  case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
fi
[ -x "$BIN" ] || { echo "no agent binary at $BIN" >&2; exit 1; }
if ! ldd "$BIN" 2>&1 | grep -q "not a dynamic executable\|statically linked"; then
  echo "$BIN is not statically linked: the image has no libc" >&2
  exit 1
fi
CA=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$CA" ] || { echo "no CA bundle at $CA (apt-get install ca-certificates)" >&2; exit 1; }

CTX=$(mktemp -d /tmp/waldur-agent-image-XXXX)
trap 'rm -rf "$CTX"' EXIT
R="$CTX/rootfs"
mkdir -p "$R/usr/local/bin" "$R/etc/ssl/certs" "$R/home/waldur" "$R/tmp" "$R/etc/waldur-site-agent"
install -m 0755 "$BIN" "$R/usr/local/bin/waldur-site-agent"
for name in waldur_site_agent waldur_site_healthz waldur_site_diagnostics \
            waldur_site_load_components waldur_sync_offering_users; do
  ln -s waldur-site-agent "$R/usr/local/bin/$name"
done
install -m 0644 "$CA" "$R/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nwaldur:x:1000:1000:waldur:/home/waldur:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' > "$R/etc/passwd"
printf 'root:x:0:\nwaldur:x:1000:\nnobody:x:65534:\n' > "$R/etc/group"
# a static glibc resolves names from these files (no NSS modules)
printf 'hosts: files dns\n' > "$R/etc/nsswitch.conf"
chmod 1777 "$R/tmp"
chown -R 1000:1000 "$R/home/waldur"
cp "$HERE/Dockerfile" "$CTX/Dockerfile"
"$DOCKER" build -q -t "$TAG" "$CTX" >/dev/null
echo "$TAG"
