"""MediaImport → batch/v1 Job manifest (pure: no API calls, no kopf)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from mediaimport_job.channel_protocol import (
    CHANNEL_TOKEN_ENV,
    CHANNEL_URL_ENV,
    POD_NAME_ENV,
    POD_UID_ENV,
    STORAGE_ENV,
)

from .model import API_VERSION, KIND, MediaImport
from .settings import Settings

MANAGED_BY = "mediaimport-operator"
LABEL_IMPORT_NAME = "mediaimport.dev/import-name"
LABEL_IMPORT_UID = "mediaimport.dev/import-uid"
ANNOTATION_ASSET_ID = "mediaimport.dev/asset-id"
ANNOTATION_USER_ID = "mediaimport.dev/user-id"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# Set by the Job controller on each pod: the uid of the Job that created it.
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
CONTAINER_NAME = "import"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# The job's exit code for "this can never succeed" (mediaimport_job.result.ExitCode.PERMANENT).
PERMANENT_EXIT_CODE = 2
# A pod's name gets 6 more characters ("-abcde"); labels hold at most 63.
MAX_JOB_NAME = 63
_HASH_LENGTH = 10


@dataclass(frozen=True)
class ChannelGrant:
    """Where an import's pod reaches its channel, and its credential for that import only."""

    url: str
    token: str = field(repr=False)


def job_name(mi: MediaImport) -> str:
    """Deterministic per object: the same MediaImport always maps to the same Job.

    The uid is part of the hash, so a MediaImport deleted and created again under
    the same name never adopts its predecessor's Job (which may still be collected).
    """
    digest = hashlib.sha256(
        f"{mi.ref.namespace}/{mi.ref.name}/{mi.ref.uid}".encode()
    ).hexdigest()[:_HASH_LENGTH]
    room = MAX_JOB_NAME - len("mi-") - 1 - _HASH_LENGTH
    stem = mi.ref.name[:room].rstrip("-.")
    return f"mi-{stem}-{digest}" if stem else f"mi-{digest}"


def key_prefix(mi: MediaImport, settings: Settings) -> str:
    """Where an import's objects go: the template's layout for the namespaces an API serves
    (and for all when none is named), under ``namespaces/{namespace}/`` for the others — an
    import from another team's namespace never writes among an API user's media."""
    prefix = settings.key_prefix_template.format(user_id=mi.spec.user_id, asset_id=mi.asset_id)
    served = settings.served_namespaces
    if served is None or mi.ref.namespace in served:
        return prefix
    return f"namespaces/{mi.ref.namespace}/{prefix}"


def labels(mi: MediaImport) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "mediaimport",
        "app.kubernetes.io/instance": mi.ref.name,
        "app.kubernetes.io/component": "import-job",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_IMPORT_NAME: mi.ref.name,
        LABEL_IMPORT_UID: mi.ref.uid,
    }


def owner_reference(mi: MediaImport) -> dict[str, Any]:
    # controller + blockOwnerDeletion: a foreground delete of the MediaImport
    # waits for the Job (and, through the Job, its pods) to be gone.
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": mi.ref.name,
        "uid": mi.ref.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def job_args(mi: MediaImport, settings: Settings) -> list[str]:
    spec = mi.spec
    args = [
        "--url", spec.url,
        "--bucket", settings.bucket,
        "--key-prefix", key_prefix(mi, settings),
        "--thumbnail-width", str(spec.thumbnail.width),
        "--thumbnail-at", _number(spec.thumbnail.at),
        "--max-bytes", str(settings.max_bytes),
        # What the /tmp volume holds: a larger file fails as TooLarge instead of
        # filling the volume past its sizeLimit (an eviction, which the Job retries).
        "--tmp-limit", str(settings.tmp_size_bytes),
        # The job ends its cleanup after SIGTERM within the pod's grace period.
        "--grace-period", str(settings.job_termination_grace_period_seconds),
        # Explicit although it is the job's default: runtimes (and the test node
        # agent) map this path, and the result must land exactly there.
        "--result-file", TERMINATION_MESSAGE_PATH,
    ]
    if spec.type:
        args += ["--type", spec.type]
    if spec.name:
        args += ["--name", spec.name]
    if spec.sha256:
        args += ["--sha256", spec.sha256]
    for network in settings.allowed_networks:
        args += ["--allow-network", network]
    return args


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def resources(settings: Settings) -> dict[str, dict[str, str]]:
    """The container's ResourceRequirements: the defaults, then ``job_resources`` laid over
    them (a null value removes an entry). The ephemeral-storage request is what the
    import may write to /tmp, so the scheduler places the pod where that much fits."""
    merged: dict[str, dict[str, str]] = {
        "requests": {
            "cpu": settings.cpu_request,
            "memory": settings.memory_request,
            "ephemeral-storage": settings.tmp_size,
        },
        "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
    }
    for section, entries in settings.job_resources.items():
        target = merged.setdefault(section, {})
        for name, quantity in entries.items():
            if quantity is None:
                target.pop(name, None)
            else:
                target[name] = quantity
    return {section: entries for section, entries in merged.items() if entries}


