#!/usr/bin/env bash
# Fidelity check: the upstream Rancher plugin from PyPI (waldur-site-agent-rancher AGENT_VERSION,
# default 1.0.7, with its Keycloak client on python-keycloak) completes its lifecycle against
# `site-sim rancher` (Rancher v3 + the Kubernetes double behind /k8s/clusters/ + the Keycloak
# double) with Keycloak enabled: ping, create (project, namespace, quota, groups, binding), set
# limits, add user, usage, remove user (group cleanup), terminate. Prints PASS/FAIL/NOTE lines;
# exits non-zero on a failure.
#
# Env: SITE_SIM (the site-sim binary; built with cargo when unset), VENV (default
#      /tmp/waldur-site-sim-venv, completed with pip when the plugin is missing).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
AGENT_VERSION=${AGENT_VERSION:-1.0.7}
VENV=${VENV:-/tmp/waldur-site-sim-venv}
WORK=$(mktemp -d /tmp/site-sim-rancher-XXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

(
  flock 9
  if ! "$VENV/bin/python" -c "import waldur_site_agent_rancher, keycloak" 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV" || exit 1
    "$VENV/bin/pip" install -q "waldur-site-agent==$AGENT_VERSION" "waldur-site-agent-rancher==$AGENT_VERSION" || exit 1
  fi
) 9>"$VENV.lock" || { echo "FAIL: making the venv $VENV"; exit 1; }
if [ -z "${SITE_SIM:-}" ]; then
  (cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q -p site-sim) || exit 1
  SITE_SIM="$REPO/target/debug/site-sim"
fi

"$SITE_SIM" rancher --listen 127.0.0.1:0 --demo >"$WORK/info.json" 2>"$WORK/sim.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/info.json" ] && break; sleep 0.1; done
[ -s "$WORK/info.json" ] || { echo "FAIL: site-sim did not start"; cat "$WORK/sim.log"; exit 1; }

SIM_INFO="$WORK/info.json" "$VENV/bin/python" "$HERE/driver.py" 2>"$WORK/driver.log"
rc=$?
if [ "$rc" != 0 ]; then echo "--- plugin log"; tail -60 "$WORK/driver.log"; fi
exit "$rc"
