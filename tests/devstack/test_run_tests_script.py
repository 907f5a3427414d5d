"""scripts/run-tests.sh (what `./dev test` and CI run): the order of its steps.

The tools it calls are replaced by stubs that record their arguments: what is under test
is the script's own logic, not the tools (which the rest of the suite runs for real).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
if [ "$(basename "$0") $1" = "mediaimport-dev status" ]; then exit "$STACK_STATUS"; fi
"""


def _run(tmp_path: Path, *, stack_up: bool) -> list[str]:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts/run-tests.sh", checkout / "scripts/run-tests.sh")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("ruff", "mypy", "pytest", "mediaimport-dev"):
        (tools / tool).write_text(STUB)
        (tools / tool).chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "CALLS": str(calls),
           "STACK_STATUS": "0" if stack_up else "1"}
    subprocess.run([str(checkout / "scripts/run-tests.sh"), "-x"], check=True, env=env,
                   capture_output=True, timeout=60)
    return [line.rstrip() for line in calls.read_text().splitlines()]


@pytest.mark.parametrize("stack_up", [True, False])
def test_a_stack_left_up_by_the_demo_is_stopped_before_the_end_to_end_tier(
    tmp_path: Path, stack_up: bool
) -> None:
    # `./dev demo` leaves this checkout's stack up; the end-to-end tests need the machine's
    # one node, and used to wait an hour for it.
    calls = _run(tmp_path, stack_up=stack_up)
    assert calls == [
        "ruff check .", "mypy", "pytest -m not e2e -x", "mediaimport-dev status",
        *(["mediaimport-dev down"] if stack_up else []), "pytest -m e2e -x",
    ]
