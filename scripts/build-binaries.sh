#!/usr/bin/env bash
# Builds the pinned Go binaries mediaimport runs locally (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, helm,
# versitygw) from the Go module proxy.
# Each is cached by version outside the repository, so a second run costs seconds.
#
#   scripts/build-binaries.sh [name ...]     # default: all
#
# Prints the binary directory on the last line of stdout.
set -euo pipefail

K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.20.2
VERSITYGW_VERSION=v1.8.0

CACHE_ROOT="${MEDIAIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediaimport}"
BIN_DIR="$CACHE_ROOT/bin"
SRC_ROOT="$CACHE_ROOT/src"
mkdir -p "$BIN_DIR" "$SRC_ROOT"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { printf '[build-binaries] %s\n' "$*" >&2; }

# Runs a long command while printing elapsed time every 30 s, so a cold
# Kubernetes build (10-25 min on 2 cores) visibly makes progress.
with_heartbeat() {
  local label=$1; shift
  local started=$SECONDS logfile
  logfile=$(mktemp)
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if (( (SECONDS - started) % 30 < 5 )) && kill -0 "$pid" 2>/dev/null; then
      log "$label: still building ($((SECONDS - started)) s)"
    fi
  done
  if ! wait "$pid"; then
    log "$label: FAILED; last output:"; tail -n 40 "$logfile" >&2; rm -f "$logfile"; return 1
  fi
  rm -f "$logfile"
  log "$label: built in $((SECONDS - started)) s"
  # Cold build times, for bench/controlplane.py.
  printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "${label%% (*}" "$((SECONDS - started))" >> "$CACHE_ROOT/build-times.tsv"
}

# A versioned binary is installed as $BIN_DIR/<name>-<version>, and
# $BIN_DIR/<name> is a symlink to the pinned one.
have() { [[ -x "$BIN_DIR/$1-$2" ]]; }
link() { ln -sfn "$1-$2" "$BIN_DIR/$1"; }

# A throw-away wrapper module per tool and version; none of it is committed.
wrapper_module() {
  local dir="$SRC_ROOT/$1"
  mkdir -p "$dir"
  ( cd "$dir" && [[ -f go.mod ]] || go mod init "mediaimport.local/build/$1" >/dev/null 2>&1 )
  echo "$dir"
}

build_etcd() {
  have etcd "$ETCD_VERSION" || {
    local dir; dir=$(wrapper_module "etcd-$ETCD_VERSION")
    cd "$dir"
    with_heartbeat "etcd $ETCD_VERSION" bash -c "go get go.etcd.io/etcd/server/v3@$ETCD_VERSION && go build -trimpath -o '$BIN_DIR/etcd-$ETCD_VERSION.tmp' go.etcd.io/etcd/server/v3"
    mv "$BIN_DIR/etcd-$ETCD_VERSION.tmp" "$BIN_DIR/etcd-$ETCD_VERSION"
  }
  link etcd "$ETCD_VERSION"
}

build_versitygw() {
  have versitygw "$VERSITYGW_VERSION" || {
    local dir; dir=$(wrapper_module "versitygw-$VERSITYGW_VERSION")
    cd "$dir"
    with_heartbeat "versitygw $VERSITYGW_VERSION" bash -c "go get github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION && go build -trimpath -o '$BIN_DIR/versitygw-$VERSITYGW_VERSION.tmp' github.com/versity/versitygw/cmd/versitygw"
    mv "$BIN_DIR/versitygw-$VERSITYGW_VERSION.tmp" "$BIN_DIR/versitygw-$VERSITYGW_VERSION"
  }
  link versitygw "$VERSITYGW_VERSION"
}

# helm's default Kubernetes version (what `helm template` and `helm lint` assume
# without --kube-version) comes from ldflags, as in helm's own Makefile: without
# them it is v1.20.0 and the chart's kubeVersion refuses it. The flags are part of
# the cache key (HELM_BUILD), so a binary built without them is rebuilt once.
HELM_BUILD="$HELM_VERSION-kubedefault"

build_helm() {
  have helm "$HELM_BUILD" || {
    local dir; dir=$(wrapper_module "helm-$HELM_VERSION")
    cd "$dir"
    with_heartbeat "helm $HELM_VERSION" bash -c "
      set -euo pipefail
      go get helm.sh/helm/v3/cmd/helm@$HELM_VERSION
      # Upstream derives the default from the client-go it is built with (v0.N.x = 1.N).
      client_go=\$(go list -m -f '{{.Version}}' k8s.io/client-go)
      minor=\$(cut -d. -f2 <<<\"\$client_go\")
      flags='-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION'
      for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        flags+=\" -X \$pkg.k8sVersionMajor=1 -X \$pkg.k8sVersionMinor=\$minor\"
      done
      go build -trimpath -ldflags \"\$flags\" -o '$BIN_DIR/helm-$HELM_BUILD.tmp' helm.sh/helm/v3/cmd/helm"
    mv "$BIN_DIR/helm-$HELM_BUILD.tmp" "$BIN_DIR/helm-$HELM_BUILD"
  }
  link helm "$HELM_BUILD"
}

# k8s.io/kubernetes maps its staging modules to ./staging with replace lines, so
# it cannot be `go install`ed; the wrapper module pins each staging module to
# the matching v0.X.Y release instead.
build_kubernetes() {
  local names=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl) missing=0 n
  for n in "${names[@]}"; do have "$n" "$K8S_VERSION" || missing=1; done
  if (( missing )); then
    local dir; dir=$(wrapper_module "kubernetes-$K8S_VERSION")
    cd "$dir"
    local staging_version="v0.${K8S_VERSION#v1.}" gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    python3 - "$gomod" "$staging_version" > replaces.txt <<'PY'
import re, sys
gomod, version = sys.argv[1], sys.argv[2]
for module in sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) v0\.0\.0\s*$", open(gomod).read(), re.M))):
    print(f"{module}={module}@{version}")
PY
    while IFS= read -r r; do go mod edit -replace "$r"; done < replaces.txt
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    mkdir -p out
    local cmd tools=() packages=()
    for cmd in "${names[@]}"; do tools+=("k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION"); packages+=("k8s.io/kubernetes/cmd/$cmd"); done
    with_heartbeat "kubernetes $K8S_VERSION (${names[*]}; cold: 10-25 min)" bash -c "
      go get -tool ${tools[*]} &&
      go build -trimpath -ldflags '$ldflags' -o out/ ${packages[*]}"
    for n in "${names[@]}"; do mv "out/$n" "$BIN_DIR/$n-$K8S_VERSION"; done
  fi
  for n in "${names[@]}"; do link "$n" "$K8S_VERSION"; done
}

targets=("$@")
(( ${#targets[@]} )) || targets=(etcd versitygw kubernetes helm)
for t in "${targets[@]}"; do
  case "$t" in
    etcd) (build_etcd) ;;
    versitygw) (build_versitygw) ;;
    kubernetes) (build_kubernetes) ;;
    helm) (build_helm) ;;
    *) log "unknown target: $t"; exit 64 ;;
  esac
done
echo "$BIN_DIR"
