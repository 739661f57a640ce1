#!/usr/bin/env bash
# Checks of the site-sim OpenNebula double by outside tools, in a venv of PyPI packages:
#   run.sh pyone   pyone 7.3.80 (OpenNebula's own binding) drives every method (pyone_driver.py)
#   run.sh xsd     the pyone scenario (and the upstream plugin's, when plugin_driver.py exists),
#                  then every XML document the double answered is validated against
#                  OpenNebula's XSDs vendored in xsd/ (xmlschema)
#   run.sh plugin  the upstream waldur-site-agent-opennebula AGENT_VERSION (default 1.0.7)
#                  completes its VDC and VM lifecycles (plugin_driver.py)
# Prints PASS/FAIL/NOTE lines; exits non-zero on a failure.
#
# Env: SITE_SIM (the site-sim binary; built with cargo when unset), ONE_VENV (default
#      /tmp/waldur-site-sim-one-venv, created with pip when missing).
set -uo pipefail
MODE=${1:?usage: run.sh pyone|xsd|plugin}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
AGENT_VERSION=${AGENT_VERSION:-1.0.7}
VENV=${ONE_VENV:-/tmp/waldur-site-sim-one-venv}
WORK=$(mktemp -d /tmp/site-sim-one-XXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

(
  flock 9
  if ! "$VENV/bin/python" -c "import pyone, xmlschema, waldur_site_agent_opennebula" 2>/dev/null; then
    "${PYTHON:-python3}" -m venv "$VENV" || exit 1
    "$VENV/bin/pip" install -q "pyone==7.3.80" xmlschema "waldur-site-agent==$AGENT_VERSION" \
      "waldur-site-agent-opennebula==$AGENT_VERSION" || exit 1
  fi
) 9>"$VENV.lock" || { echo "FAIL: making the venv $VENV"; exit 1; }
if [ -z "${SITE_SIM:-}" ]; then
  (cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q -p site-sim) || exit 1
  SITE_SIM="$REPO/target/debug/site-sim"
fi

"$SITE_SIM" opennebula --listen 127.0.0.1:0 --demo --vm-step-ms 100 >"$WORK/info.json" 2>"$WORK/sim.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/info.json" ] && break; sleep 0.1; done
[ -s "$WORK/info.json" ] || { echo "FAIL: site-sim did not start"; cat "$WORK/sim.log"; exit 1; }
info() { "$VENV/bin/python" -c "import json,sys;print(json.load(open('$WORK/info.json'))[sys.argv[1]])" "$1"; }
export ONE_URL ONE_CREDENTIALS
ONE_URL=$(info url); ONE_CREDENTIALS=$(info credentials)

run_driver() {
  "$VENV/bin/python" "$HERE/$1" 2>"$WORK/$1.log"
  local rc=$?
  if [ "$rc" != 0 ]; then echo "--- $1 log"; tail -40 "$WORK/$1.log"; fi
  return "$rc"
}

case "$MODE" in
  pyone) run_driver pyone_driver.py ;;
  plugin) run_driver plugin_driver.py ;;
  xsd)
    run_driver pyone_driver.py >"$WORK/pyone.out" || { echo "FAIL: the pyone scenario"; cat "$WORK/pyone.out"; exit 1; }
    if [ -f "$HERE/plugin_driver.py" ]; then
      run_driver plugin_driver.py >"$WORK/plugin.out" || { echo "FAIL: the plugin scenario"; cat "$WORK/plugin.out"; exit 1; }
    fi
    "$VENV/bin/python" - "${ONE_URL%/RPC2}" "$ONE_CREDENTIALS" "$WORK/recorded.json" <<'PY'
import base64, sys, urllib.request
url, cred, out = sys.argv[1:]
req = urllib.request.Request(url + "/__sim/opennebula/recorded",
    headers={"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()})
open(out, "wb").write(urllib.request.urlopen(req).read())
PY
    "$VENV/bin/python" "$HERE/validate_xsd.py" "$WORK/recorded.json" ;;
  *) echo "FAIL: unknown mode $MODE"; exit 2 ;;
esac
