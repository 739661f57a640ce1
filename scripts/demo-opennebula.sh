#!/usr/bin/env bash
# The OpenNebula backend end to end on one machine, no OpenNebula needed:
#   1. start the OpenNebula XML-RPC double (site-sim opennebula --demo) and two waldur-sim
#      (--offering-kind opennebula-vdc and opennebula-vm),
#   2. a consumer orders a VDC (cpu/ram/storage/floating_ip); the agent creates group, VDC,
#      quota, VXLAN network, virtual router and the VDC's user,
#   3. a consumer orders a VM (plan "Small") in that VDC; the agent instantiates it,
#   4. pyone (OpenNebula's own Python binding, in a venv made with pip) lists what was made.
# Usage: bash scripts/demo.sh opennebula
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
VENV=${ONE_VENV:-/tmp/waldur-site-sim-one-venv}

say "building waldur-site-agent, waldur-sim and site-sim"
cargo build -q -p waldur-site-agent -p waldur-sim -p site-sim
BIN=target/debug
if ! "$VENV/bin/python" -c "import pyone" 2>/dev/null; then
  say "making a venv with pyone 7.3.80 (pip)"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "pyone==7.3.80"
fi

WORK=$(mktemp -d /tmp/waldur-opennebula-demo.XXXXXX)
say "starting the OpenNebula double (site-sim opennebula --demo) and two waldur-sim"
"$BIN/site-sim" opennebula --demo --listen 127.0.0.1:0 --vm-step-ms 300 > "$WORK/one.json" 2> "$WORK/one.log" &
ONE_PID=$!
"$BIN/waldur-sim" --demo --offering-kind opennebula-vdc --listen 127.0.0.1:0 > "$WORK/vdc.json" 2> "$WORK/vdc-sim.log" &
VDC_PID=$!
"$BIN/waldur-sim" --demo --offering-kind opennebula-vm --listen 127.0.0.1:0 > "$WORK/vm.json" 2> "$WORK/vm-sim.log" &
VM_PID=$!
cleanup() { [ -n "${DEMO_KEEP:-}" ] || kill "$ONE_PID" "$VDC_PID" "$VM_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$WORK/one.json" ] && [ -s "$WORK/vdc.json" ] && [ -s "$WORK/vm.json" ] && break; sleep 0.1; done
field() { python3 -c "import json,sys; print(json.load(open('$1'))$2)"; }
ONE_URL=$(field "$WORK/one.json" "['url']"); ONE_CRED=$(field "$WORK/one.json" "['credentials']")
echo "OpenNebula double at $ONE_URL"

config() { # $1 demo.json, $2 name, $3 extra backend_settings lines
  cat <<YAML
offerings:
  - name: "$2"
    waldur_api_url: "$(field "$1" "['api_url']")"
    waldur_api_token: "$(field "$1" "['provider_token']")"
    waldur_offering_uuid: "$(field "$1" "['offering_uuid']")"
    backend_type: opennebula
    order_processing_backend: opennebula
    reporting_backend: opennebula
    backend_settings:
      api_url: "$ONE_URL"
      credentials: "\${DEMO_ONE_CREDENTIALS}"
      vm_poll_seconds: 0.5
$3
    backend_components: {}
YAML
}
export DEMO_ONE_CREDENTIALS="$ONE_CRED"
config "$WORK/vdc.json" "OpenNebula VDC" "      create_opennebula_user: true" > "$WORK/vdc.yaml"
"$BIN/waldur-site-agent" validate-config -c "$WORK/vdc.yaml"
export WALDUR_SITE_AGENT_LOG_LEVEL="${WALDUR_SITE_AGENT_LOG_LEVEL:-INFO}"

order() { # $1 demo.json, then limits
  local d=$1; shift
  "$BIN/waldur-sim" order create --api-url "$(field "$d" "['api_url']")" --token "$(field "$d" "['consumer_token']")" \
    --offering "$(field "$d" "['offering_uuid']")" --project "$(field "$d" "['project_uuid']")" \
    --plan "$(field "$d" "['plan_uuid']")" --name "one-demo-$(date +%s)" "$@"
}
state() { "$BIN/waldur-sim" order get --api-url "$(field "$1" "['api_url']")" --token "$(field "$1" "['consumer_token']")" --order "$2" \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['state'])"; }

