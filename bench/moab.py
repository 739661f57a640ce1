#!/usr/bin/env python3
"""MOAB: `mam-*` calls per Create order and per report cycle over N accounts, this agent (the
binary against waldur-sim --offering-kind moab) and the upstream plugin waldur-site-agent-moab
1.0.7 (its backend class, as the Python agent's processors call it), both against the site-sim MAM
double, which counts calls per program in its state file.

    cargo build -p waldur-site-agent -p waldur-sim -p site-sim
    python3 bench/moab.py --orders 100 [--venv /tmp/waldur-site-sim-venv]

The venv needs waldur-site-agent and waldur-site-agent-moab 1.0.7 (or PYTHONPATH to the unpacked
wheel). Writes bench/results/moab-<N>.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary(name):
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, name)
        if os.path.exists(p):
            return p
    sys.exit(f"build {name} first")


def calls(state_dir):
    with open(os.path.join(state_dir, "state.json")) as f:
        return dict(json.load(f)["calls"])


def diff(after, before):
    d = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    return {"total": sum(d.values()), "by_program": d}


def start_double(work, name):
    state = os.path.join(work, name)
    out = subprocess.run([binary("site-sim"), "moab", "--state", state, "--no-wait"],
                         check=True, capture_output=True, text=True).stdout
    return state, json.loads(out)["path"]


def mam(bin_dir, *args):
    subprocess.run([os.path.join(bin_dir, args[0]), *args[1:]], check=True, capture_output=True)


def rust(n, work):
    state, bin_dir = start_double(work, "rust")
    sim = subprocess.Popen([binary("waldur-sim"), "--demo", "--offering-kind", "moab", "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        demo = json.loads(sim.stdout.readline())
        cfg = os.path.join(work, "config.yaml")
        with open(cfg, "w") as f:
            f.write(f"""offerings:
  - name: bench-moab
    waldur_api_url: "{demo['api_url']}"
    waldur_api_token: "{demo['provider_token']}"
    waldur_offering_uuid: "{demo['offering_uuid']}"
    backend_type: moab
    order_processing_backend: moab
    membership_sync_backend: moab
    reporting_backend: moab
    backend_settings: {{project_prefix: p_, allocation_prefix: a_, mam_bin_path: "{bin_dir}"}}
    backend_components:
      deposit: {{measured_unit: credits, unit_factor: 1, accounting_type: limit, label: Deposit}}
""")
        for i in range(n):
            subprocess.run([binary("waldur-sim"), "order", "create", "--api-url", demo["api_url"],
                            "--token", demo["consumer_token"], "--offering", demo["offering_uuid"],
                            "--project", demo["project_uuid"], "--plan", demo["plan_uuid"],
                            "--name", f"bench {i}", "--limit", "deposit=100"], check=True, capture_output=True)
        agent = [binary("waldur-site-agent"), "-c", cfg, "--once", "-m"]
        before = calls(state)
        t = time.monotonic()
        subprocess.run(agent + ["order_process"], check=True, capture_output=True)
        create_wall = time.monotonic() - t
        create = diff(calls(state), before)
        with open(os.path.join(state, "state.json")) as f:
            accounts = [a for a in json.load(f)["accounts"] if a.startswith("a_")]
        for a in accounts:
            mam(bin_dir, "mam-modify-account", "-a", a, "--add-user", "+alice")
            mam(bin_dir, "mam-charge", "-a", a, "-u", "alice", "-z", "1.5")
        before = calls(state)
        t = time.monotonic()
        subprocess.run(agent + ["report"], check=True, capture_output=True)
        report_wall = time.monotonic() - t
        report = diff(calls(state), before)
        return {"accounts": len(accounts), "create_cycle": create, "create_wall_s": round(create_wall, 2),
                "calls_per_create": round(create["total"] / max(len(accounts), 1), 2),
                "report_cycle": report, "report_wall_s": round(report_wall, 2)}
    finally:
        sim.terminate()


UPSTREAM = r"""
import json, os, subprocess, sys, time, uuid
from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
from waldur_site_agent_moab.backend import MoabBackend
state, n = sys.argv[1], int(sys.argv[2])
def calls():
    return json.load(open(os.path.join(state, "state.json")))["calls"]
b = MoabBackend({"project_prefix": "p_", "allocation_prefix": "a_"},
                {"deposit": {"measured_unit": "credits", "accounting_type": "limit", "unit_factor": 1, "label": "Deposit"}})
before = calls(); t = time.monotonic(); ids = []
for i in range(n):
    r = Resource(uuid=uuid.uuid4(), name=f"bench{i}", slug=f"bench{i}", customer_slug="c", project_slug="demo",
                 project_name="Demo", limits=ResourceLimits.from_dict({"deposit": 100}))
    ids.append(b.create_resource(r).backend_id)
create_wall = time.monotonic() - t; after = calls()
for a in ids:
    subprocess.run(["mam-modify-account", "-a", a, "--add-user", "+alice"], check=True, capture_output=True)
    subprocess.run(["mam-charge", "-a", a, "-u", "alice", "-z", "1.5"], check=True, capture_output=True)
rb = calls(); t = time.monotonic(); b._get_usage_report(ids); report_wall = time.monotonic() - t; ra = calls()
print(json.dumps({"ids": len(ids), "create": [before, after], "report": [rb, ra],
                  "create_wall_s": round(create_wall, 2), "report_wall_s": round(report_wall, 2)}))
"""


def upstream(n, work, python):
    state, bin_dir = start_double(work, "upstream")
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"])
    out = subprocess.run([python, "-c", UPSTREAM, state, str(n)], check=True, capture_output=True,
                         text=True, env=env).stdout
    r = json.loads(out.strip().splitlines()[-1])
    create = diff(r["create"][1], r["create"][0])
    return {"accounts": r["ids"], "create_cycle": create, "create_wall_s": r["create_wall_s"],
            "calls_per_create": round(create["total"] / max(r["ids"], 1), 2),
            "report_cycle": diff(r["report"][1], r["report"][0]), "report_wall_s": r["report_wall_s"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--venv", default="/tmp/waldur-site-sim-venv")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = {"orders": args.orders, "rust": rust(args.orders, work)}
        try:
            result["upstream"] = upstream(args.orders, work, os.path.join(args.venv, "bin", "python"))
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            result["upstream"] = {"error": str(e)}
    path = os.path.join(ROOT, "bench", "results", f"moab-{args.orders}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
