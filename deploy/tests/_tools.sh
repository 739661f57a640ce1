# shellcheck shell=bash
# Shared by the deploy/tests scripts: helm/kubectl from scripts/services/kubectl-install.sh and a
# Python venv with kubernetes-validate (the one crates/site-sim's checks use, made under a lock).
# A missing tool prints SKIP and exits 0, except under CI=true, where it is installed or fails.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVICES=${WALDUR_SERVICES_DIR:-/tmp/waldur-services}
VENV=${VENV:-${SITE_SIM_VENV:-/tmp/waldur-site-sim-venv}}
fail() { echo "FAIL: $*"; exit 1; }
skip_or_fail() {
  [ "${CI:-}" = true ] && fail "$1"
  echo "SKIP: $1"
  exit 0
}
need_kube_tools() {
  if ! [ -x "$SERVICES/bin/helm" ] || ! [ -x "$SERVICES/bin/kubectl" ]; then
    if [ "${CI:-}" = true ] || [ -n "${DEPLOY_TESTS_INSTALL:-}" ]; then
      bash "$REPO/scripts/services/kubectl-install.sh" >/dev/null || fail "kubectl-install.sh"
    else
      skip_or_fail "no helm/kubectl in $SERVICES/bin (bash scripts/services/kubectl-install.sh)"
    fi
  fi
  [ -x "$SERVICES/bin/helm" ] || fail "kubectl-install.sh installed no helm"
  HELM="$SERVICES/bin/helm"; KUBECTL="$SERVICES/bin/kubectl"
}
need_validate() {
  if ! "$VENV/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null; then
    if [ "${CI:-}" = true ] || [ -n "${DEPLOY_TESTS_INSTALL:-}" ]; then
      (
        flock 9
        if ! "$VENV/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null; then
          [ -x "$VENV/bin/pip" ] || "${PYTHON:-python3}" -m venv "$VENV" || exit 1
          "$VENV/bin/pip" install -q kubernetes-validate pyyaml || exit 1
        fi
      ) 9>"$VENV.lock" || fail "making the venv $VENV with kubernetes-validate"
    else
      skip_or_fail "no kubernetes-validate in $VENV (DEPLOY_TESTS_INSTALL=1 installs it)"
    fi
  fi
  PY="$VENV/bin/python"
}
