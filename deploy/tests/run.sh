#!/usr/bin/env bash
# Every deployment check, as scripts/test.sh runs them: systemd units, the Helm chart, the plain
# Kubernetes manifests, and the container image (which needs the static release binary:
# scripts/build-static.sh, several minutes the first time; AGENT_BIN skips the build).
# Each script prints PASS or SKIP (a missing tool outside CI); any FAIL fails the run.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
status=0
for t in systemd helm manifests container; do
  [ -f "$HERE/$t.sh" ] || continue
  if [ "$t" = container ] && [ -z "${AGENT_BIN:-}" ]; then
    if [ "${CI:-}" = true ] || [ -S "${WALDUR_SERVICES_DIR:-/tmp/waldur-services}/docker/docker.sock" ]; then
      AGENT_BIN=$(cd "$REPO" && bash scripts/build-static.sh | tail -1) || { echo "FAIL: scripts/build-static.sh"; status=1; continue; }
      case "$AGENT_BIN" in /*) ;; *) AGENT_BIN="$REPO/$AGENT_BIN" ;; esac
      export AGENT_BIN
    fi
  fi
  out=$(bash "$HERE/$t.sh" 2>&1); rc=$?
  printf '%s\n' "$out" | tail -15
  if [ $rc -ne 0 ] || ! grep -q -e "^PASS" -e "^SKIP" <<<"$out"; then
    echo "deploy/tests/$t.sh failed"; status=1
  fi
done
exit $status
