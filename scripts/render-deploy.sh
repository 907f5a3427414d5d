#!/usr/bin/env bash
# Renders deploy/ from charts/mediaimport: the plain manifests behind
# `kubectl apply -k deploy/`. tests/chart/test_deploy_manifests.py runs it into a
# temporary folder and compares, so deploy/ never drifts from the chart.
#
#   scripts/render-deploy.sh [output dir]     # default: deploy/
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-deploy}
helm=${HELM:-helm}
chart=charts/mediaimport
args=(mediaimport "$chart" --namespace mediaimport-system --kube-version 1.35.4)
header() {
  printf '# Rendered from %s by scripts/render-deploy.sh (%s); do not edit.\n' "$chart" "$1"
}
mkdir -p "$out/crds"
{
  header "the CRD, without helm's keep policy"
  "$helm" template "${args[@]}" --show-only templates/crd.yaml --set crds.keep=false
} > "$out/crds/mediaimports.mediaimport.dev.yaml"
{
  header "values: deploy/values.yaml"
  "$helm" template "${args[@]}" -f deploy/values.yaml --set crds.enabled=false --skip-tests
} > "$out/mediaimport.yaml"
