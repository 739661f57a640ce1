#!/usr/bin/env bash
# The agent's main job, end to end, on one machine:
#   1. start real SLURM (as root on Debian; installed on first run) and waldur-sim --demo,
#   2. place a Create order as a consumer would (through Waldur's REST API),
#   3. run `waldur-site-agent -m order_process --once`,
#   4. show the order done and the SLURM account the agent created, with its limits.
# Usage: bash scripts/demo.sh     (DEMO_KEEP=1 leaves waldur-sim running afterwards)
#        bash scripts/demo.sh moab   (the same against the site-sim MAM double: no root needed;
#                                     shows the account and its fund with mam-list-*)
#        bash scripts/demo.sh okd (the OKD backend against the Kubernetes double: scripts/demo-okd.sh)
#        bash scripts/demo.sh rancher (Rancher + Keycloak against site-sim rancher: scripts/demo-rancher.sh)
#        bash scripts/demo.sh opennebula (VDC and VM against the OpenNebula double: scripts/demo-opennebula.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = okd ]; then exec bash scripts/demo-okd.sh; fi
if [ "${1:-}" = rancher ]; then exec bash scripts/demo-rancher.sh; fi
if [ "${1:-}" = opennebula ]; then exec bash scripts/demo-opennebula.sh; fi
export WALDUR_SERVICES_DIR="${WALDUR_SERVICES_DIR:-/tmp/waldur-services}"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs) and re-run" >&2; exit 1
fi
if [ "${1:-slurm}" = moab ]; then
  say "building waldur-site-agent, waldur-sim and site-sim"
  cargo build -q -p waldur-site-agent -p waldur-sim -p site-sim
  BIN=target/debug
  WORK=$(mktemp -d /tmp/waldur-demo-moab.XXXXXX)
  say "starting waldur-sim --demo --offering-kind moab and the MAM double (site-sim moab)"
  "$BIN/waldur-sim" --demo --offering-kind moab --listen 127.0.0.1:0 > "$WORK/demo.json" 2> "$WORK/sim.log" &
  SIM_PID=$!
  trap '[ -n "${DEMO_KEEP:-}" ] || kill "$SIM_PID" 2>/dev/null || true' EXIT
  "$BIN/site-sim" moab --demo --state "$WORK/mam" --no-wait > "$WORK/mam.json"
  MAM_PATH=$(python3 -c "import json; print(json.load(open('$WORK/mam.json'))['path'])")
  export PATH="$MAM_PATH:$PATH"
  for _ in $(seq 100); do [ -s "$WORK/demo.json" ] && break; sleep 0.1; done
  demo() { python3 -c "import json,sys; print(json.load(open('$WORK/demo.json'))['$1'])"; }
  API=$(demo api_url); CONSUMER=$(demo consumer_token)
  OFFERING=$(demo offering_uuid); PROJECT=$(demo project_uuid); PLAN=$(demo plan_uuid)
  export DEMO_PROVIDER_TOKEN=$(demo provider_token)
  cat > "$WORK/config.yaml" <<YAML
offerings:
  - name: Demo MOAB cluster
    waldur_api_url: "$API"
    waldur_api_token: "\${DEMO_PROVIDER_TOKEN}"
    waldur_offering_uuid: "$OFFERING"
    backend_type: moab
    order_processing_backend: moab
    membership_sync_backend: moab
    reporting_backend: moab
    backend_settings: {project_prefix: "demo_p_", allocation_prefix: "demo_a_"}
    backend_components:
      deposit: {measured_unit: credits, unit_factor: 1, accounting_type: limit, label: Deposit}
YAML
  "$BIN/waldur-site-agent" validate-config -c "$WORK/config.yaml"
  say "a consumer orders an allocation (deposit=1000 credits)"
  ORDER=$("$BIN/waldur-sim" order create --api-url "$API" --token "$CONSUMER" \
    --offering "$OFFERING" --project "$PROJECT" --plan "$PLAN" --name "demo moab $(date +%s)" \
    --limit deposit=1000)
  say "running the agent: waldur-site-agent -m order_process --once"
  WALDUR_SITE_AGENT_LOG_LEVEL="${WALDUR_SITE_AGENT_LOG_LEVEL:-INFO}" \
    "$BIN/waldur-site-agent" -m order_process -c "$WORK/config.yaml" --once
  STATE=$("$BIN/waldur-sim" order get --api-url "$API" --token "$CONSUMER" --order "$ORDER" \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['state'])")
  say "order $ORDER is $STATE"
  say "the accounts in MAM (mam-list-accounts --show Name,Description,Organization)"
  mam-list-accounts --show Name,Description,Organization
  say "the funds (mam-list-funds --show Id,Constraints,Allocated,Balance)"
  mam-list-funds --show Id,Constraints,Allocated,Balance
  [ "$STATE" = done ] || { echo "demo failed: the order is $STATE, not done" >&2; exit 1; }
  echo; echo "Done. MAM state: $WORK/mam/state.json; simulator log: $WORK/sim.log"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<'MSG'
