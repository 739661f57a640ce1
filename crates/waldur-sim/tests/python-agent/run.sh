#!/usr/bin/env bash
# Fidelity proof: the Python waldur-site-agent from PyPI (whose generated SDK rejects incomplete
# objects) runs against `waldur-sim --demo` and a real SLURM, and must complete the whole order
# lifecycle and report usage.
#
# Usage: run.sh [VERSION ...]   e.g. `run.sh` (1.0.7), `run.sh 1.0.8rc12`, `run.sh 1.0.7 1.0.8rc12`.
# Each version gets its own venv (with its matching waldur-site-agent-slurm), its own simulator
# and work directory, and runs the same scenarios in turn; 1.0.7 keeps its venv at the old path.
# Scenarios (each prints PASS/FAIL per version): create, update (limits), report (usage),
# terminate.
# Env: AGENT_VERSION (the default version when no argument is given: 1.0.7), VENV (only with a
#      single version; default /tmp/waldur-python-agent/venv for 1.0.7, venv-VERSION otherwise),
#      SIM_PORT (18181), ORDER_TIMEOUT seconds per order (default 150).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
if [ "$#" -eq 0 ]; then set -- "${AGENT_VERSION:-1.0.7}"; fi
VERSIONS=("$@")
SIM_PORT=${SIM_PORT:-18181}
ORDER_TIMEOUT=${ORDER_TIMEOUT:-150}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

fail=0
total_fail=0
pass() { echo "PASS [$AGENT_VERSION]: $*"; }
failed() { echo "FAIL [$AGENT_VERSION]: $*"; fail=$((fail + 1)); }

venv_for() {
  if [ "${#VERSIONS[@]}" -eq 1 ] && [ -n "${VENV:-}" ]; then echo "$VENV"
  elif [ "$1" = 1.0.7 ]; then echo /tmp/waldur-python-agent/venv
  else echo "/tmp/waldur-python-agent/venv-$1"; fi
}

run_version() {
AGENT_VERSION=$1
VENV_DIR=$(venv_for "$AGENT_VERSION")
WORK=$(mktemp -d /tmp/waldur-pyagent-XXXX)
fail=0
echo "=== Python agent $AGENT_VERSION (venv $VENV_DIR, logs $WORK)"

# 1. The Python agent, pinned.
installed=$("$VENV_DIR/bin/python" -c 'import importlib.metadata as m;print(m.version("waldur-site-agent"))' 2>/dev/null)
if [ "$installed" != "$AGENT_VERSION" ]; then
  "${PYTHON:-python3}" -m venv "$VENV_DIR" || return 1
  "$VENV_DIR/bin/pip" install -q "waldur-site-agent==$AGENT_VERSION" "waldur-site-agent-slurm==$AGENT_VERSION" || return 1
fi
PY="$VENV_DIR/bin/python"

# 2. Real SLURM.
bash "$REPO/scripts/services/slurm-up.sh" || return 1
# shellcheck disable=SC1091
source /tmp/waldur-services/slurm/env.sh

# 3. The simulator.
(cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q -p waldur-sim) || return 1
SIM="$REPO/target/debug/waldur-sim"
"$SIM" --demo --listen "127.0.0.1:$SIM_PORT" >"$WORK/demo.json" 2>"$WORK/sim.log" &
SIM_PID=$!
PIDS+=("$SIM_PID")
for _ in $(seq 50); do [ -s "$WORK/demo.json" ] && break; sleep 0.1; done
demo() { "$PY" -c "import json,sys;d=json.load(open('$WORK/demo.json'));print(eval(sys.argv[1]))" "$1"; }
API=$(demo "d['api_url']"); PTOK=$(demo "d['provider_token']"); CTOK=$(demo "d['consumer_token']")
OFF=$(demo "d['offering_uuid']"); PROJ=$(demo "d['project_uuid']"); PLAN=$(demo "d['plan_uuid']")
ALICE=$(demo "d['users'][0]['uuid']")
STAFF=$(demo "d['staff_token']")

cat >"$WORK/config.yaml" <<EOF
sentry_dsn: ""
timezone: "UTC"
offerings:
  - name: "Demo SLURM cluster"
    waldur_api_url: "$API"
    waldur_api_token: "$PTOK"
    verify_ssl: false
    waldur_offering_uuid: "$OFF"
    username_management_backend: "base"
    order_processing_backend: "slurm"
    membership_sync_backend: "slurm"
    reporting_backend: "slurm"
    resource_import_enabled: false
    stomp_enabled: false
    backend_type: "slurm"
    backend_settings:
      default_account: "root"
      customer_prefix: "hpc_"
      project_prefix: "hpc_"
      allocation_prefix: "hpc_"
      qos_downscaled: "normal"
      qos_paused: "normal"
      qos_default: "normal"
      enable_user_homedir_account_creation: false
      homedir_umask: "0700"
    backend_components:
      cpu:
        limit: 10
        measured_unit: "k-Hours"
        unit_factor: 60000
        accounting_type: "usage"
        label: "CPU"
      mem:
        limit: 10
        measured_unit: "gb-Hours"
        unit_factor: 61440
        accounting_type: "usage"
        label: "RAM"
EOF

wsim() { "$SIM" "$@" --api-url "$API"; }
order_state() { wsim order get --token "$PTOK" --order "$1" | "$PY" -c 'import json,sys;print(json.load(sys.stdin)["state"])'; }

# Runs one agent mode until the order reaches done/erred (or the timeout), then stops it.
run_until_done() {
  local mode=$1 order=$2 log=$3 state=""
  WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES=1 "$VENV_DIR/bin/waldur_site_agent" -m "$mode" -c "$WORK/config.yaml" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq "$ORDER_TIMEOUT"); do
    state=$(order_state "$order")
    case "$state" in done|erred) break ;; esac
    sleep 1
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  echo "$state"
}

