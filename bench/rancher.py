#!/usr/bin/env python3
"""Rancher backend vs the upstream plugin (waldur-site-agent-rancher 1.0.7 with Keycloak, PyPI)
against `site-sim rancher` (Rancher v3 + Kubernetes + Keycloak doubles, plain HTTP): N resources
(one Waldur project each) created with limits (cpu 4, memory 16, storage 100) and one user
each, one usage report over all of them, then deleted. Counts the requests the Rancher and
Keycloak doubles saw (their /__sim/stats; the cluster proxy's requests are Rancher's) and wall
time. Backend level on both sides (no Waldur): the Python side calls the plugin's backend class
as its processors do (create_resource_with_id, add_user, _get_usage_report, delete_resource), the
Rust side `crates/backend-rancher/examples/bench_rancher.rs`.

    cargo build -p site-sim -p backend-rancher --example bench_rancher
    python3 bench/rancher.py --n 20 --profile debug   # needs the venv of crates/site-sim/tests/rancher-plugin/run.sh
"""
import argparse, json, os, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=20)
ap.add_argument("--profile", default="release")
ap.add_argument("--venv", default="/tmp/waldur-site-sim-venv")
a = ap.parse_args()
target = os.path.join(ROOT, "target", a.profile)

def doubles():
    out = tempfile.NamedTemporaryFile(delete=False)
    p = subprocess.Popen([f"{target}/site-sim", "rancher", "--demo", "--listen", "127.0.0.1:0"],
                         stdout=out, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.getsize(out.name):
            break
        time.sleep(0.1)
    return p, json.load(open(out.name))

def stats(url, token):
    req = urllib.request.Request(url + "/__sim/stats", headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))["total"]

def total(info):
    return stats(info["url"], info["sim_token"]) + stats(info["keycloak_url"], info["keycloak_sim_token"])

PY = r'''
import os, sys, time, uuid, json
from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
from waldur_site_agent_rancher.backend import RancherBackend
i = json.loads(os.environ["RANCHER_INFO"])
b = RancherBackend({"backend_url": i["url"], "username": i["access_key"], "password": i["secret_key"],
                    "cluster_id": i["cluster_id"], "verify_cert": False, "keycloak_enabled": True,
                    "keycloak_use_user_id": False,
                    "keycloak": {"keycloak_url": i["keycloak_url"] + "/", "keycloak_realm": "waldur",
                                 "keycloak_user_realm": "master", "keycloak_username": i["keycloak_username"],
                                 "keycloak_password": i["keycloak_password"], "keycloak_ssl_verify": False}},
                   {"cpu": {"type": "cpu", "measured_unit": "x", "accounting_type": "limit", "label": "cpu"},
                    "memory": {"type": "ram", "measured_unit": "x", "accounting_type": "limit", "label": "memory"},
                    "storage": {"type": "storage", "measured_unit": "x", "accounting_type": "limit", "label": "storage"}})
lim = {"cpu": 4, "memory": 16, "storage": 100}
rs = []
t = time.time()
for n in range(int(os.environ["RANCHER_N"])):
    r = Resource(uuid=uuid.uuid4(), name=f"bench {n}", slug=f"py{n}", customer_slug="acme", project_slug=f"p{n}",
                 limits=ResourceLimits.from_dict(lim))
    info = b.create_resource_with_id(r, "")
    r.backend_id = info.backend_id
    b.add_user(r, "alice")
    rs.append(r)
c = time.time() - t
t = time.time()
b._get_usage_report([r.backend_id for r in rs])
u = time.time() - t
t = time.time()
for r in rs:
    b.delete_resource(r)
print(json.dumps({"create_and_user_seconds": c, "usage_seconds": u, "delete_seconds": time.time() - t}))
'''

rows = {}
for side in ["rust", "python"]:
    if side == "python" and not os.path.exists(f"{a.venv}/bin/python"):
        print("note: no venv for the upstream plugin; run crates/site-sim/tests/rancher-plugin/run.sh once", file=sys.stderr)
        continue
    p, info = doubles()
    try:
        env = dict(os.environ, RANCHER_INFO=json.dumps(info), RANCHER_N=str(a.n))
        before = total(info)
        if side == "rust":
            out = subprocess.run([f"{target}/examples/bench_rancher"], env=env, capture_output=True, text=True, check=True).stdout
        else:
            out = subprocess.run([f"{a.venv}/bin/python", "-c", PY], env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["requests_total"] = total(info) - before
        rows[side] = r
    finally:
        p.kill()
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
json.dump({"n": a.n, **rows}, open(os.path.join(ROOT, "bench", "results", "rancher.json"), "w"), indent=1)
for side, r in rows.items():
    print(f"{side}: create+user {r['create_and_user_seconds']:.2f} s, usage {r['usage_seconds']:.2f} s, "
          f"delete {r['delete_seconds']:.2f} s, requests {r['requests_total']} ({r['requests_total'] / a.n:.1f} per resource)")
