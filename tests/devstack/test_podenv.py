"""The node agent's container-to-process translation, without a cluster."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from mediaimport_dev import podstatus
from mediaimport_dev.kube import KubeError
from mediaimport_dev.podenv import PodConfigError, PodStartError, prepare

OBJECTS: dict[str, dict[str, Any]] = {
    "/api/v1/namespaces/ns/secrets/s3": {
        "data": {"AWS_SECRET_ACCESS_KEY": base64.b64encode(b"secret").decode()}
    },
    "/api/v1/namespaces/ns/configmaps/cfg": {"data": {"MODE": "fast"}},
}


def get(path: str) -> dict[str, Any]:
    if path not in OBJECTS:
        raise KubeError("GET", path, 404, {"reason": "NotFound"})
    return OBJECTS[path]


def pod(**container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "work", "emptyDir": {}}],
            "containers": [{"name": "main", "image": "ignored", **container}],
        },
    }


def test_paths_in_arguments_and_env_are_mapped(tmp_path: Path) -> None:
    spec = prepare(
        pod(
            command=["mediaimport-job"],
            args=["--result-file", "/dev/termination-log", "--out=/work/x", "/workshop",
                  "$(MODE)", "$$(MODE)"],
            volumeMounts=[{"name": "tmp", "mountPath": "/tmp"},
                          {"name": "work", "mountPath": "/work"}],
            envFrom=[{"configMapRef": {"name": "cfg"}}],
            env=[{"name": "SCRATCH", "value": "/tmp/scratch"}],
        ),
        tmp_path, get, {"PATH": "/usr/bin"},
    )
    assert spec.argv == [
        "mediaimport-job", "--result-file", str(tmp_path / "termination-log"),
        f"--out={tmp_path}/volumes/work/x", "/workshop", "fast", "$(MODE)",
    ]
    assert spec.env["TMPDIR"] == str(tmp_path / "volumes" / "tmp")
    assert spec.env["SCRATCH"] == str(tmp_path / "volumes" / "tmp" / "scratch")
    assert spec.env["PATH"] == "/usr/bin"
    assert (tmp_path / "volumes" / "work").is_dir()


def test_secret_and_field_refs(tmp_path: Path) -> None:
    spec = prepare(
        pod(command=["x"], env=[
            {"name": "AWS_SECRET_ACCESS_KEY",
             "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                            "optional": True}}},
        ]),
        tmp_path, get, {},
    )
    assert spec.env["AWS_SECRET_ACCESS_KEY"] == "secret"
    assert spec.env["UID"] == "u1"
    assert "OPT" not in spec.env


def test_missing_secret_waits_and_missing_command_fails(tmp_path: Path) -> None:
    missing = {"secretKeyRef": {"name": "nope", "key": "k"}}
    with pytest.raises(PodConfigError, match='secret "nope" not found'):
        prepare(pod(command=["x"], env=[{"name": "A", "valueFrom": missing}]), tmp_path, get, {})
    with pytest.raises(PodStartError, match="set the container's command"):
        prepare(pod(args=["x"]), tmp_path, get, {})


def test_termination_message_rules() -> None:
    assert podstatus.termination_message(b"x" * 5000, b"", policy="File", failed=True) == (
        "x" * 4096
    )
    assert podstatus.termination_message(b"", b"a\nb\n", policy="FallbackToLogsOnError",
                                         failed=True) == "a\nb"
    assert podstatus.termination_message(b"", b"a\n", policy="FallbackToLogsOnError",
                                         failed=False) == ""
    assert podstatus.exit_code(-15) == 143