# Alice joins the project first, so the offering user exists when the account is created.
wsim project add-user --token "$CTOK" --project "$PROJ" --user "$ALICE" --role PROJECT.MEMBER || failed "add_user"

# Scenario: create.
ORDER=$(wsim order create --token "$CTOK" --offering "$OFF" --project "$PROJ" --plan "$PLAN" --name "Python agent allocation" --limit cpu=10 --limit mem=10)
STATE=$(run_until_done order_process "$ORDER" "$WORK/agent-create.log")
RES=$(wsim order get --token "$PTOK" --order "$ORDER" | "$PY" -c 'import json,sys;print(json.load(sys.stdin)["marketplace_resource_uuid"])')
BACKEND_ID=$(wsim resource get --token "$CTOK" --resource "$RES" | "$PY" -c 'import json,sys;print(json.load(sys.stdin)["backend_id"])')
if [ "$STATE" = done ] && [ -n "$BACKEND_ID" ] && sacctmgr -nP show account "$BACKEND_ID" format=account | grep -qx "$BACKEND_ID"; then
  pass "create: order done, account $BACKEND_ID in sacctmgr"
else
  failed "create: order state=$STATE backend_id=$BACKEND_ID"; tail -30 "$WORK/agent-create.log"
fi

# Scenario: update limits.
ORDER=$(wsim resource update-limits --token "$CTOK" --resource "$RES" --limit cpu=20 --limit mem=30)
STATE=$(run_until_done order_process "$ORDER" "$WORK/agent-update.log")
TRES=$(sacctmgr -nP show assoc where account="$BACKEND_ID" format=grptresmins | head -1)
if [ "$STATE" = done ] && echo "$TRES" | grep -q "cpu=1200000"; then
  pass "update: order done, GrpTRESMins=$TRES"
else
  failed "update: order state=$STATE GrpTRESMins=$TRES"; tail -30 "$WORK/agent-update.log"
fi

# Scenario: report (usage posted for the current month).
"$VENV_DIR/bin/waldur_site_agent" -m report -c "$WORK/config.yaml" >"$WORK/agent-report.log" 2>&1 &
RPID=$!
USAGES=0
for _ in $(seq 90); do
  USAGES=$(curl -s -H "Authorization: Token $STAFF" "${API}marketplace-component-usages/?resource_uuid=$RES" | "$PY" -c 'import json,sys;print(len(json.load(sys.stdin)))')
  [ "$USAGES" -gt 0 ] && break
  sleep 1
done
kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null
if [ "$USAGES" -gt 0 ]; then pass "report: $USAGES component usage record(s) posted"; else failed "report: no usage"; tail -30 "$WORK/agent-report.log"; fi

# Scenario: terminate.
ORDER=$(wsim resource terminate --token "$CTOK" --resource "$RES")
STATE=$(run_until_done order_process "$ORDER" "$WORK/agent-terminate.log")
if [ "$STATE" = done ] && ! sacctmgr -nP show account "$BACKEND_ID" format=account | grep -qx "$BACKEND_ID"; then
  pass "terminate: order done, account removed"
else
  failed "terminate: order state=$STATE"; tail -30 "$WORK/agent-terminate.log"
fi

echo "API calls made by the Python agent:"
curl -s -H "Authorization: Token $STAFF" "http://127.0.0.1:$SIM_PORT/__sim/stats" | "$PY" -c 'import json,sys;d=json.load(sys.stdin);print(d["total"]);[print("  %5d %s" % (v["count"], k)) for k,v in d["routes"].items()]'
echo "logs in $WORK"
echo "[$AGENT_VERSION] $((4 - fail)) passed, $fail failed"
kill "$SIM_PID" 2>/dev/null; wait "$SIM_PID" 2>/dev/null
total_fail=$((total_fail + fail))
}

for v in "${VERSIONS[@]}"; do
  run_version "$v" || { echo "FAIL [$v]: setup"; total_fail=$((total_fail + 1)); }
done
[ "$total_fail" -eq 0 ]
