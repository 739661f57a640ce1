#!/usr/bin/env bash
# The Rancher + Keycloak backend end to end on one machine, no cluster needed:
#   1. start `site-sim rancher --demo` (Rancher v3, its cluster behind /k8s/clusters/<id>/ and a
#      Keycloak with the users alice, bob, carol, dave) and waldur-sim --demo --offering-kind rancher,
#   2. a consumer orders an allocation (cpu/memory/storage/gpu) and adds alice to the project,
#   3. run `waldur-site-agent -m order_process --once` and `-m membership_sync --once`,
#   4. show the Rancher project, kubectl (through Rancher's cluster proxy) the namespace and its
#      quota, and the Keycloak group with its member and the group's Rancher binding.
# Usage: bash scripts/demo.sh rancher   (DEMO_KEEP=1 leaves the simulators running)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export WALDUR_SERVICES_DIR="${WALDUR_SERVICES_DIR:-/tmp/waldur-services}"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "building waldur-site-agent, waldur-sim and site-sim"
cargo build -q -p waldur-site-agent -p waldur-sim -p site-sim
BIN=target/debug
KUBECTL=$(bash scripts/services/kubectl-install.sh | tail -1 || true)

WORK=$(mktemp -d /tmp/waldur-rancher-demo.XXXXXX)
say "starting site-sim rancher --demo --tls (Rancher, Kubernetes and Keycloak doubles)"
"$BIN/site-sim" rancher --demo --tls --ca-file "$WORK/ca.crt" --listen 127.0.0.1:0 > "$WORK/rancher.json" 2> "$WORK/rancher.log" &
SITE_PID=$!
say "starting waldur-sim --demo --offering-kind rancher"
"$BIN/waldur-sim" --demo --offering-kind rancher --listen 127.0.0.1:0 > "$WORK/demo.json" 2> "$WORK/sim.log" &
SIM_PID=$!
cleanup() { [ -n "${DEMO_KEEP:-}" ] || kill "$SIM_PID" "$SITE_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$WORK/demo.json" ] && [ -s "$WORK/rancher.json" ] && break; sleep 0.1; done
field() { python3 -c "import json,sys; print(json.load(open('$1'))$2)"; }
API=$(field "$WORK/demo.json" "['api_url']"); PROVIDER=$(field "$WORK/demo.json" "['provider_token']")
CONSUMER=$(field "$WORK/demo.json" "['consumer_token']"); OFFERING=$(field "$WORK/demo.json" "['offering_uuid']")
PROJECT=$(field "$WORK/demo.json" "['project_uuid']"); PLAN=$(field "$WORK/demo.json" "['plan_uuid']")
ALICE=$(field "$WORK/demo.json" "['users'][0]['uuid']")
RURL=$(field "$WORK/rancher.json" "['url']"); CLUSTER=$(field "$WORK/rancher.json" "['cluster_id']")
AKEY=$(field "$WORK/rancher.json" "['access_key']"); SKEY=$(field "$WORK/rancher.json" "['secret_key']")
KCURL=$(field "$WORK/rancher.json" "['keycloak_url']"); KCUSER=$(field "$WORK/rancher.json" "['keycloak_username']")
KCPASS=$(field "$WORK/rancher.json" "['keycloak_password']")
echo "Waldur simulator at $API, Rancher double at $RURL (cluster $CLUSTER), Keycloak double at $KCURL"

cat > "$WORK/config.yaml" <<YAML
offerings:
  - name: Demo Rancher cluster
    waldur_api_url: "$API"
    waldur_api_token: "\${DEMO_PROVIDER_TOKEN}"
    waldur_offering_uuid: "$OFFERING"
    backend_type: rancher
    order_processing_backend: rancher
    membership_sync_backend: rancher
    reporting_backend: rancher
    backend_settings:
      backend_url: "$RURL"
      verify_cert: "$WORK/ca.crt"
      username: "$AKEY"
      password: "\${DEMO_RANCHER_SECRET}"
      cluster_id: "$CLUSTER"
      project_prefix: waldur-
      default_role: workloads-manage
      namespace_labels: {gpu-pool: h100-2x}
      keycloak_enabled: true
      keycloak_use_user_id: false
      keycloak:
        keycloak_url: "$KCURL"
        keycloak_realm: waldur
        keycloak_user_realm: master
        keycloak_username: "$KCUSER"
        keycloak_password: "\${DEMO_KEYCLOAK_PASSWORD}"
    backend_components:
      cpu: {type: cpu, measured_unit: cores, accounting_type: limit, label: CPU}
      memory: {type: ram, measured_unit: GB, accounting_type: limit, label: Memory}
      storage: {type: storage, measured_unit: GB, accounting_type: limit, label: Storage}
      gpu: {type: gpu, measured_unit: units, accounting_type: limit, label: GPU}
