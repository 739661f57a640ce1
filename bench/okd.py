#!/usr/bin/env python3
"""OKD backend vs the upstream plugin (waldur-site-agent-okd 1.0.7, PyPI) against the site-sim
Kubernetes double (OpenShift mode, plain HTTP), backend level on both sides (no Waldur):

1. Create: N resources created with limits (cpu 4, memory 16, storage 100, pods 10) and one user
   each. Python: create_resource, set_resource_limits (its create drops the limits),
   add_users_to_resource, as its processors do. Rust: create_resource, add_users.
2. Membership pass over the N resources with an unchanged team, as each agent's membership
   processor makes it. Python: pull_resources, then per resource add_users_to_resource and
   remove_users_from_resource (empty sets), restore_resource, get_resource_metadata. Rust:
   pull_resources, then per resource restore and resource_metadata.
3. Delete the N resources.

Requests are counted by the double (/__sim/stats, per phase, each driver asks between phases);
wall time per phase. The Rust side is `crates/backend-okd/examples/bench_okd.rs`.

`agent`: the same through this agent's binary against `waldur-sim --demo --offering-kind okd`:
N Create orders, one `order_process --once` cycle (wall time, the double's requests per order),
then `membership_sync --once` twice (the first adds the demo project's team to every resource,
the second finds nothing to change); the double counts the requests (only the agent talks to it).

    cargo build --release -p waldur-site-agent -p waldur-sim -p site-sim
    cargo build --release -p backend-okd --example bench_okd
    python3 bench/okd.py --n 100     # needs the venv of crates/site-sim/tests/okd-plugin/run.sh
"""
import argparse, json, os, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=100)
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

def full_stats(info):
    req = urllib.request.Request(info["url"] + "/__sim/stats", headers={"Authorization": "Bearer " + info["token"]})
    return json.load(urllib.request.urlopen(req))

def stats(info):
    return full_stats(info)["total"]

def agent_requests(info):
    # Only the agent talks to the double while it runs; the double counts each /__sim/stats
    # reading after answering it, so the readings so far are taken off.
    agent_requests.reads += 1
    return full_stats(info)["total"] - (agent_requests.reads - 1)
agent_requests.reads = 0

