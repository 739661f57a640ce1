#!/usr/bin/env python3
"""Start-up time and peak memory of `--help`, and resident memory while idle, side by side.

    python3 bench/startup.py [--runs 10] [--rust target/release/waldur-site-agent] [--python-bin DIR]

Needs GNU time (`apt-get install time`). Idle memory: each agent runs `-m order_process` against a config whose offering has no orders
(a waldur-sim demo started here), and its RSS is read from /proc after it has settled.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_once(cmd, env=None):
    """Wall time (s), peak RSS (KiB, from GNU time's %M: the process itself, not this harness) and
    exit code of one run."""
    with tempfile.NamedTemporaryFile("r") as rss_file:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-o", rss_file.name, "-f", "%M"] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        dt = time.perf_counter() - t0
        rss = int(open(rss_file.name).read().split()[-1])
    return [dt, rss, p.returncode]


def measure(name, cmd, runs, env=None):
    samples = [run_once(cmd, env) for _ in range(runs)]
    codes = {s[2] for s in samples}
    times = sorted(s[0] for s in samples)
    rss = max(s[1] for s in samples)
    row = {
        "agent": name,
        "command": " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd)),
        "runs": runs,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "min_ms": round(times[0] * 1000, 1),
        "peak_rss_mib": round(rss / 1024, 1),
        "exit_codes": sorted(codes),
    }
    print(json.dumps(row))
    return row


def rss_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def start_sim(sim_bin):
    p = subprocess.Popen([sim_bin, "--demo", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    demo = json.loads(p.stdout.readline())
    return p, demo


def idle(name, cmd, seconds, env=None):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(seconds)
    rss = rss_of(p.pid) if p.poll() is None else None
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
    row = {"agent": name, "mode": "order_process idle", "settled_after_s": seconds, "rss_mib": round(rss, 1) if rss else None}
    print(json.dumps(row))
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--rust", default=os.path.join(ROOT, "target/release/waldur-site-agent"))
    ap.add_argument("--sim", default=os.path.join(ROOT, "target/release/waldur-sim"))
    ap.add_argument("--python-bin", default=None, help="bin dir of a venv with waldur-site-agent")
    ap.add_argument("--idle-seconds", type=float, default=15)
    args = ap.parse_args()
    pybin = args.python_bin or subprocess.run(["bash", os.path.join(HERE, "python_agent.sh")], capture_output=True, text=True, check=True).stdout.strip()
    rows = []
    rows.append(measure("rust", [args.rust, "--help"], args.runs))
    rows.append(measure("python", [os.path.join(pybin, "waldur_site_agent"), "--help"], max(3, args.runs // 3)))

    sim, demo = start_sim(args.sim)
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "config.yaml")
            with open(cfg, "w") as f:
                f.write(f"""offerings:
  - name: idle
    waldur_api_url: "{demo['api_url']}"
    waldur_api_token: "{demo['provider_token']}"
    waldur_offering_uuid: "{demo['offering_uuid']}"
    backend_type: slurm
    order_processing_backend: slurm
    backend_settings: {{default_account: root, customer_prefix: c_, project_prefix: p_, allocation_prefix: a_}}
    backend_components:
      cpu: {{measured_unit: k-Hours, unit_factor: 60000, accounting_type: usage, label: CPU}}
""")
            env = dict(os.environ, WALDUR_SITE_AGENT_ORDER_PROCESS_PERIOD_MINUTES="0.1")
            rows.append(idle("rust", [args.rust, "-m", "order_process", "-c", cfg], args.idle_seconds, env))
            rows.append(idle("python", [os.path.join(pybin, "waldur_site_agent"), "-m", "order_process", "-c", cfg], args.idle_seconds, env))
    finally:
        sim.terminate()
    out = os.path.join(HERE, "results", "startup.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
