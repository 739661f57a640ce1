#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the real services the tests use (SLURM + slurmdbd +
# MariaDB, RabbitMQ with web-stomp and the management API, mosquitto, Keystone) on 127.0.0.1,
# then checks formatting and lints and runs every test of the workspace.
#
#   bash scripts/test.sh            # everything
#   SKIP_SERVICES=1 bash scripts/test.sh   # use services you started yourself
#
# Needs root on Debian to install and start the services (see scripts/services/README.md). Without
# them, tests that need a service skip with a note, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
export WALDUR_SERVICES_DIR="${WALDUR_SERVICES_DIR:-/tmp/waldur-services}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Tests that restart RabbitMQ must bring back the management API the simulator provisions through.
export RABBITMQ_WITH_MANAGEMENT=1
step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs) and re-run" >&2
  exit 1
fi

if [ -z "${SKIP_SERVICES:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "starting real services (SLURM, RabbitMQ, mosquitto, Keystone)"
    export KEYSTONE_PIP_SPEC="${KEYSTONE_PIP_SPEC:-keystone==30.0.0}"
    if [ "${CI:-}" = true ]; then
      # A CI machine may carry /tmp from an earlier run whose processes were killed mid-write:
      # the tests assume SLURM accounting starts empty and whole.
      SLURM_WIPE=1 bash scripts/services/slurm-down.sh
    fi
    bash scripts/services/up.sh slurm rabbitmq mosquitto keystone
  else
    echo "not root on Debian: not starting services; tests needing them will skip (or fail under CI=true)"
  fi
fi
if [ -f "$WALDUR_SERVICES_DIR/env.sh" ]; then
  # shellcheck disable=SC1091
  . "$WALDUR_SERVICES_DIR/env.sh"
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (workspace)"
# One test binary at a time against the shared services keeps SLURM and RabbitMQ assertions stable.
cargo test --workspace --locked --no-fail-fast -- --test-threads=4

step "deployment: systemd units, Helm chart, Kubernetes manifests, container image"
if [ -z "${SKIP_SERVICES:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash scripts/services/docker-up.sh
  bash scripts/services/kubectl-install.sh >/dev/null
fi
bash deploy/tests/run.sh

step "fuzz: the STOMP frame decoder under libFuzzer for ${FUZZ_SECONDS:-60} s"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}" 2>&1 | tail -4

if [ -x crates/waldur-sim/tests/python-agent/run.sh ]; then
  step "fidelity: the Python agent from PyPI against waldur-sim and real SLURM"
  bash crates/waldur-sim/tests/python-agent/run.sh 1.0.7 1.0.8rc12
fi
step "all tests passed"
