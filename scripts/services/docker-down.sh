#!/usr/bin/env bash
# Stop the dockerd docker-up.sh started (by its pid). DOCKER_WIPE=1 also removes its data root
# (images, containers).
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/_lib.sh"
S="${DOCKER_STATE_DIR:-$WALDUR_SERVICES_DIR/docker}"
[ -d "$S" ] || exit 0
stop_pid "$S/dockerd.pid" dockerd 30
if [ "${DOCKER_WIPE:-0}" = 1 ]; then
  # containerd's and overlay's mounts go first, then the tree
  grep -o " $S/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || true; done
  rm -rf "$S"
fi
exit 0
