#!/usr/bin/env bash
# Static checks, then tests from fastest to slowest tier. Extra arguments go to
# every pytest run (e.g. -x, -k).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== unit and component tests"; pytest -m "not e2e" "$@"
# `./dev demo` leaves this checkout's stack up; the end-to-end tests need the machine's
# one node (a stack of another checkout is waited for instead).
if mediaimport-dev status > /dev/null 2>&1; then
  echo "== stopping this checkout's local stack (mediaimport-dev down): the end-to-end tests need the node"
  mediaimport-dev down
fi
echo "== end-to-end tests (local cluster: control plane and a real node)"; pytest -m e2e "$@"
