#!/usr/bin/env bash
# Schema check: every object the Kubernetes double returns during a scenario (the upstream OKD
# plugin's lifecycle, then extra.py: leases, role bindings, pagination, discovery, errors) is
# validated with kubernetes-validate (PyPI, strict schemas, Kubernetes 1.33).
#
# Env: SITE_SIM (the site-sim binary; built with cargo when unset), VENV (default
#      /tmp/waldur-site-sim-venv, created with pip when missing).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
AGENT_VERSION=${AGENT_VERSION:-1.0.7}
VENV=${VENV:-/tmp/waldur-site-sim-venv}
WORK=$(mktemp -d /tmp/site-sim-schema-XXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# One venv for both Python checks; the lock keeps two checks running at once from both making it.
(
  flock 9
  if ! "$VENV/bin/python" -c "import waldur_site_agent_okd, kubernetes_validate" 2>/dev/null; then
    "${PYTHON:-python3}" -m venv "$VENV" || exit 1
    "$VENV/bin/pip" install -q "waldur-site-agent==$AGENT_VERSION" "waldur-site-agent-okd==$AGENT_VERSION" kubernetes-validate || exit 1
  fi
) 9>"$VENV.lock" || { echo "FAIL: making the venv $VENV"; exit 1; }
if [ -z "${SITE_SIM:-}" ]; then
  (cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q -p site-sim) || exit 1
  SITE_SIM="$REPO/target/debug/site-sim"
fi
"$SITE_SIM" kubernetes --listen 127.0.0.1:0 --tls --demo --sa-token-file "$WORK/token" \
  --terminating-ms 300 >"$WORK/info.json" 2>"$WORK/sim.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/info.json" ] && break; sleep 0.1; done
[ -s "$WORK/info.json" ] || { echo "FAIL: site-sim did not start"; cat "$WORK/sim.log"; exit 1; }
info() { "$VENV/bin/python" -c "import json,sys;print(json.load(open('$WORK/info.json'))[sys.argv[1]])" "$1"; }
export OKD_URL OKD_CA OKD_ADMIN_TOKEN OKD_SA_TOKEN_FILE="$WORK/token"
OKD_URL=$(info url); OKD_CA=$(info ca_file); OKD_ADMIN_TOKEN=$(info token)

"$VENV/bin/python" "$REPO/crates/site-sim/tests/okd-plugin/driver.py" >"$WORK/driver.out" 2>"$WORK/driver.log" \
  || { echo "FAIL: the plugin scenario failed"; cat "$WORK/driver.out"; exit 1; }
"$VENV/bin/python" "$HERE/extra.py" 2>"$WORK/extra.log" || { echo "FAIL: extra scenario"; tail -20 "$WORK/extra.log"; exit 1; }
"$VENV/bin/python" - "$OKD_URL" "$OKD_CA" "$OKD_ADMIN_TOKEN" "$WORK/recorded.json" <<'PY'
import sys, httpx
url, ca, token, out = sys.argv[1:]
r = httpx.get(url + "/__sim/kubernetes/recorded", verify=ca, headers={"Authorization": "Bearer " + token})
r.raise_for_status()
open(out, "w").write(r.text)
PY
"$VENV/bin/python" "$HERE/validate.py" "$WORK/recorded.json"
