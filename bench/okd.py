#!/usr/bin/env python3
"""OKD backend vs the upstream plugin (waldur-site-agent-okd 1.0.7, PyPI) against the site-sim
Kubernetes double (OpenShift mode, plain HTTP): N resources created with limits (cpu 4, memory
16, storage 100, pods 10) and one user each, then deleted. Counts the API requests the double
saw (its /__sim/stats) and wall time. Backend level on both sides (no Waldur): the Python side
calls the plugin's backend class as its processors do (create_resource, set_resource_limits since
its create drops the limits, add_users_to_resource), the Rust side `examples/bench_okd.rs`.

    cargo build --release -p site-sim -p backend-okd --example bench_okd
    python3 bench/okd.py --n 20      # needs the venv of crates/site-sim/tests/okd-plugin/run.sh
"""
import argparse, json, os, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=20)
ap.add_argument("--profile", default="release")
ap.add_argument("--venv", default="/tmp/waldur-site-sim-venv")
a = ap.parse_args()
target = os.path.join(ROOT, "target", a.profile)

def double():
    out = tempfile.NamedTemporaryFile(delete=False)
    p = subprocess.Popen([f"{target}/site-sim", "kubernetes", "--listen", "127.0.0.1:0", "--terminating-ms", "0"],
                         stdout=out, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.getsize(out.name):
            break
        time.sleep(0.1)
    return p, json.load(open(out.name))

def stats(info):
    req = urllib.request.Request(info["url"] + "/__sim/stats", headers={"Authorization": "Bearer " + info["token"]})
    return json.load(urllib.request.urlopen(req))["total"]

PY = r'''
import os, sys, time, uuid, json
from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
from waldur_site_agent_okd.backend import OkdBackend
tok = os.path.join(os.environ["WORK"], "tok"); open(tok, "w").write(os.environ["OKD_TOKEN"])
b = OkdBackend({"api_url": os.environ["OKD_URL"], "verify_cert": False, "namespace_prefix": "waldur-",
                "token_config": {"token_type": "file", "token_file_path": tok}},
               {c: {"measured_unit": "x", "accounting_type": "limit", "label": c} for c in ["cpu", "memory", "storage", "pods"]})
lim = {"cpu": 4, "memory": 16, "storage": 100, "pods": 10}
rs = []
t = time.time()
for i in range(int(os.environ["OKD_N"])):
    r = Resource(uuid=uuid.uuid4(), name=f"bench {i}", slug=f"py{i}", customer_slug="acme", project_slug="webdev",
                 limits=ResourceLimits.from_dict(lim))
    info = b.create_resource(r)
    b.set_resource_limits(info.backend_id, lim)
    r.backend_id = info.backend_id
    b.add_users_to_resource(r, {"alice"})
    rs.append(r)
c = time.time() - t
t = time.time()
for r in rs:
    b.delete_resource(r)
print(json.dumps({"create_and_user_seconds": c, "delete_seconds": time.time() - t}))
'''

rows = {}
for side in ["rust", "python"]:
    if side == "python" and not os.path.exists(f"{a.venv}/bin/python"):
        print("note: no venv for the upstream plugin; run crates/site-sim/tests/okd-plugin/run.sh once", file=sys.stderr)
        continue
    p, info = double()
    try:
        env = dict(os.environ, OKD_URL=info["url"], OKD_TOKEN=info["sa_token"], OKD_N=str(a.n), WORK=tempfile.mkdtemp())
        before = stats(info)
        if side == "rust":
            out = subprocess.run([f"{target}/examples/bench_okd"], env=env, capture_output=True, text=True, check=True).stdout
        else:
            out = subprocess.run([f"{a.venv}/bin/python", "-c", PY], env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["requests_total"] = stats(info) - before - 0
        rows[side] = r
    finally:
        p.kill()
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
json.dump({"n": a.n, **rows}, open(os.path.join(ROOT, "bench", "results", "okd.json"), "w"), indent=1)
for side, r in rows.items():
    print(f"{side}: create+user {r['create_and_user_seconds']:.2f} s, delete {r['delete_seconds']:.2f} s, "
          f"API requests {r['requests_total']} ({r['requests_total'] / a.n:.1f} per resource)")
