#!/usr/bin/env bash
# The OKD backend end to end on one machine, no cluster needed:
#   1. start the Kubernetes/OpenShift double (site-sim kubernetes --tls, a service account token
#      file) and waldur-sim --demo --offering-kind okd,
#   2. a consumer orders an allocation (cpu/memory/storage/pods) and adds a manager to the project,
#   3. run `waldur-site-agent -m order_process --once` and `-m membership_sync --once`,
#   4. kubectl (scripts/services/kubectl-install.sh) shows the project, its quota and role bindings.
# Usage: bash scripts/demo.sh okd   (OKD_PLAIN=1: plain Kubernetes, namespaces instead of projects)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export WALDUR_SERVICES_DIR="${WALDUR_SERVICES_DIR:-/tmp/waldur-services}"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "building waldur-site-agent, waldur-sim and site-sim"
cargo build -q -p waldur-site-agent -p waldur-sim -p site-sim
BIN=target/debug
KUBECTL=$(bash scripts/services/kubectl-install.sh | tail -1)

WORK=$(mktemp -d /tmp/waldur-okd-demo.XXXXXX)
mkdir -p "$WORK/sa"
say "starting the Kubernetes/OpenShift double (site-sim kubernetes --tls)"
"$BIN/site-sim" kubernetes --demo --listen 127.0.0.1:0 --tls ${OKD_PLAIN:+--no-openshift} \
  --sa-token-file "$WORK/sa/token" --ca-file "$WORK/ca.crt" > "$WORK/kube.json" 2> "$WORK/kube.log" &
KUBE_PID=$!
say "starting waldur-sim --demo --offering-kind okd"
"$BIN/waldur-sim" --demo --offering-kind okd --listen 127.0.0.1:0 > "$WORK/demo.json" 2> "$WORK/sim.log" &
SIM_PID=$!
cleanup() { [ -n "${DEMO_KEEP:-}" ] || kill "$SIM_PID" "$KUBE_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$WORK/demo.json" ] && [ -s "$WORK/kube.json" ] && break; sleep 0.1; done
field() { python3 -c "import json,sys; print(json.load(open('$1'))$2)"; }
API=$(field "$WORK/demo.json" "['api_url']"); PROVIDER=$(field "$WORK/demo.json" "['provider_token']")
CONSUMER=$(field "$WORK/demo.json" "['consumer_token']"); OFFERING=$(field "$WORK/demo.json" "['offering_uuid']")
PROJECT=$(field "$WORK/demo.json" "['project_uuid']"); PLAN=$(field "$WORK/demo.json" "['plan_uuid']")
MANAGER=$(field "$WORK/demo.json" "['users'][2]['uuid']")
KURL=$(field "$WORK/kube.json" "['url']"); KTOKEN=$(field "$WORK/kube.json" "['token']")
echo "Waldur simulator at $API, Kubernetes double at $KURL"

cat > "$WORK/config.yaml" <<YAML
offerings:
  - name: Demo OKD cluster
    waldur_api_url: "$API"
    waldur_api_token: "\${DEMO_PROVIDER_TOKEN}"
    waldur_offering_uuid: "$OFFERING"
    backend_type: okd
    order_processing_backend: okd
    membership_sync_backend: okd
    reporting_backend: okd
    backend_settings:
      api_url: "$KURL"
      verify_cert: "$WORK/ca.crt"
      namespace_prefix: waldur-
      token_config:
        token_type: service_account
        service_account_path: "$WORK/sa"
    backend_components:
      cpu: {measured_unit: Core, accounting_type: limit, label: CPU}
      memory: {measured_unit: GB, accounting_type: limit, label: Memory}
      storage: {measured_unit: GB, accounting_type: limit, label: Storage}
      pods: {measured_unit: Count, accounting_type: limit, label: Pods}
YAML
export DEMO_PROVIDER_TOKEN="$PROVIDER"
"$BIN/waldur-site-agent" validate-config -c "$WORK/config.yaml"

say "a consumer orders an allocation (cpu=4 memory=16 storage=100 pods=50) and adds a project manager"
ORDER=$("$BIN/waldur-sim" order create --api-url "$API" --token "$CONSUMER" \
  --offering "$OFFERING" --project "$PROJECT" --plan "$PLAN" --name "okd-demo-$(date +%s)" \
  --limit cpu=4 --limit memory=16 --limit storage=100 --limit pods=50)
python3 - "$API" "$CONSUMER" "$PROJECT" "$MANAGER" <<'PY'
import json, sys, urllib.request
api, token, project, user = sys.argv[1:]
req = urllib.request.Request(f"{api.rstrip('/')}/projects/{project}/add_user/",
    data=json.dumps({"user": user, "role": "PROJECT.MANAGER"}).encode(),
    headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY

say "running the agent: order_process, then membership_sync (--once each)"
export WALDUR_SITE_AGENT_LOG_LEVEL="${WALDUR_SITE_AGENT_LOG_LEVEL:-INFO}"
"$BIN/waldur-site-agent" -m order_process -c "$WORK/config.yaml" --once
"$BIN/waldur-site-agent" -m membership_sync -c "$WORK/config.yaml" --once

STATE=$("$BIN/waldur-sim" order get --api-url "$API" --token "$CONSUMER" --order "$ORDER" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['state'])")
say "order $ORDER is $STATE"

export KUBECONFIG="$WORK/kubeconfig"
"$KUBECTL" config set-cluster sim --server="$KURL" --certificate-authority="$WORK/ca.crt" --embed-certs >/dev/null
"$KUBECTL" config set-credentials sim --token="$KTOKEN" >/dev/null
"$KUBECTL" config set-context sim --cluster=sim --user=sim >/dev/null
"$KUBECTL" config use-context sim >/dev/null
say "kubectl get namespaces -l app.kubernetes.io/managed-by=waldur-site-agent"
"$KUBECTL" get namespaces -l app.kubernetes.io/managed-by=waldur-site-agent --show-labels
NS=$("$KUBECTL" get namespaces -l app.kubernetes.io/managed-by=waldur-site-agent -o jsonpath='{.items[0].metadata.name}')
[ -z "${OKD_PLAIN:-}" ] && { say "kubectl get projects"; "$KUBECTL" get projects.project.openshift.io "$NS"; }
say "kubectl -n $NS describe resourcequota waldur-quota"
"$KUBECTL" -n "$NS" describe resourcequota waldur-quota
say "kubectl -n $NS get rolebindings -o wide"
"$KUBECTL" -n "$NS" get rolebindings -o wide
[ "$STATE" = done ] || { echo "demo failed: the order is $STATE, not done" >&2; exit 1; }
echo
echo "Done. Logs: $WORK/sim.log, $WORK/kube.log"