def _pod_metadata(mi: MediaImport, settings: Settings) -> dict[str, Any]:
    # The operator's labels win: it finds its pods and Jobs by them.
    metadata: dict[str, Any] = {"labels": {**settings.job_pod_labels, **labels(mi)}}
    if settings.job_pod_annotations:
        metadata["annotations"] = dict(settings.job_pod_annotations)
    return metadata


def _scheduling(settings: Settings) -> dict[str, Any]:
    """Where and how import pods are placed: only what the settings give."""
    fields: dict[str, Any] = {
        "nodeSelector": dict(settings.job_node_selector),
        "tolerations": list(settings.job_tolerations),
        "affinity": dict(settings.job_affinity),
        "priorityClassName": settings.job_priority_class_name,
        "imagePullSecrets": [{"name": name} for name in settings.job_image_pull_secrets],
        "serviceAccountName": settings.job_service_account,
    }
    return {key: value for key, value in fields.items() if value}


def _channel_env(settings: Settings, channel: ChannelGrant | None) -> list[dict[str, Any]]:
    """The channel's URL and credential, and what the pod says about itself with its
    result (its name; its uid is MEDIAIMPORT_ATTEMPT). The credential is readable by whoever
    may read the Job, and is worth no more than this one import until its deadline."""
    if channel is None:
        return []
    return [
        {"name": CHANNEL_URL_ENV, "value": channel.url},
        {"name": CHANNEL_TOKEN_ENV, "value": channel.token},
        {"name": STORAGE_ENV, "value": settings.storage_access},
        {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]


def pod_holds_s3_credentials(settings: Settings) -> bool:
    """Whether import pods get the namespace's S3 Secret (credentials mode with a Secret)."""
    return settings.storage_access == "credentials" and bool(settings.s3_secret_name)


def build_job(
    mi: MediaImport, settings: Settings, channel: ChannelGrant | None = None
) -> dict[str, Any]:
    """The Job that imports ``mi``: least privilege, bounded in time, memory and disk.

    Brokered (the default), the pod holds no S3 credential: it writes through presigned
    URLs its channel hands out for its own prefix. With ``storage_access: credentials`` it
    gets the namespace's S3 Secret, or, without one, its service account's identity.
    """
    job_labels = labels(mi)
    env_from = (
        [{"secretRef": {"name": settings.s3_secret_name}}]
        if pod_holds_s3_credentials(settings)
        else []
    )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.job_termination_grace_period_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": settings.job_image,
                "imagePullPolicy": settings.job_image_pull_policy,
                "command": list(settings.job_command),
                "args": job_args(mi, settings),
                **({"envFrom": env_from} if env_from else {}),
                "env": [
                    {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - the emptyDir
                    # Each attempt stamps what it stores, and its cleanup deletes only that.
                    {"name": POD_UID_ENV,
                     "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                    *_channel_env(settings, channel),
                    *({"name": k, "value": v} for k, v in sorted(settings.job_extra_env.items())),
                ],
                "resources": resources(settings),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "privileged": False,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                # The job writes its result document itself; the log tail is only
                # a fallback when it crashed before it could.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size}}],
        **_scheduling(settings),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(mi),
            "namespace": mi.ref.namespace,
            "labels": job_labels,
            "annotations": {
                ANNOTATION_ASSET_ID: mi.asset_id,
                ANNOTATION_USER_ID: mi.spec.user_id,
            },
            "ownerReferences": [owner_reference(mi)],
        },
        "spec": {
            "backoffLimit": settings.backoff_limit,
            "activeDeadlineSeconds": settings.deadline_for(mi.spec.type),
            # No ttlSecondsAfterFinished yet: the result lives in the pod's termination
            # message, so the Job stays until the operator has it in the status (then
            # it sets the TTL: reconcile.Reconciler._release_job).
            "podFailurePolicy": {
                "rules": [
                    # The job exits 2 for what no retry can fix (404, not media, too large).
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER_NAME,
                            "operator": "In",
                            "values": [PERMANENT_EXIT_CODE],
                        },
                    },
                    # Evictions, preemption and node drains are not the import's fault.
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": _pod_metadata(mi, settings),
                "spec": pod_spec,
            },
        },
    }
