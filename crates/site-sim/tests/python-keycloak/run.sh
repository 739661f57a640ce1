#!/usr/bin/env bash
# Fidelity check: python-keycloak (PyPI, the library the upstream plugins use) runs its group,
# user and membership calls against `site-sim keycloak --demo`. Prints PASS/FAIL lines; exits
# non-zero on a failure.
#
# Env: SITE_SIM (the site-sim binary; built with cargo when unset), VENV (default
#      /tmp/waldur-site-sim-venv, completed with pip when python-keycloak is missing).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
VENV=${VENV:-/tmp/waldur-site-sim-venv}
WORK=$(mktemp -d /tmp/site-sim-keycloak-XXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

(
  flock 9
  if ! "$VENV/bin/python" -c "import keycloak" 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV" || exit 1
    "$VENV/bin/pip" install -q python-keycloak || exit 1
  fi
) 9>"$VENV.lock" || { echo "FAIL: making the venv $VENV"; exit 1; }
if [ -z "${SITE_SIM:-}" ]; then
  (cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q -p site-sim) || exit 1
  SITE_SIM="$REPO/target/debug/site-sim"
fi

"$SITE_SIM" keycloak --listen 127.0.0.1:0 --demo --token-lifespan 2 >"$WORK/info.json" 2>"$WORK/sim.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/info.json" ] && break; sleep 0.1; done
[ -s "$WORK/info.json" ] || { echo "FAIL: site-sim did not start"; cat "$WORK/sim.log"; exit 1; }

SIM_INFO="$WORK/info.json" "$VENV/bin/python" "$HERE/check.py" 2>"$WORK/check.log"
rc=$?
if [ "$rc" != 0 ]; then echo "--- log"; tail -40 "$WORK/check.log"; fi
exit "$rc"
