#!/usr/bin/env python3
"""A cycle of N Create orders (each project with U members) and a report cycle, side by side:
this agent and the Python agent from PyPI, on the same waldur-sim and the same real SLURM.

    python3 bench/orders.py [--orders 100] [--users 5] [--agents rust,python] [--report]

Measured per agent: wall time until every order is done, HTTP requests the agent made (the
simulator's per-route counters), and SLURM commands it ran (a counting wrapper directory given as
`slurm_bin_path`). Results go to bench/results/orders-<N>.json.

Needs: release builds (`cargo build --release -p waldur-site-agent -p waldur-sim`), real SLURM
(`bash scripts/services/slurm-up.sh`), the Python agent (`bench/python_agent.sh` installs it).
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SLURM_ENV = "/tmp/waldur-services/slurm/env.sh"

STAFF, PROVIDER, OWNER = "bench-staff-token", "bench-provider-token", "bench-owner-token"
BENCH_CLIENT = "waldur-bench"


def agent_requests(stats):
    """Requests the agent made: everything but the bench's own."""
    return stats["total"] - stats.get("by_client", {}).get(BENCH_CLIENT, 0)
OFFERING = uuid.UUID("0b0b0b0b-0000-4000-8000-00000000000a")
PLAN = uuid.UUID("0b0b0b0b-0000-4000-8000-00000000000b")


def slurm_env():
    env = dict(os.environ)
    if os.path.exists(SLURM_ENV):
        for line in open(SLURM_ENV):
            if line.startswith("export "):
                for part in line[len("export "):].split():
                    if "=" in part:
                        k, v = part.split("=", 1)
                        env[k] = v.strip('"')
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_yaml(n_projects, n_users, members=True):
    lines = [
        "users:",
        f"  - {{username: staff, is_staff: true, token: {STAFF}}}",
        f"  - {{username: provider, token: {PROVIDER}}}",
        f"  - {{username: owner, token: {OWNER}}}",
    ]
    for p in range(n_projects):
        for u in range(n_users):
            lines.append(f"  - {{username: u{p:03d}x{u}}}")
    lines += [
        "customers:",
        "  - {name: HPC Center, owners: [provider], service_provider: true}",
        "  - {name: University, owners: [owner]}",
        "projects:",
    ]
    members_too = members
    for p in range(n_projects):
        members = ", ".join(f"{{user: u{p:03d}x{u}, role: PROJECT.MEMBER}}" for u in range(n_users) if members_too)
        lines.append(f"  - {{name: Project {p:03d}, customer: University, members: [{members}]}}")
    lines += [
        "offerings:",
        "  - name: Bench cluster",
        f"    uuid: {OFFERING}",
        "    customer: HPC Center",
        "    type: Marketplace.Slurm",
        "    plugin_options: {username_generation_policy: waldur_username}",
        "    components:",
        "      - {type: cpu, name: CPU, measured_unit: k-Hours, billing_type: usage}",
        "      - {type: mem, name: RAM, measured_unit: gb-Hours, billing_type: usage}",
        f"    plans: [{{name: Default, uuid: {PLAN}}}]",
    ]
    return "\n".join(lines) + "\n"


def api(base, method, path, token, body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", f"Token {token}")
    req.add_header("Content-Type", "application/json")
    # The simulator counts requests per client: the bench's own polling is not the agent's.
    req.add_header("User-Agent", BENCH_CLIENT + "/1")
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return json.loads(data) if data else None


def list_all(base, path, token):
    out, page = [], 1
    while True:
        sep = "&" if "?" in path else "?"
        chunk = api(base, "GET", f"{path}{sep}page={page}&page_size=300", token)
        out += chunk
        if len(chunk) < 300:
            return out
        page += 1


class Sim:
    def __init__(self, n_projects, n_users, workdir, members=True):
        seed = os.path.join(workdir, "seed.yaml")
        with open(seed, "w") as f:
            f.write(seed_yaml(n_projects, n_users, members))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/"
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "target/release/waldur-sim"), "--listen", f"127.0.0.1:{self.port}", "--seed", seed],
            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "sim.log"), "w"), text=True,
        )
        self.proc.stdout.readline()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    def stats(self):
        return api(self.base.replace("/api/", "/"), "GET", "__sim/stats", STAFF)

    def reset_stats(self):
        api(self.base.replace("/api/", "/"), "POST", "__sim/reset-stats", STAFF, {})


def counting_wrapper(workdir, env):
    d = os.path.join(workdir, "slurm-bin")
    os.makedirs(d)
    log = os.path.join(workdir, "slurm-calls.log")
    for prog in ["sacctmgr", "sacct", "scancel", "sinfo", "squeue", "scontrol", "sshare"]:
        real = subprocess.run(["bash", "-c", f"command -v {prog}"], capture_output=True, text=True, env=env).stdout.strip()
        if not real:
            continue
        path = os.path.join(d, prog)
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\necho "{prog} $*" >> {log}\nexec {real} "$@"\n')
        os.chmod(path, 0o755)
    return d, log