The demo runs the agent against a real SLURM cluster, which scripts/services/slurm-up.sh installs
and starts on 127.0.0.1. That needs root on Debian (apt-get, slurmctld, slurmdbd, MariaDB, munge).
Run it as root on a Debian machine, or start SLURM yourself and set SKIP_SLURM_SETUP=1.
MSG
  [ -n "${SKIP_SLURM_SETUP:-}" ] || exit 2
fi

say "building waldur-site-agent and waldur-sim"
cargo build -q -p waldur-site-agent -p waldur-sim
BIN=target/debug

if [ -z "${SKIP_SLURM_SETUP:-}" ]; then
  say "starting SLURM (slurmctld + slurmdbd + MariaDB) on 127.0.0.1"
  bash scripts/services/slurm-up.sh
fi
# shellcheck disable=SC1091
[ -f "$WALDUR_SERVICES_DIR/slurm/env.sh" ] && . "$WALDUR_SERVICES_DIR/slurm/env.sh"

WORK=$(mktemp -d /tmp/waldur-demo.XXXXXX)
say "starting waldur-sim --demo"
"$BIN/waldur-sim" --demo --listen 127.0.0.1:0 > "$WORK/demo.json" 2> "$WORK/sim.log" &
SIM_PID=$!
cleanup() { [ -n "${DEMO_KEEP:-}" ] || kill "$SIM_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$WORK/demo.json" ] && break; sleep 0.1; done
demo() { python3 -c "import json,sys; print(json.load(open('$WORK/demo.json'))['$1'])"; }
API=$(demo api_url); PROVIDER=$(demo provider_token); CONSUMER=$(demo consumer_token)
OFFERING=$(demo offering_uuid); PROJECT=$(demo project_uuid); PLAN=$(demo plan_uuid)
echo "Waldur simulator at $API (offering $OFFERING)"

cat > "$WORK/config.yaml" <<YAML
offerings:
  - name: Demo SLURM cluster
    waldur_api_url: "$API"
    waldur_api_token: "\${DEMO_PROVIDER_TOKEN}"
    waldur_offering_uuid: "$OFFERING"
    backend_type: slurm
    order_processing_backend: slurm
    membership_sync_backend: slurm
    reporting_backend: slurm
    backend_settings:
      default_account: root
      customer_prefix: "demo_c_"
      project_prefix: "demo_p_"
      allocation_prefix: "demo_a_"
      qos_downscaled: limited
      qos_paused: paused
      qos_default: normal
      enable_user_homedir_account_creation: false
    backend_components:
      cpu:
        limit: 10
        measured_unit: k-Hours
        unit_factor: 60000
        accounting_type: usage
        label: CPU
      mem:
        limit: 10
        measured_unit: gb-Hours
        unit_factor: 61440
        accounting_type: usage
        label: RAM
      gpu:
        measured_unit: gpu-Hours
        accounting_type: limit
        label: GPU
        target_components:
          gres/gpu: {factor: 60}
YAML
export DEMO_PROVIDER_TOKEN="$PROVIDER"
echo "agent config: $WORK/config.yaml (token read from \$DEMO_PROVIDER_TOKEN)"
"$BIN/waldur-site-agent" validate-config -c "$WORK/config.yaml"

say "a consumer orders an allocation (gpu=20 gpu-Hours; cpu and mem are usage components capped at their configured limit of 10)"
ORDER=$("$BIN/waldur-sim" order create --api-url "$API" --token "$CONSUMER" \
  --offering "$OFFERING" --project "$PROJECT" --plan "$PLAN" --name "demo-$(date +%s)" \
  --limit gpu=20)
state() { "$BIN/waldur-sim" order get --api-url "$API" --token "$CONSUMER" --order "$ORDER" \
  | python3 -c "import json,sys; o=json.load(sys.stdin); print(o['state'], o.get('marketplace_resource_uuid') or o.get('resource_uuid') or '')"; }
echo "order $ORDER is $(state | cut -d' ' -f1)"

say "running the agent: waldur-site-agent -m order_process --once"
WALDUR_SITE_AGENT_LOG_LEVEL="${WALDUR_SITE_AGENT_LOG_LEVEL:-INFO}" \
  "$BIN/waldur-site-agent" -m order_process -c "$WORK/config.yaml" --once

read -r STATE RESOURCE < <(state)
say "order $ORDER is $STATE"
BACKEND_ID=$("$BIN/waldur-sim" resource get --api-url "$API" --token "$CONSUMER" --resource "$RESOURCE" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['backend_id'])")
echo "resource $RESOURCE has backend_id '$BACKEND_ID'"
say "the account in SLURM (sacctmgr show assoc account=$BACKEND_ID)"
sacctmgr --parsable2 show assoc "account=$BACKEND_ID" format=cluster,account,parentname,user,grptresmins,qos
[ "$STATE" = done ] || { echo "demo failed: the order is $STATE, not done" >&2; exit 1; }
echo
echo "Done. Logs of the simulator: $WORK/sim.log"