def agent_side(n):
    p, info = double()
    sim = subprocess.Popen([f"{target}/waldur-sim", "--demo", "--offering-kind", "okd", "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        demo = json.loads(sim.stdout.readline())
        work = tempfile.mkdtemp()
        cfg = os.path.join(work, "config.yaml")
        with open(cfg, "w") as f:
            json.dump({"offerings": [{
                "name": "bench-okd", "waldur_api_url": demo["api_url"], "waldur_api_token": demo["provider_token"],
                "waldur_offering_uuid": demo["offering_uuid"], "backend_type": "okd",
                "order_processing_backend": "okd", "membership_sync_backend": "okd", "reporting_backend": "okd",
                "backend_settings": {"api_url": info["url"], "verify_cert": False, "token": info["sa_token"],
                                     "namespace_prefix": "waldur-"},
                "backend_components": {c: {"measured_unit": u, "accounting_type": "limit", "label": c}
                                       for c, u in [("cpu", "Core"), ("memory", "GB"), ("storage", "GB"), ("pods", "Count")]},
            }]}, f)
        for i in range(n):
            subprocess.run([f"{target}/waldur-sim", "order", "create", "--api-url", demo["api_url"],
                            "--token", demo["consumer_token"], "--offering", demo["offering_uuid"],
                            "--project", demo["project_uuid"], "--plan", demo["plan_uuid"], "--name", f"bench {i}",
                            "--limit", "cpu=4", "--limit", "memory=16", "--limit", "storage=100", "--limit", "pods=10"],
                           check=True, capture_output=True)
        agent = [f"{target}/waldur-site-agent", "-c", cfg, "--once", "-m"]
        out = {"n": n}
        for phase, mode in [("create", "order_process"), ("membership_first", "membership_sync"),
                            ("membership", "membership_sync")]:
            before = agent_requests(info)
            t = time.monotonic()
            r = subprocess.run(agent + [mode], capture_output=True, text=True)
            out[f"{phase}_seconds"] = round(time.monotonic() - t, 2)
            out[f"{phase}_requests"] = agent_requests(info) - before
            out[f"{phase}_exit"] = r.returncode
        req = urllib.request.Request(info["url"] + "/api/v1/namespaces?labelSelector=app.kubernetes.io/managed-by%3Dwaldur-site-agent",
                                     headers={"Authorization": "Bearer " + info["token"]})
        out["projects_created"] = len(json.load(urllib.request.urlopen(req))["items"])
        return out
    finally:
        sim.terminate()
        p.kill()

PY = r'''
import os, sys, time, uuid, json, urllib.request
from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
from waldur_site_agent_okd.backend import OkdBackend
def stats():
    # The double counts this request too (after answering it): one less for each reading.
    req = urllib.request.Request(os.environ["OKD_URL"] + "/__sim/stats", headers={"Authorization": "Bearer " + os.environ["OKD_ADMIN"]})
    stats.reads += 1
    return json.load(urllib.request.urlopen(req))["total"] - (stats.reads - 1)
stats.reads = 0
tok = os.path.join(os.environ["WORK"], "tok"); open(tok, "w").write(os.environ["OKD_TOKEN"])
b = OkdBackend({"api_url": os.environ["OKD_URL"], "verify_cert": False, "namespace_prefix": "waldur-",
                "token_config": {"token_type": "file", "token_file_path": tok}},
               {c: {"measured_unit": "x", "accounting_type": "limit", "label": c} for c in ["cpu", "memory", "storage", "pods"]})
lim = {"cpu": 4, "memory": 16, "storage": 100, "pods": 10}
rs = []
s0 = stats(); t = time.time()
for i in range(int(os.environ["OKD_N"])):
    r = Resource(uuid=uuid.uuid4(), name=f"bench {i}", slug=f"py{i}", customer_slug="acme", project_slug="webdev",
                 limits=ResourceLimits.from_dict(lim))
    info = b.create_resource(r)
    b.set_resource_limits(info.backend_id, lim)
    r.backend_id = info.backend_id
    b.add_users_to_resource(r, {"alice"})
    rs.append(r)
c = time.time() - t; s1 = stats(); t = time.time()
report = b.pull_resources(rs)
assert len(report) == len(rs), len(report)
for r in rs:
    b.add_users_to_resource(r, set())
    b.remove_users_from_resource(r, set())
    b.restore_resource(r.backend_id)
    b.get_resource_metadata(r.backend_id)
m = time.time() - t; s2 = stats(); t = time.time()
for r in rs:
    b.delete_resource(r)
d = time.time() - t; s3 = stats()
print(json.dumps({"create_and_user_seconds": c, "create_and_user_requests": s1 - s0,
                  "membership_seconds": m, "membership_requests": s2 - s1,
                  "delete_seconds": d, "delete_requests": s3 - s2}))
'''

rows = {}
for side in ["rust", "python"]:
    if side == "python" and not os.path.exists(f"{a.venv}/bin/python"):
        print("note: no venv for the upstream plugin; run crates/site-sim/tests/okd-plugin/run.sh once", file=sys.stderr)
        continue
    p, info = double()
    try:
        env = dict(os.environ, OKD_URL=info["url"], OKD_TOKEN=info["sa_token"], OKD_ADMIN=info["token"],
                   OKD_N=str(a.n), WORK=tempfile.mkdtemp())
        before = stats(info)
        if side == "rust":
            out = subprocess.run([f"{target}/examples/bench_okd"], env=env, capture_output=True, text=True, check=True).stdout
        else:
            out = subprocess.run([f"{a.venv}/bin/python", "-c", PY], env=env, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        # Less the readings of /__sim/stats: this script's first, and the Python driver's four.
        r["requests_total"] = stats(info) - before - 1 - (4 if side == "python" else 0)
        rows[side] = r
    finally:
        p.kill()
if os.path.exists(f"{target}/waldur-site-agent") and os.path.exists(f"{target}/waldur-sim"):
    rows["agent"] = agent_side(a.n)
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
json.dump({"n": a.n, **rows}, open(os.path.join(ROOT, "bench", "results", "okd.json"), "w"), indent=1)
for side, r in rows.items():
    if side == "agent":
        print(f"agent: order_process cycle of {a.n} Create orders {r['create_seconds']} s (exit {r['create_exit']}), "
              f"{r['create_requests'] / a.n:.2f} requests per order; membership_sync: first pass "
              f"{r['membership_first_seconds']} s, {r['membership_first_requests']} requests; steady pass "
              f"{r['membership_seconds']} s, {r['membership_requests']} requests")
        continue
    print(f"{side}: create+limits+user {r['create_and_user_seconds']:.2f} s, "
          f"{r['create_and_user_requests'] / a.n:.1f} requests per Create; "
          f"membership pass {r['membership_seconds']:.2f} s, {r['membership_requests']} requests; "
          f"delete {r['delete_seconds']:.2f} s, {r['delete_requests'] / a.n:.1f} requests per resource; "
          f"all requests {r['requests_total']}")
