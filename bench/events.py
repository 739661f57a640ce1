#!/usr/bin/env python3
"""Event-to-done latency: a consumer places Create orders one after another; the agent runs
`event_process` against waldur-sim publishing to the real RabbitMQ (web-stomp) and creates the
accounts in the real SLURM. Latency = order placed → order `done` as seen through the API.

    python3 bench/events.py [--orders 200] [--agents rust,python] [--python-orders 30]

Needs: release builds, real SLURM and RabbitMQ with the management API
(`RABBITMQ_WITH_MANAGEMENT=1 bash scripts/services/up.sh slurm rabbitmq`), the Python agent
(`bench/python_agent.sh`). Results: bench/results/events.json.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from orders import (  # noqa: E402
    HERE, OFFERING, OWNER, PLAN, PROVIDER, ROOT, STAFF, api, cleanup_accounts, free_port, list_all, seed_yaml, slurm_env,
)


def start_sim(workdir, n_projects):
    seed = os.path.join(workdir, "seed.yaml")
    with open(seed, "w") as f:
        f.write(seed_yaml(n_projects, 1))
    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(ROOT, "target/release/waldur-sim"), "--listen", f"127.0.0.1:{port}", "--seed", seed,
         "--rabbitmq-admin", "http://waldur:waldur@127.0.0.1:15672", "--stomp", "127.0.0.1:61613",
         "--stomp-ws", "ws://127.0.0.1:15674/ws"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "sim.log"), "w"), text=True,
    )
    proc.stdout.readline()
    return proc, f"http://127.0.0.1:{port}/api/"


def config(base, tag):
    return f"""offerings:
  - name: Bench events
    waldur_api_url: "{base}"
    waldur_api_token: "{PROVIDER}"
    waldur_offering_uuid: "{OFFERING.hex}"
    backend_type: slurm
    order_processing_backend: slurm
    membership_sync_backend: slurm
    username_management_backend: base
    stomp_enabled: true
    websocket_use_tls: false
    stomp_ws_host: 127.0.0.1
    stomp_ws_port: 15674
    stomp_ws_path: /ws
    backend_settings:
      default_account: root
      customer_prefix: "{tag}c_"
      project_prefix: "{tag}p_"
      allocation_prefix: "{tag}a_"
      enable_user_homedir_account_creation: false
    backend_components:
      cpu: {{limit: 10, measured_unit: k-Hours, unit_factor: 60000, accounting_type: usage, label: CPU}}
"""


def bench(kind, n, pybin, env):
    tag = f"e{kind[0]}{os.getpid() % 10000}"
    with tempfile.TemporaryDirectory() as work:
        sim, base = start_sim(work, n)
        agent = None
        try:
            cfg = os.path.join(work, "config.yaml")
            with open(cfg, "w") as f:
                f.write(config(base, tag))
            cmd = ([os.path.join(ROOT, "target/release/waldur-site-agent")] if kind == "rust"
                   else [os.path.join(pybin, "waldur_site_agent")]) + ["-m", "event_process", "-c", cfg]
            agent = subprocess.Popen(cmd, stdout=open(os.path.join(work, "agent.log"), "w"), stderr=subprocess.STDOUT,
                                     env=dict(env, WALDUR_SITE_AGENT_LOG_LEVEL=os.environ.get("BENCH_AGENT_LOG_LEVEL", "WARNING")))
            time.sleep(8)  # subscriptions registered, connected, initial pass done
            projects = [p for p in list_all(base, "projects/", OWNER) if p["name"].startswith("Project ")]
            latencies = []
            for p in projects[:n]:
                t0 = time.perf_counter()
                o = api(base, "POST", "marketplace-orders/", OWNER, {
                    "offering": OFFERING.hex, "project": p["uuid"], "plan": PLAN.hex,
                    "limits": {"cpu": 1}, "attributes": {"name": "latency"},
                })
                state = ""
                while time.perf_counter() - t0 < 120:
                    state = api(base, "GET", f"marketplace-orders/{o['uuid']}/?field=state", STAFF)["state"]
                    if state in ("done", "erred"):
                        break
                    time.sleep(0.02)
                latencies.append((time.perf_counter() - t0, state))
            done = sorted(lat for lat, s in latencies if s == "done")
            row = {
                "agent": kind,
                "orders": len(latencies),
                "done": len(done),
                "p50_ms": round(statistics.median(done) * 1000) if done else None,
                "p99_ms": round(done[min(len(done) - 1, int(len(done) * 0.99))] * 1000) if done else None,
                "mean_ms": round(statistics.mean(done) * 1000) if done else None,
                "max_ms": round(done[-1] * 1000) if done else None,
                # In the order placed: a trend (slurmdbd slowing as its tree grows) or spikes.
                "latencies_ms": [round(lat * 1000) for lat, _ in latencies],
            }
            print(json.dumps(row))
            return row
        finally:
            if agent:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(15)
                except subprocess.TimeoutExpired:
                    agent.kill()
            # BENCH_LOG_DIR keeps the agent's log (warnings and errors) for a look at the tail.
            if os.environ.get("BENCH_LOG_DIR"):
                os.makedirs(os.environ["BENCH_LOG_DIR"], exist_ok=True)
                shutil.copy(os.path.join(work, "agent.log"), os.path.join(os.environ["BENCH_LOG_DIR"], f"events-{kind}.log"))
            sim.terminate()
            cleanup_accounts(tag, env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--python-orders", type=int, default=30, help="the Python agent is slower: fewer orders")
    ap.add_argument("--agents", default="rust,python")
    args = ap.parse_args()
    env = slurm_env()
    pybin = None
    if "python" in args.agents:
        pybin = subprocess.run(["bash", os.path.join(HERE, "python_agent.sh")], capture_output=True, text=True, check=True).stdout.strip()
    rows = [bench(a, args.orders if a == "rust" else args.python_orders, pybin, env) for a in args.agents.split(",")]
    out = os.path.join(HERE, "results", "events.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    # Rows of agents not run this time stay (a Rust-only run keeps the Python figures).
    if os.path.exists(out):
        ran = {r["agent"] for r in rows}
        rows = [r for r in json.load(open(out)) if r.get("agent") not in ran] + rows
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
