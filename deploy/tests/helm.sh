#!/usr/bin/env bash
# The Helm chart deploy/helm/waldur-site-agent: `helm lint --strict` and `helm template` with
# upstream's default values, upstream's own test values, all-in-one and HA values; every rendered
# object validated by kubernetes-validate (strict); assertions on the output (check_helm.py),
# including: an upstream values file renders the same Deployments with our chart as with
# upstream's chart (vendored in deploy/helm/testdata/upstream-chart).
set -uo pipefail
. "$(dirname "$0")/_tools.sh"
need_kube_tools
need_validate
CHART="$REPO/deploy/helm/waldur-site-agent"
TD="$REPO/deploy/helm/testdata"
WORK=$(mktemp -d /tmp/waldur-helm-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for v in upstream-chart/values.yaml upstream-chart/test-values.yaml upstream-chart/test-values-event.yaml all-in-one.yaml ha.yaml; do
  name=$(echo "$v" | tr '/.' '__')
  "$HELM" lint --strict "$CHART" -f "$TD/$v" >"$WORK/lint.out" 2>&1 || { cat "$WORK/lint.out"; fail "helm lint -f $v"; }
  "$HELM" template site "$CHART" --namespace waldur-agent -f "$TD/$v" >"$WORK/ours-$name.yaml" 2>"$WORK/err" \
    || { cat "$WORK/err"; fail "helm template -f $v"; }
  case "$v" in upstream-chart/*)
    "$HELM" template site "$TD/upstream-chart" --namespace waldur-agent -f "$TD/$v" >"$WORK/upstream-$name.yaml" 2>"$WORK/err" \
      || { cat "$WORK/err"; fail "upstream chart: helm template -f $v"; } ;;
  esac
done
# the chart's own defaults too
"$HELM" lint --strict "$CHART" >/dev/null 2>&1 || fail "helm lint (defaults)"
"$HELM" template site "$CHART" --namespace waldur-agent >"$WORK/ours-defaults.yaml" 2>/dev/null || fail "helm template (defaults)"
"$PY" "$REPO/deploy/tests/check_helm.py" "$WORK" || fail "check_helm.py"
echo "PASS: helm chart"
