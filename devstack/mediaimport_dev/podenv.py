"""Turn a pod's first container into a local process: argv, environment, directories.

This is the node agent's stand-in for a container runtime, so its limits are
deliberate and documented (docs/local-stack.md):
- the image is ignored; `command` (+ `args`) must name a program installed on
  this machine;
- `emptyDir` volumes are directories under the pod's directory, `configMap` and
  `secret` volumes are written there as files, `hostPath` is the path itself;
  other volume kinds become empty directories;
- container paths cannot exist on the host, so the agent rewrites them: every
  argument (but not the program) and environment value that starts with a
  volume's `mountPath` or the container's `terminationMessagePath` (also after
  `--flag=`) gets the local path instead, and `TMPDIR` points at the volume mounted on /tmp.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediaimport_dev.kube import Json, KubeError

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# A path inside the container, never touched on this machine: only compared with mountPaths.
CONTAINER_TMP = "/tmp"  # noqa: S108
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class PodConfigError(Exception):
    """The container cannot start yet (the kubelet's CreateContainerConfigError)."""


class PodStartError(Exception):
    """The container can never start as specified (the kubelet's StartError)."""


@dataclass
class LocalProcess:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_message_file: Path
    log_file: Path
    # container path -> local path, longest first (what was rewritten)
    mounts: list[tuple[str, str]]


Getter = Callable[[str], Json]


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, value)


def _rewrite(value: str, mounts: list[tuple[str, str]]) -> str:
    def at_start(text: str) -> str | None:
        for container_path, local in mounts:
            if text == container_path or text.startswith(container_path.rstrip("/") + "/"):
                return local + text[len(container_path) :]
        return None

    replaced = at_start(value)
    if replaced is not None:
        return replaced
    if value.startswith("-") and "=" in value:
        flag, _, rest = value.partition("=")
        replaced = at_start(rest)
        if replaced is not None:
            return f"{flag}={replaced}"
    return value


def _object_data(obj: Json, *, secret: bool) -> dict[str, str]:
    if secret:
        return {
            k: base64.b64decode(v).decode("utf-8", errors="replace")
            for k, v in (obj.get("data") or {}).items()
        }
    return dict(obj.get("data") or {})


class _Sources:
    """Secrets and ConfigMaps of one namespace, each read once per pod start."""

    def __init__(self, get: Getter, namespace: str) -> None:
        self._get = get
        self._namespace = namespace
        self._cache: dict[tuple[str, str], dict[str, str] | None] = {}

    def data(self, kind: str, name: str, *, optional: bool) -> dict[str, str] | None:
        key = (kind, name)
        if key not in self._cache:
            plural = "secrets" if kind == "Secret" else "configmaps"
            try:
                obj = self._get(f"/api/v1/namespaces/{self._namespace}/{plural}/{name}")
                self._cache[key] = _object_data(obj, secret=kind == "Secret")
            except KubeError as error:
                if error.status != 404:
                    raise
                self._cache[key] = None
        found = self._cache[key]
        if found is None and not optional:
            raise PodConfigError(f'{kind.lower()} "{name}" not found')
        return found

    def key(self, kind: str, ref: Json) -> str | None:
        optional = bool(ref.get("optional"))
        data = self.data(kind, ref["name"], optional=optional)
        if data is None:
            return None
        if ref["key"] not in data:
            if optional:
                return None
            raise PodConfigError(f'couldn\'t find key {ref["key"]} in {kind} "{ref["name"]}"')
        return data[ref["key"]]


def _field(pod: Json, path: str) -> str:
    meta = pod["metadata"]
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.hostIP": "127.0.0.1",
        "status.podIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise PodStartError(f"fieldRef {path} is not supported by the node agent")