def config(base, tag, bin_dir):
    return f"""offerings:
  - name: Bench cluster
    waldur_api_url: "{base}"
    waldur_api_token: "{PROVIDER}"
    waldur_offering_uuid: "{OFFERING.hex}"
    backend_type: slurm
    order_processing_backend: slurm
    membership_sync_backend: slurm
    reporting_backend: slurm
    username_management_backend: base
    backend_settings:
      default_account: root
      customer_prefix: "{tag}c_"
      project_prefix: "{tag}p_"
      allocation_prefix: "{tag}a_"
      qos_default: normal
      slurm_bin_path: "{bin_dir}"
      enable_user_homedir_account_creation: false
    backend_components:
      cpu: {{limit: 10, measured_unit: k-Hours, unit_factor: 60000, accounting_type: usage, label: CPU}}
      mem: {{limit: 10, measured_unit: gb-Hours, unit_factor: 61440, accounting_type: usage, label: RAM}}
"""


def cleanup_accounts(tag, env):
    out = subprocess.run(["sacctmgr", "-nP", "show", "account", "format=account"], capture_output=True, text=True, env=env).stdout
    names = [a for a in out.split() if a.startswith(tag)]
    # Allocations first, then projects, then customers (children before parents).
    for kind in ("a_", "p_", "c_"):
        batch = [a for a in names if a.startswith(tag + kind)]
        for i in range(0, len(batch), 50):
            subprocess.run(["sacctmgr", "-i", "delete", "account", ",".join(batch[i:i + 50])], capture_output=True, env=env)
    # The bench's users (uNNNxM) keep an association under root after their accounts are gone:
    # left behind they grow slurmdbd's tree and slow every later run.
    out = subprocess.run(["sacctmgr", "-nP", "show", "user", "format=user"], capture_output=True, text=True, env=env).stdout
    users = [u for u in out.split() if re.fullmatch(r"u\d{3,}x\d+", u)]
    for i in range(0, len(users), 500):
        subprocess.run(["sacctmgr", "-i", "delete", "user", "name=" + ",".join(users[i:i + 500])], capture_output=True, env=env)


def run_measured(cmd, env, timeout, until=None, log=None):
    """Run `cmd` until it exits (or `until()` says done); wall time and peak RSS in MiB."""
    t0 = time.perf_counter()
    err = open(log, "a") if log else subprocess.DEVNULL
    p = subprocess.Popen(cmd, stdout=err, stderr=err, env=env)
    done_at, usage = None, None
    # wait4 (never Popen.poll, which reaps the child first): this child's own peak RSS (KiB on
    # Linux), not the maximum over every child. Linux carries the high-water mark across exec,
    # so a figure below this Python's own RSS (~21 MiB) is that floor, not the agent's.
    while time.perf_counter() - t0 < timeout:
        pid, _, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            done_at = time.perf_counter()
            break
        if until is not None and until():
            done_at = time.perf_counter()
            p.send_signal(signal.SIGTERM)
            break
        time.sleep(0.1)
    else:
        p.send_signal(signal.SIGTERM)
    if not (usage and usage.ru_maxrss and done_at and not until):
        for _ in range(150):
            pid, _, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.1)
        else:
            p.kill()
            _, _, usage = os.wait4(p.pid, 0)
    p.returncode = 0
    return (done_at or time.perf_counter()) - t0, round(usage.ru_maxrss / 1024, 1)


def running_second_report_cycle(cfg_path, sim, env, period_s=5.0):
    """Requests of the second report cycle of one long-running Rust agent (report period
    `period_s`): the agent's requests between a snapshot taken before the second cycle starts
    and one taken before the third."""
    cmd = [os.path.join(ROOT, "target/release/waldur-site-agent"), "-m", "report", "-c", cfg_path,
           "--tick-seconds", "0.5"]
    run_env = dict(env, WALDUR_SITE_AGENT_LOG_LEVEL="WARNING",
                   WALDUR_SITE_AGENT_REPORT_PERIOD_MINUTES=str(period_s / 60))
    sim.reset_stats()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=run_env)
    try:
        def snapshot():
            st = sim.stats()
            routes = {k: v["count"] for k, v in st["routes"].items()}
            return agent_requests(st), routes
        time.sleep(period_s * 0.8)
        before, routes_before = snapshot()
        time.sleep(period_s)
        after, routes_after = snapshot()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    routes = {k: v - routes_before.get(k, 0) for k, v in routes_after.items()
              if v - routes_before.get(k, 0) and "/__sim/" not in k}
    return {"total": after - before, "routes": routes}


def run_agent(kind, cfg_path, sim, n_orders, env, timeout, pybin, mode="order_process", until=None):
    """Run one agent cycle; (wall time, peak RSS in MiB of the agent process)."""
    if kind == "rust":
        cmd = [os.path.join(ROOT, "target/release/waldur-site-agent"), "-m", mode, "-c", cfg_path, "--once"]
    else:
        cmd = [os.path.join(pybin, "waldur_site_agent"), "-m", mode, "-c", cfg_path]
    return run_measured(cmd, dict(env, WALDUR_SITE_AGENT_LOG_LEVEL="WARNING"), timeout, until=until)