YAML
export DEMO_PROVIDER_TOKEN="$PROVIDER" DEMO_RANCHER_SECRET="$SKEY" DEMO_KEYCLOAK_PASSWORD="$KCPASS"
"$BIN/waldur-site-agent" validate-config -c "$WORK/config.yaml"

say "a consumer orders an allocation (cpu=4 memory=16 storage=100 gpu=1) and adds alice to the project"
ORDER=$("$BIN/waldur-sim" order create --api-url "$API" --token "$CONSUMER" \
  --offering "$OFFERING" --project "$PROJECT" --plan "$PLAN" --name "rancher-demo-$(date +%s)" \
  --limit cpu=4 --limit memory=16 --limit storage=100 --limit gpu=1)
python3 - "$API" "$CONSUMER" "$PROJECT" "$ALICE" <<'PY'
import json, sys, urllib.request
api, token, project, user = sys.argv[1:]
req = urllib.request.Request(f"{api.rstrip('/')}/projects/{project}/add_user/",
    data=json.dumps({"user": user, "role": "PROJECT.MEMBER"}).encode(),
    headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY

say "running the agent: diagnostics, order_process, then membership_sync (--once each)"
export WALDUR_SITE_AGENT_LOG_LEVEL="${WALDUR_SITE_AGENT_LOG_LEVEL:-INFO}"
"$BIN/waldur-site-agent" diagnostics -c "$WORK/config.yaml" || true
"$BIN/waldur-site-agent" -m order_process -c "$WORK/config.yaml" --once
"$BIN/waldur-site-agent" -m membership_sync -c "$WORK/config.yaml" --once

STATE=$("$BIN/waldur-sim" order get --api-url "$API" --token "$CONSUMER" --order "$ORDER" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['state'])")
say "order $ORDER is $STATE"

say "Rancher: GET /v3/projects?clusterId=$CLUSTER and the project role template bindings"
python3 - "$RURL" "$AKEY" "$SKEY" "$CLUSTER" "$WORK/ca.crt" <<'PY'
import base64, json, ssl, sys, urllib.request
url, ak, sk, cluster, ca = sys.argv[1:]
auth = "Basic " + base64.b64encode(f"{ak}:{sk}".encode()).decode()
ctx = ssl.create_default_context(cafile=ca)
get = lambda p: json.load(urllib.request.urlopen(urllib.request.Request(url + p, headers={"Authorization": auth}), context=ctx))
for p in get(f"/v3/projects?clusterId={cluster}")["data"]:
    print(f"project {p['id']}  {p['name']}  {p['description']}  {json.dumps(p['annotations'])}")
for b in get("/v3/projectroletemplatebindings")["data"]:
    print(f"binding {b['id']}  {b['projectId']}  {b['roleTemplateId']}  {b['groupPrincipalId']}")
PY

if [ -n "$KUBECTL" ] && [ -x "$KUBECTL" ]; then
  export KUBECONFIG="$WORK/kubeconfig"
  "$KUBECTL" config set-cluster rancher --server="$RURL/k8s/clusters/$CLUSTER" --certificate-authority="$WORK/ca.crt" --embed-certs >/dev/null
  "$KUBECTL" config set-credentials rancher --token="$AKEY:$SKEY" >/dev/null
  "$KUBECTL" config set-context rancher --cluster=rancher --user=rancher >/dev/null
  "$KUBECTL" config use-context rancher >/dev/null
  say "kubectl (through Rancher's cluster proxy) get namespaces --show-labels"
  "$KUBECTL" get namespaces --show-labels
  NS=$("$KUBECTL" get namespaces -l field.cattle.io/projectId -o jsonpath='{.items[0].metadata.name}')
  say "kubectl -n $NS describe resourcequota custom-resource-quota"
  "$KUBECTL" -n "$NS" describe resourcequota custom-resource-quota
else
  echo "(kubectl not installed: scripts/services/kubectl-install.sh)"
fi

say "Keycloak: the groups of realm waldur and their members"
python3 - "$KCURL" "$KCUSER" "$KCPASS" <<'PY'
import json, sys, urllib.parse, urllib.request
url, user, password = sys.argv[1:]
form = urllib.parse.urlencode({"grant_type": "password", "client_id": "admin-cli", "username": user, "password": password}).encode()
token = json.load(urllib.request.urlopen(url + "/realms/master/protocol/openid-connect/token", form))["access_token"]
get = lambda p: json.load(urllib.request.urlopen(urllib.request.Request(url + "/admin/realms/waldur" + p, headers={"Authorization": "Bearer " + token})))
def walk(groups):
    for g in groups:
        members = [m["username"] for m in get(f"/groups/{g['id']}/members")]
        print(f"group {g['path']}  members: {members}")
        walk(get(f"/groups/{g['id']}/children?max=100"))
walk(get("/groups"))
PY
[ "$STATE" = done ] || { echo "demo failed: the order is $STATE, not done" >&2; exit 1; }
echo
echo "Done. Logs: $WORK/sim.log, $WORK/rancher.log"
