#!/usr/bin/env bash
# deploy/kubernetes (the seed's k3s layout): every manifest valid for kubernetes-validate
# (strict); the ConfigMap's configuration passes `validate-config` with the Secret's variables
# set (and names the missing ones when they are not); `kubectl apply` of every manifest to the
# Kubernetes double (site-sim kubernetes --tls) creates them, a second apply leaves them
# unchanged, and what the double answers back is valid for kubernetes-validate too.
# Env: SITE_SIM, AGENT_BIN (default: cargo build), VENV.
set -uo pipefail
. "$(dirname "$0")/_tools.sh"
need_kube_tools
need_validate
M="$REPO/deploy/kubernetes"
ORDER="namespace secret configmap setup-job deployment cronjob"
WORK=$(mktemp -d /tmp/waldur-manifests-test.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
if [ -z "${SITE_SIM:-}" ] || [ -z "${AGENT_BIN:-}" ] || ! [ -x "${AGENT_BIN:-}" ]; then
  (cd "$REPO" && cargo build -q -p site-sim -p waldur-site-agent) || fail "cargo build"
  SITE_SIM=${SITE_SIM:-$REPO/target/debug/site-sim}
  [ -x "${AGENT_BIN:-}" ] || AGENT_BIN=$REPO/target/debug/waldur-site-agent
fi

for f in $ORDER; do
  "$PY" - "$M/$f.yaml" >"$WORK/v.out" 2>&1 <<'PY' || { cat "$WORK/v.out"; fail "kubernetes-validate $f.yaml"; }
import sys, yaml, kubernetes_validate
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc:
        kubernetes_validate.validate(doc, "1.33", strict=True)
PY
done
echo "kubernetes-validate: $ORDER valid"

# The configuration in the ConfigMap, with and without the Secret's variables.
"$PY" -c "import yaml,sys; print(yaml.safe_load(open('$M/configmap.yaml'))['data']['config.yaml'])" >"$WORK/config.yaml"
env -u WALDUR_API_TOKEN -u OPENSTACK_PASSWORD -u STOMP_PASSWORD "$AGENT_BIN" validate-config -c "$WORK/config.yaml" >"$WORK/novars.out" 2>&1 \
  && fail "validate-config accepted the config without WALDUR_API_TOKEN"
grep -q "WALDUR_API_TOKEN" "$WORK/novars.out" || { cat "$WORK/novars.out"; fail "validate-config does not name the missing WALDUR_API_TOKEN"; }
WALDUR_API_TOKEN=t OPENSTACK_PASSWORD=p STOMP_PASSWORD=s "$AGENT_BIN" validate-config -c "$WORK/config.yaml" >"$WORK/vars.out" 2>&1 \
  || { cat "$WORK/vars.out"; fail "validate-config of the ConfigMap's config with the Secret's variables"; }
echo "validate-config: the ConfigMap's config needs and takes the Secret's variables"

"$SITE_SIM" kubernetes --listen 127.0.0.1:0 --tls --terminating-ms 300 >"$WORK/kube.json" 2>"$WORK/kube.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/kube.json" ] && break; sleep 0.1; done
[ -s "$WORK/kube.json" ] || { cat "$WORK/kube.log"; fail "site-sim did not start"; }
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" "$WORK/kube.json"; }
export KUBECONFIG="$WORK/kubeconfig"
"$KUBECTL" config set-cluster sim --server="$(field url)" --certificate-authority="$(field ca_file)" --embed-certs >/dev/null
"$KUBECTL" config set-credentials sim --token="$(field token)" >/dev/null
"$KUBECTL" config set-context sim --cluster=sim --user=sim >/dev/null
"$KUBECTL" config use-context sim >/dev/null
k() { "$KUBECTL" --request-timeout=20s "$@"; }

declare -A NAME=([namespace]=namespace/waldur-agent [secret]=secret/waldur-agent-secrets
  [configmap]=configmap/waldur-agent-config [setup-job]=job.batch/waldur-load-components
  [deployment]=deployment.apps/waldur-site-agent-openstack [cronjob]=cronjob.batch/waldur-agent-backup-sync)
for f in $ORDER; do
  out=$(k apply -f "$M/$f.yaml" 2>&1)
  [ "$out" = "${NAME[$f]} created" ] || fail "kubectl apply -f $f.yaml: $out"
done
echo "kubectl apply: every manifest created on the double"
for f in $ORDER; do
  out=$(k apply -f "$M/$f.yaml" 2>&1)
  # stringData is never in the live Secret, so kubectl patches it again (as with a real server)
  [ "$out" = "${NAME[$f]} unchanged" ] || { [ "$f" = secret ] && [ "$out" = "${NAME[$f]} configured" ]; } \
    || fail "second kubectl apply -f $f.yaml: $out"
done
echo "kubectl apply again: unchanged (the Secret: configured, its stringData merged again)"

k get -n waldur-agent secret,configmap,job,deployment,cronjob -o json >"$WORK/got.json" 2>"$WORK/err" || { cat "$WORK/err"; fail "kubectl get"; }
k get namespace waldur-agent -o json >"$WORK/ns.json" 2>"$WORK/err" || { cat "$WORK/err"; fail "kubectl get namespace"; }
"$PY" - "$WORK/got.json" "$WORK/ns.json" <<'PY' || fail "objects answered by the double"
import base64, json, sys, kubernetes_validate
items = json.load(open(sys.argv[1]))["items"] + [json.load(open(sys.argv[2]))]
kinds = sorted(i["kind"] for i in items)
assert kinds == ["ConfigMap", "CronJob", "Deployment", "Job", "Namespace", "Secret"], kinds
for i in items:
    kubernetes_validate.validate(i, "1.33", strict=True)
    assert "kubectl.kubernetes.io/last-applied-configuration" in i["metadata"].get("annotations", {}) or i["kind"] == "Namespace", i["metadata"]
by = {i["kind"]: i for i in items}
s = by["Secret"]
assert "stringData" not in s and s["type"] == "Opaque", s
assert base64.b64decode(s["data"]["WALDUR_API_TOKEN"]) == b"your-waldur-token", s["data"]
assert by["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["--mode", "event_process"]
assert by["Deployment"]["spec"]["revisionHistoryLimit"] == 10
assert by["CronJob"]["spec"]["schedule"] == "0 * * * *"
assert "--once" in by["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
assert by["Job"]["spec"]["template"]["spec"]["containers"][0]["args"][0] == "load-components"
print("the double's answers: six objects, valid, as applied")
PY
# the double refuses what a real API server refuses
sed 's/restartPolicy: OnFailure/restartPolicy: Always/' "$M/setup-job.yaml" | sed 's/name: waldur-load-components$/name: bad-job/' >"$WORK/bad-job.yaml"
out=$(k apply -f "$WORK/bad-job.yaml" 2>&1) && fail "a Job with restartPolicy Always was accepted"
grep -q "restartPolicy" <<<"$out" || fail "bad Job refused without naming restartPolicy: $out"
echo "PASS: deploy/kubernetes manifests"
