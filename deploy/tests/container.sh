#!/usr/bin/env bash
# The container image for real: builds deploy/container/Dockerfile with the static binary,
# checks its size (< 30 MB), runs --help, the upstream helper names, validate-config, and an order
# cycle with `docker run --network host --read-only` against waldur-sim --demo --offering-kind okd
# and the Kubernetes double (site-sim kubernetes --demo --tls), ending with the order done.
#
# Env: AGENT_BIN (static binary; default: scripts/build-static.sh), WALDUR_SIM, SITE_SIM (default:
#      cargo build), DOCKER (default /usr/bin/docker), DOCKER_HOST (default: docker-up.sh's socket).
# Without docker: prints SKIP and exits 0, except under CI=true (then it fails).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SERVICES=${WALDUR_SERVICES_DIR:-/tmp/waldur-services}
DOCKER=${DOCKER:-/usr/bin/docker}
export DOCKER_HOST=${DOCKER_HOST:-unix://$SERVICES/docker/docker.sock}
TAG=waldur-site-agent:test-$$
fail() { echo "FAIL: $*"; exit 1; }

if ! [ -x "$DOCKER" ] || ! "$DOCKER" version >/dev/null 2>&1; then
  [ "${CI:-}" = true ] && fail "docker is not reachable at $DOCKER_HOST (bash scripts/services/docker-up.sh)"
  echo "SKIP: container image test: no docker at $DOCKER_HOST (start it with bash scripts/services/docker-up.sh)"
  exit 0
fi

WORK=$(mktemp -d /tmp/waldur-container-test.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  "$DOCKER" rmi -f "$TAG" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
chmod 755 "$WORK"

if [ -z "${WALDUR_SIM:-}" ] || [ -z "${SITE_SIM:-}" ]; then
  (cd "$REPO" && cargo build -q -p waldur-sim -p site-sim) || fail "cargo build"
  WALDUR_SIM=${WALDUR_SIM:-$REPO/target/debug/waldur-sim}; SITE_SIM=${SITE_SIM:-$REPO/target/debug/site-sim}
fi

AGENT_BIN=${AGENT_BIN:-} DOCKER="$DOCKER" bash "$REPO/deploy/container/build.sh" "$TAG" >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log"; fail "image build"; }
SIZE=$("$DOCKER" image inspect -f '{{.Size}}' "$TAG") || fail "inspect"
echo "image $TAG: $SIZE bytes"
[ "$SIZE" -lt 30000000 ] || fail "image is $SIZE bytes, not under 30 MB"
HC=$("$DOCKER" image inspect -f '{{json .Config.Healthcheck.Test}}' "$TAG")
grep -q "waldur_site_healthz" <<<"$HC" || fail "image healthcheck: $HC"
USER_=$("$DOCKER" image inspect -f '{{.Config.User}}' "$TAG")
[ "$USER_" = "1000:1000" ] || fail "image user is '$USER_', not 1000:1000"

run() { "$DOCKER" run --rm --network host --read-only "$@"; }
run "$TAG" >"$WORK/help.out" 2>&1 || { cat "$WORK/help.out"; fail "--help (the default CMD)"; }
grep -q "order_process" "$WORK/help.out" || fail "--help lacks the modes"
run --entrypoint waldur_site_healthz "$TAG" --help >"$WORK/hz.out" 2>&1 || fail "waldur_site_healthz --help"
grep -q -- "--liveness-only" "$WORK/hz.out" || fail "waldur_site_healthz --help lacks --liveness-only"
for name in waldur_site_diagnostics waldur_site_load_components waldur_sync_offering_users; do
  run --entrypoint "$name" "$TAG" --help >/dev/null 2>&1 || fail "$name --help"
done

mkdir -p "$WORK/sa"
"$SITE_SIM" kubernetes --demo --listen 127.0.0.1:0 --tls --sa-token-file "$WORK/sa/token" \
  --ca-file "$WORK/ca.crt" >"$WORK/kube.json" 2>"$WORK/kube.log" &
PIDS+=($!)
"$WALDUR_SIM" --demo --offering-kind okd --listen 127.0.0.1:0 >"$WORK/demo.json" 2>"$WORK/sim.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$WORK/demo.json" ] && [ -s "$WORK/kube.json" ] && break; sleep 0.1; done
[ -s "$WORK/demo.json" ] && [ -s "$WORK/kube.json" ] || { cat "$WORK/sim.log" "$WORK/kube.log"; fail "simulators did not start"; }
chmod -R a+rX "$WORK"
field() { python3 -c "import json,sys; print(json.load(open('$1'))$2)"; }
API=$(field "$WORK/demo.json" "['api_url']"); PROVIDER=$(field "$WORK/demo.json" "['provider_token']")
CONSUMER=$(field "$WORK/demo.json" "['consumer_token']"); OFFERING=$(field "$WORK/demo.json" "['offering_uuid']")
PROJECT=$(field "$WORK/demo.json" "['project_uuid']"); PLAN=$(field "$WORK/demo.json" "['plan_uuid']")
KURL=$(field "$WORK/kube.json" "['url']")

mkdir -p "$WORK/etc"
cat >"$WORK/etc/config.yaml" <<YAML
offerings:
  - name: Container OKD
    waldur_api_url: "${API/127.0.0.1/localhost}"
    waldur_api_token: "\${WALDUR_API_TOKEN}"
    waldur_offering_uuid: "$OFFERING"
    backend_type: okd
    order_processing_backend: okd
    membership_sync_backend: okd
    reporting_backend: okd
    backend_settings:
      api_url: "$KURL"
      verify_cert: /var/run/sim/ca.crt
      namespace_prefix: waldur-
      token_config:
        token_type: service_account
        service_account_path: /var/run/sim/sa
    backend_components:
      cpu: {measured_unit: Core, accounting_type: limit, label: CPU}
      memory: {measured_unit: GB, accounting_type: limit, label: Memory}
      storage: {measured_unit: GB, accounting_type: limit, label: Storage}
      pods: {measured_unit: Count, accounting_type: limit, label: Pods}
YAML
chmod -R a+rX "$WORK"
agent() {
  run -e WALDUR_API_TOKEN="$PROVIDER" -e WALDUR_SITE_AGENT_LOG_LEVEL=INFO \
    -v "$WORK/etc:/etc/waldur-site-agent:ro" -v "$WORK:/var/run/sim:ro" "$TAG" "$@"
}
agent validate-config -c /etc/waldur-site-agent/config.yaml >"$WORK/validate.out" 2>&1 \
  || { cat "$WORK/validate.out"; fail "validate-config in the container"; }
echo "validate-config in the container: ok"

ORDER=$("$WALDUR_SIM" order create --api-url "$API" --token "$CONSUMER" --offering "$OFFERING" \
  --project "$PROJECT" --plan "$PLAN" --name "container-$$" \
  --limit cpu=2 --limit memory=4 --limit storage=10 --limit pods=5) || fail "order create"
agent -m order_process -c /etc/waldur-site-agent/config.yaml --once >"$WORK/agent.out" 2>&1 \
  || { tail -30 "$WORK/agent.out"; fail "order_process --once in the container"; }
grep -q "$PROVIDER" "$WORK/agent.out" && fail "the API token appears in the agent's output"
STATE=$("$WALDUR_SIM" order get --api-url "$API" --token "$CONSUMER" --order "$ORDER" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['state'])")
[ "$STATE" = done ] || { tail -30 "$WORK/agent.out"; fail "order $ORDER is $STATE, not done"; }
echo "order cycle in the container: order $ORDER done"

# Long-running: the agent in the background, its liveness probe (the image's HEALTHCHECK command)
# answering from the heartbeat on the /tmp volume, then a clean stop on SIGTERM.
CID=$("$DOCKER" run -d --network host --read-only -e WALDUR_API_TOKEN="$PROVIDER" \
  -e WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES=0.05 \
  -v "$WORK/etc:/etc/waldur-site-agent:ro" -v "$WORK:/var/run/sim:ro" "$TAG" \
  -m order_process -c /etc/waldur-site-agent/config.yaml --tick-seconds 1) || fail "docker run -d"
live=""
for _ in $(seq 60); do
  if "$DOCKER" exec "$CID" waldur_site_healthz --liveness-only >/dev/null 2>&1; then live=1; break; fi
  sleep 0.5
done
[ -n "$live" ] || { "$DOCKER" logs "$CID" 2>&1 | tail -20; "$DOCKER" rm -f "$CID" >/dev/null; fail "waldur_site_healthz --liveness-only never passed in the running container"; }
"$DOCKER" stop -t 20 "$CID" >/dev/null || fail "docker stop"
CODE=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$CID")
"$DOCKER" rm "$CID" >/dev/null 2>&1
[ "$CODE" = 0 ] || fail "the agent exited $CODE on SIGTERM"
echo "running container: live by waldur_site_healthz, exits 0 on SIGTERM"
echo "PASS: container image ($SIZE bytes)"