def bench_agent(kind, args, pybin, env):
    with tempfile.TemporaryDirectory() as work:
        sim = Sim(args.orders, args.users, work)
        try:
            tag = f"b{kind[0]}{os.getpid() % 10000}"
            projects = [p for p in list_all(sim.base, "projects/", OWNER) if p["name"].startswith("Project ")]
            orders = []
            for p in projects[: args.orders]:
                o = api(sim.base, "POST", "marketplace-orders/", OWNER, {
                    "offering": OFFERING.hex, "project": p["uuid"], "plan": PLAN.hex,
                    "limits": {"cpu": 10, "mem": 10}, "attributes": {"name": f"alloc {p['name']}"},
                })
                orders.append(o["uuid"])
            bin_dir, call_log = counting_wrapper(work, env)
            cfg = os.path.join(work, "config.yaml")
            with open(cfg, "w") as f:
                f.write(config(sim.base, tag, bin_dir))
            sim.reset_stats()

            def all_done():
                states = [o["state"] for o in list_all(sim.base, f"marketplace-orders/?offering_uuid={OFFERING.hex}&field=state", STAFF)]
                return all(s in ("done", "erred") for s in states)

            wall, rss = run_agent(kind, cfg, sim, len(orders), env, args.timeout, pybin, until=None if kind == "rust" else all_done)
            stats = sim.stats()
            states = [o["state"] for o in list_all(sim.base, f"marketplace-orders/?offering_uuid={OFFERING.hex}&field=state", STAFF)]
            calls = open(call_log).read().splitlines() if os.path.exists(call_log) else []
            by_cmd = {}
            for c in calls:
                key = " ".join(c.split()[:3])
                by_cmd[key] = by_cmd.get(key, 0) + 1
            row = {
                "agent": kind,
                "orders": len(orders),
                "users_per_project": args.users,
                "done": states.count("done"),
                "erred": states.count("erred"),
                "wall_s": round(wall, 2),
                "http_requests": agent_requests(stats),
                "http_per_order": round(agent_requests(stats) / max(1, len(orders)), 2),
                "slurm_calls": len(calls),
                "slurm_calls_per_order": round(len(calls) / max(1, len(orders)), 2),
                "slurm_calls_by_command": by_cmd,
                "peak_rss_mib": rss,
            }
            if args.report:
                open(call_log, "w").close()
                sim.reset_stats()
                t0 = time.perf_counter()
                if kind == "rust":
                    _, row["report_peak_rss_mib"] = run_agent(kind, cfg, sim, 0, env, args.timeout, pybin, mode="report")
                else:
                    def reported():
                        s = sim.stats()
                        return any("set_usage" in k for k in s["routes"]) and s["routes"].get("POST /api/marketplace-component-usages/set_usage/", {}).get("count", 0) >= len(orders)
                    run_agent(kind, cfg, sim, 0, env, args.timeout, pybin, mode="report", until=reported)
                row["report_wall_s"] = round(time.perf_counter() - t0, 2)
                row["report_slurm_calls"] = len(open(call_log).read().splitlines())
                row["report_http_requests"] = agent_requests(sim.stats())
                if kind == "rust":
                    # A second cycle with nothing new on the site: what a steady-state report costs.
                    open(call_log, "w").close()
                    sim.reset_stats()
                    t0 = time.perf_counter()
                    _, row["report_again_peak_rss_mib"] = run_agent(kind, cfg, sim, 0, env, args.timeout, pybin, mode="report")
                    row["report_again_wall_s"] = round(time.perf_counter() - t0, 2)
                    row["report_again_slurm_calls"] = len(open(call_log).read().splitlines())
                    row["report_again_http_requests"] = agent_requests(sim.stats())
                    row["report_again_http_by_route"] = {k: v["count"] for k, v in sim.stats()["routes"].items()}
                    # The same in a long-running agent (what a systemd unit runs): the second
                    # cycle of one process, which may reuse what the first one learnt.
                    second = running_second_report_cycle(cfg, sim, env)
                    row["report_running_second_http_requests"] = second["total"]
                    row["report_running_second_http_by_route"] = second["routes"]
            print(json.dumps(row))
            return row
        finally:
            sim.stop()
            cleanup_accounts(f"b{kind[0]}{os.getpid() % 10000}", env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--agents", default="rust,python")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--report", action="store_true", help="also time a report cycle over the created resources")
    args = ap.parse_args()
    env = slurm_env()
    pybin = None
    if "python" in args.agents:
        pybin = subprocess.run(["bash", os.path.join(HERE, "python_agent.sh")], capture_output=True, text=True, check=True).stdout.strip()
    rows = [bench_agent(a, args, pybin, env) for a in args.agents.split(",")]
    out = os.path.join(HERE, "results", f"orders-{args.orders}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    # Rows of agents not run this time stay (a Rust-only run keeps the Python figures).
    if os.path.exists(out):
        ran = {r["agent"] for r in rows}
        kept = [r for r in json.load(open(out)) if r.get("agent") not in ran]
        rows = kept + rows
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
