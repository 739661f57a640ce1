#!/usr/bin/env bash
# Install the Python agent from PyPI (pinned) into a virtualenv, once; prints the venv's bin dir.
#   PY_AGENT_VENV (default /tmp/waldur-python-agent/venv), PY_AGENT_VERSION (default 1.0.7)
set -euo pipefail
V="${PY_AGENT_VENV:-/tmp/waldur-python-agent/venv}"
VER="${PY_AGENT_VERSION:-1.0.7}"
if [ ! -x "$V/bin/waldur_site_agent" ] || ! "$V/bin/pip" show waldur-site-agent 2>/dev/null | grep "^Version: $VER$" >/dev/null; then
  python3 -m venv "$V" >&2
  "$V/bin/pip" install -q "waldur-site-agent==$VER" "waldur-site-agent-slurm==$VER" >&2
fi
echo "$V/bin"
