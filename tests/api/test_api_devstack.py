"""The API as a `mediaimport-dev` component: process, readiness, the stack's environment,
`mediaimport-dev token USER` and the log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from mediaimport_dev.api_runner import STACK_USER, ApiComponent
from mediaimport_dev.controlplane import ControlPlane
from mediaimport_dev.postgres import PostgresServer
from mediaimport_dev.s3server import S3Server
from mediaimport_dev.stack import EXTENSIONS, StackContext

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "mediaimport-dev")


def test_the_stack_runs_the_api_after_the_operator() -> None:
    assert [c.name for c in EXTENSIONS][-2:] == ["operator", "api"]


def test_component_runs_the_api_and_hands_out_tokens(
    control_plane: ControlPlane, crd: str, postgres_server: PostgresServer,
    s3_server: S3Server, s3_bucket: str, tmp_path: Path,
) -> None:
    ctx = StackContext(tmp_path, ["127.0.0.2/32"], s3_bucket)
    ctx.env = {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "DATABASE_URL": postgres_server.url,
        "MEDIAIMPORT_BUCKET": s3_bucket,
        "MEDIAIMPORT_ALLOWED_NETWORKS": "127.0.0.2/32",
        **s3_server.env(),
    }
    component = ApiComponent()
    state = component.up(ctx)
    try:
        assert component.healthy(state)
        assert state["url"] in component.describe(state)
        env = ctx.env
        assert env["MEDIAIMPORT_API_URL"] == state["url"]
        assert env["MEDIAIMPORT_API_USER"] == STACK_USER
        assert env["MEDIAIMPORT_WEBHOOK_SECRET"].startswith("whsec_")
        auth = {"Authorization": f"Bearer {env['MEDIAIMPORT_API_TOKEN']}"}
        listing = requests.get(f"{state['url']}/api/v1/media", headers=auth, timeout=10)
        assert listing.status_code == 200, listing.text
        # `mediaimport-dev token USER` against this stack's state.
        (tmp_path / "stack.json").write_text(json.dumps(
            {"components": {"api": state}, "env": env, "allow_networks": [], "bucket": ""}))
        made = subprocess.run([CLI, "--home", str(tmp_path), "token", "alice@example.com"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        answer = requests.post(f"{state['url']}/api/v1/media/import-from-url",
                               headers={"Authorization": f"Bearer {token}"},
                               json={"url": "http://127.0.0.2:9/x.mp4"}, timeout=10)
        assert answer.status_code == 202, answer.text
        refused = subprocess.run([CLI, "--home", str(tmp_path), "token", "../root"],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2 and "not a valid user id" in refused.stderr
        log = component.log_path(state)
        assert log is not None and "mediaimport API started" in log.read_text()
        assert "mi_" not in log.read_text()  # tokens stay out of the log
    finally:
        component.down(state)
    assert not component.healthy(state)


def test_token_needs_a_running_stack(tmp_path: Path) -> Any:
    answer = subprocess.run([CLI, "--home", str(tmp_path), "token", "bob"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert answer.returncode == 1 and "not up" in answer.stderr
