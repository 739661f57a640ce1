#!/usr/bin/env bash
# Start Debian's dockerd by hand (no systemd): no iptables, no bridge (containers use
# `--network host`), its own data root, exec root and socket under $DOCKER_STATE_DIR
# (default /tmp/waldur-services/docker). Idempotent. Writes env.sh with DOCKER_HOST.
#   bash scripts/services/docker-up.sh ; . /tmp/waldur-services/docker/env.sh ; docker info
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/_lib.sh"
S="${DOCKER_STATE_DIR:-$WALDUR_SERVICES_DIR/docker}"
SOCK="$S/docker.sock"
fail() { echo "ERROR: $*" >&2; [ -s "$S/dockerd.log" ] && tail -20 "$S/dockerd.log" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "dockerd needs root"
apt_install docker.io
mkdir -p "$S/data" "$S/exec"
# Debian's client, not whatever `docker` comes first on PATH.
DOCKER=/usr/bin/docker
cat > "$S/env.sh" <<ENV
export DOCKER_HOST=unix://$SOCK
export WALDUR_TEST_DOCKER=$DOCKER
ENV
ok() { "$DOCKER" -H "unix://$SOCK" version --format '{{.Server.Version}}'; }
if ! pid_alive "$S/dockerd.pid" dockerd; then
  rm -f "$SOCK" "$S/exec/dockerd.pid"
  start_bg "$S/dockerd.pid" "$S/dockerd.log" dockerd \
    --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
    --data-root "$S/data" --exec-root "$S/exec" --pidfile "$S/exec/dockerd.pid" \
    --host "unix://$SOCK" --storage-driver "${DOCKER_STORAGE_DRIVER:-overlay2}"
  if ! wait_svc 60 "$S/dockerd.pid" ok; then
    # overlayfs on overlayfs is refused on some hosts: fall back to vfs once
    if [ -z "${DOCKER_STORAGE_DRIVER:-}" ]; then
      stop_pid "$S/dockerd.pid" dockerd
      DOCKER_STORAGE_DRIVER=vfs exec bash "$0" "$@"
    fi
    fail "dockerd did not start"
  fi
fi
echo "dockerd up: DOCKER_HOST=unix://$SOCK  (source $S/env.sh)"