def _volumes(pod: Json, pod_dir: Path, sources: _Sources) -> dict[str, Path]:
    local: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if "hostPath" in volume:
            local[name] = Path(volume["hostPath"]["path"])
            continue
        directory = pod_dir / "volumes" / name
        directory.mkdir(parents=True, exist_ok=True)
        for kind, field in (("ConfigMap", "configMap"), ("Secret", "secret")):
            if field not in volume:
                continue
            ref = volume[field]
            name_ = ref.get("name") or ref.get("secretName", "")
            data = sources.data(kind, name_, optional=bool(ref.get("optional"))) or {}
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] in data:
                    target = directory / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[item["key"]])
        local[name] = directory
    return local


def _mounts(container: Json, volume_dirs: dict[str, Path], message_file: Path) -> (
    list[tuple[str, str]]
):
    """Container path -> local path, longest container path first."""
    termination_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    mounts = [(termination_path, str(message_file))]
    for mount in container.get("volumeMounts") or []:
        if mount["mountPath"] != "/" and mount["name"] in volume_dirs:
            local = volume_dirs[mount["name"]]
            if mount.get("subPath"):
                local = local / mount["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            mounts.append((mount["mountPath"].rstrip("/"), str(local)))
    mounts.sort(key=lambda m: len(m[0]), reverse=True)
    return mounts


def _env(pod: Json, container: Json, sources: _Sources, env: dict[str, str],
         mounts: list[tuple[str, str]]) -> None:
    """Add the container's envFrom and env to env (env wins, as in the kubelet)."""
    for source in container.get("envFrom") or []:
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field in source:
                ref = source[field]
                data = sources.data(kind, ref["name"], optional=bool(ref.get("optional"))) or {}
                env.update({source.get("prefix", "") + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        value: str | None
        if "valueFrom" not in var:
            value = _expand(var.get("value", ""), env)
        else:
            ref = var["valueFrom"]
            if "secretKeyRef" in ref:
                value = sources.key("Secret", ref["secretKeyRef"])
            elif "configMapKeyRef" in ref:
                value = sources.key("ConfigMap", ref["configMapKeyRef"])
            elif "fieldRef" in ref:
                value = _field(pod, ref["fieldRef"]["fieldPath"])
            else:
                raise PodStartError(f"env {var['name']}: {next(iter(ref))} is not supported")
        if value is not None:
            env[var["name"]] = _rewrite(value, mounts)


def prepare(pod: Json, pod_dir: Path, get: Getter, base_env: Mapping[str, str]) -> LocalProcess:
    """Everything needed to start the pod's first container on this machine."""
    container = pod["spec"]["containers"][0]
    if not container.get("command"):
        raise PodStartError(
            "the node agent runs `command` as a local program and cannot use an image's "
            "entrypoint: set the container's command"
        )
    pod_dir.mkdir(parents=True, exist_ok=True)
    sources = _Sources(get, pod["metadata"]["namespace"])
    message_file = pod_dir / "termination-log"
    message_file.write_bytes(b"")
    mounts = _mounts(container, _volumes(pod, pod_dir, sources), message_file)

    tmp = next((local for path, local in mounts if path == CONTAINER_TMP), None)
    if tmp is None:
        tmp = str(pod_dir / "tmp")
        Path(tmp).mkdir(exist_ok=True)
    env: dict[str, str] = dict(base_env)
    env.update({"HOME": str(pod_dir), "HOSTNAME": pod["metadata"]["name"], "TMPDIR": tmp})
    _env(pod, container, sources, env, mounts)

    # The program itself is a path on this machine (see above), never a
    # container path: a venv under /tmp must not be mistaken for the /tmp volume.
    program, *rest = [_expand(a, env) for a in [*container["command"],
                                                 *(container.get("args") or [])]]
    argv = [program, *(_rewrite(a, mounts) for a in rest)]
    cwd = pod_dir
    if container.get("workingDir"):
        candidate = Path(_rewrite(container["workingDir"], mounts))
        if candidate.is_dir():
            cwd = candidate
    return LocalProcess(argv, env, cwd, message_file, pod_dir / f"{container['name']}.log", mounts)
