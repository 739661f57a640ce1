#!/usr/bin/env python3
"""membership_sync side by side: this agent and the Python agent from PyPI, on the same
waldur-sim and the same real SLURM.

    python3 bench/membership.py [--resources 100] [--users 5] [--agents rust,python]

Set-up (not measured): N projects, each with one allocation created by our agent's
order_process, then U members added to every project (Mastermind's rules make their offering
users). Measured per agent: the first membership cycle (N × U associations to add) and a second
one with nothing changed: wall time, SLURM commands (a counting wrapper directory given as
`slurm_bin_path`), HTTP requests the agent made (the simulator counts them per client; the bench
identifies itself as `waldur-bench`) and the agent's peak RSS (`wait4`).

Our agent runs `-m membership_sync --once`. The Python agent has no `--once`: it runs its cycle
and then sleeps; the cycle's end is its last log line (INFO) or SLURM call once both have been
still for 10 s, and the bench stops it there.

Results go to bench/results/membership-<N>.json. Needs release builds
(`cargo build --release -p waldur-site-agent -p waldur-sim`), real SLURM
(`bash scripts/services/slurm-up.sh`) and, for the Python column, `bench/python_agent.sh`.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from orders import (
    OFFERING, OWNER, PLAN, STAFF, HERE, ROOT, Sim, agent_requests, api,
    cleanup_accounts, config, counting_wrapper, list_all, run_measured as run, slurm_env,
)

def agent_cycle(kind, cfg, env, pybin, timeout, work, call_log):
    if kind == "rust":
        env = dict(env, WALDUR_SITE_AGENT_LOG_LEVEL="WARNING")
        cmd = [os.path.join(ROOT, "target/release/waldur-site-agent"), "-m", "membership_sync", "-c", cfg, "--once"]
        return run(cmd, env, timeout)
    # The Python agent logs every step at INFO; after its cycle it sleeps. The cycle is over when
    # neither its log nor its SLURM calls moved for IDLE seconds; it ended at the last of them.
    idle = 10.0
    log = os.path.join(work, f"python-agent-{time.time():.0f}.log")
    open(log, "w").close()
    env = dict(env, WALDUR_SITE_AGENT_LOG_LEVEL="INFO")
    cmd = [os.path.join(pybin, "waldur_site_agent"), "-m", "membership_sync", "-c", cfg]
    start = time.time()

    def last_activity():
        return max(os.path.getmtime(log), os.path.getmtime(call_log))

    def cycle_done():
        return "Processing offering" in open(log).read() and time.time() - last_activity() > idle

    wall, rss = run(cmd, env, timeout, until=cycle_done, log=log)
    return min(wall, last_activity() - start), rss


def bench_agent(kind, args, pybin, env):
    with tempfile.TemporaryDirectory() as work:
        sim = Sim(args.resources, args.users, work, members=False)
        tag = f"m{kind[0]}{os.getpid() % 10000}"
        try:
            projects = [p for p in list_all(sim.base, "projects/", OWNER) if p["name"].startswith("Project ")]
            projects = projects[: args.resources]
            for p in projects:
                api(sim.base, "POST", "marketplace-orders/", OWNER, {
                    "offering": OFFERING.hex, "project": p["uuid"], "plan": PLAN.hex,
                    "limits": {"cpu": 10, "mem": 10}, "attributes": {"name": f"alloc {p['name']}"},
                })
            bin_dir, call_log = counting_wrapper(work, env)
            cfg = os.path.join(work, "config.yaml")
            with open(cfg, "w") as f:
                f.write(config(sim.base, tag, bin_dir))
            # Set-up: the allocations, by our agent, without members.
            subprocess.run([os.path.join(ROOT, "target/release/waldur-site-agent"), "-m", "order_process", "-c", cfg, "--once"],
                           env=dict(env, WALDUR_SITE_AGENT_LOG_LEVEL="WARNING"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=args.timeout)
            users = {u["username"]: u["uuid"] for u in list_all(sim.base, "users/", STAFF)}
            for i, p in enumerate(projects):
                for u in range(args.users):
                    api(sim.base, "POST", f"projects/{p['uuid']}/add_user/", OWNER,
                        {"user": users[f"u{i:03d}x{u}"], "role": "PROJECT.MEMBER"})
            row = {"agent": kind, "resources": len(projects), "users_per_resource": args.users}
            for phase in ("first", "steady"):
                open(call_log, "w").close()
                sim.reset_stats()
                wall, rss = agent_cycle(kind, cfg, env, pybin, args.timeout, work, call_log)
                calls = open(call_log).read().splitlines()
                by_cmd = {}
                for c in calls:
                    key = " ".join(c.split()[:3])
                    by_cmd[key] = by_cmd.get(key, 0) + 1
                stats = sim.stats()
                writes = {k: v["count"] for k, v in stats["routes"].items()
                          if not k.startswith("GET") and v["count"] > 0}
                row[phase] = {
                    "wall_s": round(wall, 2),
                    "slurm_calls": len(calls),
                    "slurm_calls_by_command": by_cmd,
                    "http_requests": agent_requests(stats),
                    "http_writes_by_route": writes,
                    "peak_rss_mib": rss,
                }
            assoc = subprocess.run(["sacctmgr", "-nP", "show", "assoc", "format=account,user"],
                                   capture_output=True, text=True, env=env).stdout.splitlines()
            row["associations_made"] = sum(1 for a in assoc if a.startswith(tag + "a_") and a.split("|")[1])
            print(json.dumps(row), flush=True)
            return row
        finally:
            sim.stop()
            cleanup_accounts(tag, env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resources", type=int, default=100)
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--agents", default="rust,python")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    env = slurm_env()
    pybin = None
    if "python" in args.agents:
        pybin = subprocess.run(["bash", os.path.join(HERE, "python_agent.sh")], capture_output=True, text=True, check=True).stdout.strip()
    rows = [bench_agent(a, args, pybin, env) for a in args.agents.split(",")]
    out = os.path.join(HERE, "results", f"membership-{args.resources}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out):
        ran = {r["agent"] for r in rows}
        rows = [r for r in json.load(open(out)) if r.get("agent") not in ran] + rows
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
