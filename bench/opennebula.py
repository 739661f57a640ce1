#!/usr/bin/env python3
"""OpenNebula backend vs the upstream plugin (waldur-site-agent-opennebula 1.0.7, PyPI) against
the site-sim OpenNebula double: N VDCs created with limits and networking (VXLAN VNet, virtual
router waited for until RUNNING, security group), then deleted. Counts the XML-RPC calls the
double saw (its /__sim/stats) and wall time. Backend level on both sides (no Waldur): the Python
side calls the plugin's backend class as its processors do, the Rust side
`examples/bench_opennebula.rs`. Both poll VM states every 50 ms here (upstream: 5 s by default).

    cargo build --release -p site-sim -p backend-opennebula --example bench_opennebula
    python3 bench/opennebula.py --n 20    # needs the venv of crates/site-sim/tests/opennebula/run.sh
"""
import argparse, base64, json, os, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=20)
ap.add_argument("--profile", default="release")
ap.add_argument("--venv", default="/tmp/waldur-site-sim-one-venv")
a = ap.parse_args()
target = os.path.join(ROOT, "target", a.profile)

def double():
    out = tempfile.NamedTemporaryFile(delete=False)
    p = subprocess.Popen([f"{target}/site-sim", "opennebula", "--demo", "--listen", "127.0.0.1:0", "--vm-step-ms", "20"],
                         stdout=out, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.getsize(out.name):
            break
        time.sleep(0.1)
    return p, json.load(open(out.name))

def stats(info):
    req = urllib.request.Request(info["url"].rsplit("/RPC2", 1)[0] + "/__sim/stats",
                                 headers={"Authorization": "Basic " + base64.b64encode(info["credentials"].encode()).decode()})
    return json.load(urllib.request.urlopen(req))["total"]

PY = r'''
import os, time, uuid, json
from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
import functools
from waldur_site_agent_opennebula.client import OpenNebulaClient as C
from waldur_site_agent_opennebula.backend import OpenNebulaBackend
# The plugin polls VM states every 5 s; 50 ms here, like the Rust side.
C._wait_for_vm_running = functools.partialmethod(C._wait_for_vm_running, poll_interval=0.05)
C._wait_for_vm_state = functools.partialmethod(C._wait_for_vm_state, poll_interval=0.05)
b = OpenNebulaBackend({"api_url": os.environ["ONE_URL"], "credentials": os.environ["ONE_CREDENTIALS"]},
                      {k: {"measured_unit": "x", "accounting_type": "limit", "unit_factor": 1, "label": k}
                       for k in ["cpu", "ram", "storage", "floating_ip"]})
opts = {"zone_id": 0, "cluster_ids": [0, 100], "external_network_id": 10, "virtual_router_template_id": 8,
        "security_group_defaults": [{"direction": "INBOUND", "protocol": "TCP", "range": "22:22"}]}
lim = {"cpu": 4, "ram": 8192, "storage": 20480, "floating_ip": 2}
rs = []
t = time.time()
for i in range(int(os.environ["ONE_N"])):
    r = Resource(uuid=uuid.uuid4(), name=f"bench {i}", slug=f"py{i}", customer_slug="acme", project_slug="webdev",
                 limits=ResourceLimits.from_dict(lim), offering_plugin_options=opts)
    info = b.create_resource(r, {})
    r.backend_id = info.backend_id
    rs.append(r)
created = time.time() - t
t = time.time()
for r in rs:
    b.delete_resource(r)
print(json.dumps({"create_seconds": created, "delete_seconds": time.time() - t}))
'''

rows = {}
for side in ["rust", "python"]:
    if side == "python" and not os.path.exists(f"{a.venv}/bin/python"):
        print("note: no venv for the upstream plugin; run crates/site-sim/tests/opennebula/run.sh plugin once", file=sys.stderr)
        continue
    p, info = double()
    try:
        env = dict(os.environ, ONE_URL=info["url"], ONE_CREDENTIALS=info["credentials"], ONE_N=str(a.n))
        before = stats(info)
        if side == "rust":
            out = subprocess.run([f"{target}/examples/bench_opennebula"], env=env, capture_output=True, text=True, check=True).stdout
        else:
            out = subprocess.run([f"{a.venv}/bin/python", "-c", PY], env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["requests_total"] = stats(info) - before
        rows[side] = r
    finally:
        p.kill()
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
json.dump({"n": a.n, **rows}, open(os.path.join(ROOT, "bench", "results", "opennebula.json"), "w"), indent=1)
for side, r in rows.items():
    print(f"{side}: create {r['create_seconds']:.2f} s, delete {r['delete_seconds']:.2f} s, "
          f"XML-RPC calls {r['requests_total']} ({r['requests_total'] / a.n:.1f} per VDC)")
