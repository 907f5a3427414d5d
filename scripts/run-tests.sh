#!/usr/bin/env bash
# Static checks, then tests from fastest to slowest tier. Extra arguments go to
# every pytest run (e.g. -x, -k).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== unit and component tests"; pytest -m "not e2e" "$@"
echo "== end-to-end tests (local cluster: control plane and a real node)"; pytest -m e2e "$@"
