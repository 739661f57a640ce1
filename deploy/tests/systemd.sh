#!/usr/bin/env bash
# The systemd units in deploy/systemd: `systemd-analyze verify` on each (with ExecStart pointed
# at a built agent binary, since verify checks the executable), and the properties the units
# promise: Restart=on-failure, the upstream mode and config file, sandboxing on, and nothing that
# would stop sacctmgr or homedir creation (root, /home writable, CAP_CHOWN, AF_UNIX for munge).
# Env: AGENT_BIN (default target/debug/waldur-site-agent, built when missing).
set -uo pipefail
. "$(dirname "$0")/_tools.sh"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { [ "${CI:-}" = true ] || [ -n "${DEPLOY_TESTS_INSTALL:-}" ]; }; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd >/dev/null 2>&1 || fail "apt-get install systemd"
  else
    skip_or_fail "no systemd-analyze (apt-get install systemd)"
  fi
fi
BIN=${AGENT_BIN:-$REPO/target/debug/waldur-site-agent}
if ! [ -x "$BIN" ]; then (cd "$REPO" && cargo build -q -p waldur-site-agent) || fail "cargo build"; fi
WORK=$(mktemp -d /tmp/waldur-systemd-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
n=0
for unit in "$REPO"/deploy/systemd/*.service; do
  name=$(basename "$unit")
  sed "s|^ExecStart=/usr/local/bin/waldur-site-agent |ExecStart=$BIN |" "$unit" >"$WORK/$name"
  grep -q "^ExecStart=$BIN " "$WORK/$name" || fail "$name: ExecStart is not /usr/local/bin/waldur-site-agent"
  # verify complains about units it cannot load, unknown keys, bad values, a missing binary
  out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$WORK/$name" 2>&1)
  filtered=$(grep -v -e "munge.service" -e "network-online.target" <<<"$out" | grep -v '^$')
  [ -z "$filtered" ] || fail "$name: systemd-analyze verify: $filtered"
  mode=$(sed -n 's/^ExecStart=.* -m \([a-z_]*\) -c .*/\1/p' "$unit")
  slug=${mode//_/-}
  case "$name" in
    "waldur-agent-$slug.service"|"waldur-agent-$slug-legacy.service") ;;
    *) fail "$name runs -m '$mode'" ;;
  esac
  grep -q -- "-c /etc/waldur/waldur-site-agent-config.yaml$" "$unit" || fail "$name: upstream's config path"
  for want in "Restart=on-failure" "NoNewPrivileges=yes" "ProtectSystem=full" "PrivateTmp=yes" \
              "ProtectKernelModules=yes" "User=root" "SystemCallFilter=@system-service"; do
    grep -qx "$want" "$unit" || fail "$name lacks $want"
  done
  grep -q "^CapabilityBoundingSet=.*CAP_CHOWN" "$unit" || fail "$name: homedir creation needs CAP_CHOWN"
  grep -q "^RestrictAddressFamilies=.*AF_UNIX" "$unit" || fail "$name: munge needs AF_UNIX"
  grep -qE "^(ProtectHome=(yes|read-only|tmpfs)|ProtectSystem=strict|PrivateUsers=|DynamicUser=yes|InaccessiblePaths=.*(/home|/run/munge|/etc/slurm))" "$unit" \
    && fail "$name: sandboxing that would stop homedir creation or SLURM"
  case "$name" in
    *-legacy.service) grep -q "^StandardOutput=append:/var/log/waldur-site-agent-$slug.log" "$unit" || fail "$name: legacy log file" ;;
    *) grep -q "^StandardOutput=" "$unit" && fail "$name: only the legacy unit writes log files" ;;
  esac
  n=$((n + 1))
done
[ "$n" = 8 ] || fail "expected 8 units (4 modes, each with a legacy variant), found $n"
echo "PASS: systemd units ($n verified)"