say "a consumer orders a VDC (cpu=4 ram=8192 storage=20480 floating_ip=2); the agent creates it"
VDC_ORDER=$(order "$WORK/vdc.json" --limit cpu=4 --limit ram=8192 --limit storage=20480 --limit floating_ip=2)
"$BIN/waldur-site-agent" -m order_process -c "$WORK/vdc.yaml" --once
VDC_STATE=$(state "$WORK/vdc.json" "$VDC_ORDER"); say "VDC order $VDC_ORDER is $VDC_STATE"
VDC=$("$VENV/bin/python" - "$ONE_URL" "$ONE_CRED" <<'PY'
import sys, pyone
one = pyone.OneServer(sys.argv[1], session=sys.argv[2])
print([v.NAME for v in one.vdcpool.info().VDC if v.NAME != "default"][0])
PY
)

say "a consumer orders a VM (plan Small: 1 vCPU, 512 MB, 5120 MB disk) in VDC $VDC"
config "$WORK/vm.json" "OpenNebula VM" "      resource_type: vm
      parent_vdc_backend_id: \"$VDC\"" > "$WORK/vm.yaml"
VM_ORDER=$(order "$WORK/vm.json")
"$BIN/waldur-site-agent" -m order_process -c "$WORK/vm.yaml" --once
VM_STATE=$(state "$WORK/vm.json" "$VM_ORDER"); say "VM order $VM_ORDER is $VM_STATE"

say "pyone: what OpenNebula now holds"
"$VENV/bin/python" - "$ONE_URL" "$ONE_CRED" <<'PY'
import sys, pyone
one = pyone.OneServer(sys.argv[1], session=sys.argv[2])
for v in one.vdcpool.info().VDC:
    print(f"VDC   {v.ID:>4} {v.NAME:<28} groups={v.GROUPS.ID} clusters={[c.CLUSTER_ID for c in v.CLUSTERS.CLUSTER]} vnets={[n.VNET_ID for n in v.VNETS.VNET]}")
for g in one.grouppool.info().GROUP:
    if g.ID >= 100:
        q = one.group.info(g.ID)
        vm = q.VM_QUOTA.VM[0] if q.VM_QUOTA.VM else None
        print(f"GROUP {g.ID:>4} {g.NAME:<28} quota cpu={vm.CPU if vm else '-'} ram={vm.MEMORY if vm else '-'} cpu_used={vm.CPU_USED if vm else '-'}")
for n in one.vnpool.info(-2, -1, -1, -1).VNET:
    print(f"VNET  {n.ID:>4} {n.NAME:<28} {n.VN_MAD:<7} {[(a.IP, a.SIZE) for a in n.AR_POOL.AR]}")
for r in one.vrouterpool.info(-2, -1, -1).VROUTER:
    print(f"VR    {r.ID:>4} {r.NAME:<28} vms={r.VMS.ID}")
for s in one.secgrouppool.info(-2, -1, -1).SECURITY_GROUP:
    print(f"SG    {s.ID:>4} {s.NAME}")
for u in one.userpool.info().USER:
    print(f"USER  {u.ID:>4} {u.NAME:<28} group={u.GNAME}")
for m in one.vmpool.info(-2, -1, -1, -1).VM:
    i = one.vm.info(m.ID)
    nic = i.TEMPLATE.get("NIC", {})
    nic = nic[0] if isinstance(nic, list) else nic
    disk = i.TEMPLATE.get("DISK", {})
    print(f"VM    {m.ID:>4} {m.NAME:<28} state={i.STATE}/{i.LCM_STATE} vcpu={i.TEMPLATE.get('VCPU')} mem={i.TEMPLATE.get('MEMORY')} disk={disk.get('SIZE') if isinstance(disk, dict) else '-'} ip={nic.get('IP')} group={i.GNAME}")
PY
[ "$VDC_STATE" = done ] && [ "$VM_STATE" = done ] || { echo "demo failed: VDC order $VDC_STATE, VM order $VM_STATE" >&2; exit 1; }
echo
echo "Done. Logs: $WORK/one.log, $WORK/vdc-sim.log, $WORK/vm-sim.log"
