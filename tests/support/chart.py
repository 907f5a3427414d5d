"""The Helm chart rendered by the real helm binary, as lists of Kubernetes objects."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from mediaimport_dev.binaries import binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/mediaimport"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.35.4"
NAMESPACE = "mediaimport-system"
RELEASE = "mediaimport"

Obj = dict[str, Any]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("helm")), *args], capture_output=True, text=True,
                          check=check, timeout=120)


def values_args(values: Iterable[Path | str] = (), sets: Iterable[str] = ()) -> list[str]:
    args: list[str] = []
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render(values: Iterable[Path | str] = (), sets: Iterable[str] = (), *extra: str,
           release: str = RELEASE, namespace: str = NAMESPACE) -> list[Obj]:
    out = helm("template", release, str(CHART), "--namespace", namespace,
               "--kube-version", KUBE_VERSION, *values_args(values, sets), *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def refused(values: Iterable[Path | str] = (), sets: Iterable[str] = ()) -> str:
    """helm's error output for values the chart must refuse (fails when it renders)."""
    result = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION,
                  *values_args(values, sets), check=False)
    assert result.returncode != 0, f"rendered although it should not: {list(sets)}"
    return result.stderr


def only(docs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    names = [d["metadata"]["name"] for d in found]
    assert len(found) == 1, f"{len(found)} {kind} named {name}: {names}"
    return found[0]


def kinds(docs: list[Obj]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(workload: Obj) -> Obj:
    """The one container of a Deployment or a Pod."""
    spec = workload["spec"]
    if workload["kind"] == "Deployment":
        spec = spec["template"]["spec"]
    (first,) = spec["containers"]
    return first


def notes(values: Iterable[Path | str] = ()) -> str:
    """NOTES.txt as helm renders it after an install. `helm install --dry-run` wants a
    reachable cluster, so a copy of the chart renders the same file through `tpl` into a
    ConfigMap-like document instead (same values, same helpers, same context)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "mediaimport"
        shutil.copytree(CHART, copy)
        shutil.copy(copy / "templates/NOTES.txt", copy / "files/notes.txt")
        (copy / "templates/zz-notes.yaml").write_text(
            'notes: {{ tpl (.Files.Get "files/notes.txt") . | toJson }}\n')
        out = helm("template", RELEASE, str(copy), "--namespace", NAMESPACE,
                   "--kube-version", KUBE_VERSION, *values_args(values),
                   "--show-only", "templates/zz-notes.yaml").stdout
    (doc,) = [d for d in yaml.safe_load_all(out) if d]
    return str(doc["notes"])


def env(deployment: Obj) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping for references."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}
