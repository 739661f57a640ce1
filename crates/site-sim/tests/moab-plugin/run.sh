#!/usr/bin/env bash
# Fidelity check: the upstream MOAB plugin from PyPI (waldur-site-agent-moab + waldur-site-agent,
# AGENT_VERSION, default 1.0.7) completes its lifecycle against the site-sim MAM double: ping,
# create (project and allocation account, fund), deposit, add user, usage, remove user,
# terminate. Prints PASS/FAIL/NOTE lines; exits non-zero on a failure.
#
# Env: SITE_SIM (the site-sim binary; built with cargo when unset), VENV (default
#      /tmp/waldur-site-sim-venv; the plugin is pip-installed into it when missing).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
AGENT_VERSION=${AGENT_VERSION:-1.0.7}
VENV=${VENV:-/tmp/waldur-site-sim-venv}
WORK=$(mktemp -d /tmp/site-sim-moab-XXXX)
trap 'rm -rf "$WORK"' EXIT

(
  flock 9
  if ! "$VENV/bin/python" -c "import waldur_site_agent_moab" 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV" || exit 1
    "$VENV/bin/pip" install -q "waldur-site-agent==$AGENT_VERSION" "waldur-site-agent-moab==$AGENT_VERSION" || exit 1
  fi
) 9>"$VENV.lock" || { echo "FAIL: making the venv $VENV"; exit 1; }
if [ -z "${SITE_SIM:-}" ]; then
  (cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q -p site-sim) || exit 1
  SITE_SIM="$REPO/target/debug/site-sim"
fi
"$SITE_SIM" moab --state "$WORK/mam" --demo --no-wait >"$WORK/info.json" || { echo "FAIL: site-sim moab"; exit 1; }
BIN=$("$VENV/bin/python" -c "import json,sys;print(json.load(open(sys.argv[1]))['path'])" "$WORK/info.json")
PATH="$BIN:$PATH" MOAB_STATE="$WORK/mam" "$VENV/bin/python" "$HERE/driver.py" 2>"$WORK/driver.log"
rc=$?
if [ "$rc" != 0 ]; then echo "--- plugin log"; tail -40 "$WORK/driver.log"; fi
exit "$rc"
