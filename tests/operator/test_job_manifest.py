"""MediaImport → Job manifest, without a cluster."""

from __future__ import annotations

import json
import re

import pytest
from mediaimport_operator.jobs import ChannelGrant, build_job, job_args, job_name, key_prefix
from mediaimport_operator.model import MediaImport
from mediaimport_operator.settings import Settings
from operator_factories import ASSET, UID, mi_body

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.fixture
def settings() -> Settings:
    return Settings(
        bucket="media-bucket",
        s3_secret_name="s3-creds",
        job_image="registry.local/mediaimport-job:1",
        allowed_networks=["10.1.0.0/16"],
    )


def test_job_name_is_deterministic_bounded_and_uid_dependent() -> None:
    mi = MediaImport.from_body(mi_body("a" * 63))
    name = job_name(mi)
    assert name == job_name(MediaImport.from_body(mi_body("a" * 63)))
    assert len(name) <= 63 and DNS_LABEL.match(name)
    other = MediaImport.from_body(mi_body("a" * 63, uid="11111111-2222-3333-4444-555555555555"))
    assert job_name(other) != name
    assert job_name(MediaImport.from_body(mi_body("sunset"))).startswith("mi-sunset-")


def test_job_name_never_ends_in_a_separator() -> None:
    mi = MediaImport.from_body(mi_body("x" * 48 + "-" + "y" * 14))
    assert DNS_LABEL.match(job_name(mi))


def test_job_manifest_shape(settings: Settings) -> None:
    mi = MediaImport.from_body(mi_body(spec={"type": "image", "assetId": ASSET}))
    grant = ChannelGrant("http://10.96.0.9:8081/v1/imports/media/sunset", "v1.1.9.mac")
    job = build_job(mi, settings, grant)
    meta, spec = job["metadata"], job["spec"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "mediaimport.dev/v1alpha1",
            "kind": "MediaImport",
            "name": "sunset",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"] == {
        "app.kubernetes.io/name": "mediaimport",
        "app.kubernetes.io/instance": "sunset",
        "app.kubernetes.io/component": "import-job",
        "app.kubernetes.io/managed-by": "mediaimport-operator",
        "mediaimport.dev/import-name": "sunset",
        "mediaimport.dev/import-uid": UID,
    }
    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 600  # image
    assert "ttlSecondsAfterFinished" not in spec  # set once the result is recorded
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "import", "operator": "In", "values": [2]},
    }
    assert rules[1]["action"] == "Ignore"
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"] == meta["labels"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == "registry.local/mediaimport-job:1"
    assert container["command"] == ["mediaimport-job"]
    # Brokered (the default): no S3 credential in the pod, only its import's channel.
    assert "envFrom" not in container
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}
    assert not [name for name in env if name.startswith("AWS_")]
    assert env["MEDIAIMPORT_CHANNEL_URL"] == "http://10.96.0.9:8081/v1/imports/media/sunset"
    assert env["MEDIAIMPORT_CHANNEL_TOKEN"] == "v1.1.9.mac"
    assert env["MEDIAIMPORT_STORAGE"] == "brokered"
    assert env["MEDIAIMPORT_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["MEDIAIMPORT_ATTEMPT"] == {"fieldRef": {"fieldPath": "metadata.uid"}}
    assert "v1.1.9.mac" not in json.dumps(container["args"])
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["resources"]["requests"]["cpu"] == "250m"
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    # max_bytes (10 GiB) plus 64 MiB for the thumbnail
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "10304Mi"}}]
    assert meta["annotations"]["mediaimport.dev/asset-id"] == ASSET


@pytest.mark.parametrize(
    ("media_type", "deadline"), [("video", 1800), ("audio", 600), ("image", 600), (None, 1800)]
)
def test_deadline_by_type(settings: Settings, media_type: str | None, deadline: int) -> None:
    spec = {"type": media_type} if media_type else {}
    job = build_job(MediaImport.from_body(mi_body(spec=spec)), settings)
    assert job["spec"]["activeDeadlineSeconds"] == deadline


def test_args_from_spec_and_settings(settings: Settings) -> None:
    mi = MediaImport.from_body(
        mi_body(
            spec={
                "type": "video",
                "name": "clip.mp4",
                "sha256": "AB" * 32,
                "thumbnail": {"width": 640, "at": 1.5},
            }
        )
    )
    args = job_args(mi, settings)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--url"] == "https://replicate.delivery/pbxt/abc/out.mp4?token=secret"
    assert pairs["--bucket"] == "media-bucket"
    assert pairs["--key-prefix"] == f"media/user-1/{UID}"
    assert pairs["--type"] == "video"
    assert pairs["--name"] == "clip.mp4"
    assert pairs["--sha256"] == "ab" * 32  # normalised to lowercase
    assert pairs["--thumbnail-width"] == "640"
    assert pairs["--thumbnail-at"] == "1.5"
    assert pairs["--allow-network"] == "10.1.0.0/16"
    assert pairs["--result-file"] == "/dev/termination-log"
    assert pairs["--max-bytes"] == str(10 * 1024**3)
    assert pairs["--tmp-limit"] == str(10304 * 1024**2)  # the /tmp sizeLimit in bytes
    assert pairs["--grace-period"] == "60"  # the pod's terminationGracePeriodSeconds


def test_asset_id_from_spec_goes_into_the_key(settings: Settings) -> None:
    mi = MediaImport.from_body(mi_body(spec={"assetId": ASSET}))
    args = job_args(mi, settings)
    assert args[args.index("--key-prefix") + 1] == f"media/user-1/{ASSET}"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAIMPORT_NAMESPACES", "a, b")
    monkeypatch.setenv("MEDIAIMPORT_ALLOWED_NETWORKS", "127.0.0.2/32,10.0.0.1")
    monkeypatch.setenv("MEDIAIMPORT_BACKOFF_LIMIT", "5")
    monkeypatch.setenv("MEDIAIMPORT_DEADLINE_VIDEO", "7")
    loaded = Settings()
    assert loaded.namespaces == ["a", "b"]
    assert loaded.allowed_networks == ["127.0.0.2/32", "10.0.0.1/32"]
    assert loaded.backoff_limit == 5
    assert loaded.deadline_for("video") == 7
    assert loaded.deadline_for(None) == 7


def test_settings_refuse_a_bad_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAIMPORT_ALLOWED_NETWORKS", "not-a-network")
    with pytest.raises(ValueError, match="does not appear to be"):
        Settings()


def test_ephemeral_storage_request_is_what_the_import_may_write(settings: Settings) -> None:
    """The scheduler must reserve what /tmp may hold, or nodes over-pack and evict."""
    for configured in ({}, {"tmp_size_limit": "40Mi"}, {"max_bytes": 1024**3}):
        tuned = settings.model_copy(update=configured)
        pod = build_job(MediaImport.from_body(mi_body()), tuned)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        size_limit = pod["volumes"][0]["emptyDir"]["sizeLimit"]
        assert container["resources"]["requests"]["ephemeral-storage"] == size_limit
    assert size_limit == "1088Mi"  # 1 GiB + 64 MiB


def test_pod_has_a_termination_grace_period(settings: Settings) -> None:
    pod = build_job(MediaImport.from_body(mi_body()), settings)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60
    tuned = settings.model_copy(update={"job_termination_grace_period_seconds": 120})
    pod = build_job(MediaImport.from_body(mi_body()), tuned)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120


def test_pod_placement_and_metadata_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    tolerations = [{"key": "media", "operator": "Exists", "effect": "NoSchedule"}]
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}
    monkeypatch.setenv("MEDIAIMPORT_JOB_NODE_SELECTOR", '{"pool": "media"}')
    monkeypatch.setenv("MEDIAIMPORT_JOB_TOLERATIONS", json.dumps(tolerations))
    monkeypatch.setenv("MEDIAIMPORT_JOB_AFFINITY", json.dumps(affinity))
    monkeypatch.setenv("MEDIAIMPORT_JOB_PRIORITY_CLASS_NAME", "batch-low")
    monkeypatch.setenv("MEDIAIMPORT_JOB_IMAGE_PULL_SECRETS", "regcred, mirror")
    monkeypatch.setenv(
        "MEDIAIMPORT_JOB_POD_LABELS",
        '{"team": "media", "app.kubernetes.io/managed-by": "someone-else"}',
    )
    monkeypatch.setenv("MEDIAIMPORT_JOB_POD_ANNOTATIONS", '{"cost-center": "42"}')
    monkeypatch.setenv("MEDIAIMPORT_JOB_SERVICE_ACCOUNT", "importer")
    job = build_job(MediaImport.from_body(mi_body()), Settings())
    template = job["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"pool": "media"}
    assert pod["tolerations"] == tolerations
    assert pod["affinity"] == affinity
    assert pod["priorityClassName"] == "batch-low"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["serviceAccountName"] == "importer"
    assert pod["automountServiceAccountToken"] is False
    # Extra labels are added; the operator's own (which it selects its Jobs by) win.
    assert template["metadata"]["labels"] == {**job["metadata"]["labels"], "team": "media"}
    assert template["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
        "mediaimport-operator"
    )
    assert template["metadata"]["annotations"] == {"cost-center": "42"}
    # The Job object itself keeps only the operator's labels.
    assert "team" not in job["metadata"]["labels"]


def test_pod_placement_fields_are_absent_by_default(settings: Settings) -> None:
    job = build_job(MediaImport.from_body(mi_body()), settings)
    pod = job["spec"]["template"]["spec"]
    for absent in ("nodeSelector", "tolerations", "affinity", "priorityClassName",
                   "imagePullSecrets", "serviceAccountName"):
        assert absent not in pod
    assert "annotations" not in job["spec"]["template"]["metadata"]


def test_resources_are_laid_over_the_defaults_and_null_removes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIAIMPORT_MEMORY_LIMIT", "2Gi")  # the older setting still counts
    monkeypatch.setenv(
        "MEDIAIMPORT_JOB_RESOURCES",
        json.dumps({
            "requests": {"cpu": "1", "nvidia.com/gpu": "1"},
            "limits": {"cpu": None, "nvidia.com/gpu": "1", "ephemeral-storage": "12Gi"},
        }),
    )
    job = build_job(MediaImport.from_body(mi_body()), Settings())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "256Mi", "ephemeral-storage": "10304Mi",
                     "nvidia.com/gpu": "1"},
        "limits": {"memory": "2Gi", "nvidia.com/gpu": "1", "ephemeral-storage": "12Gi"},
    }


def test_resources_with_every_limit_removed_leave_no_limits_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIAIMPORT_JOB_RESOURCES",
                       '{"limits": {"cpu": null, "memory": null}}')
    job = build_job(MediaImport.from_body(mi_body()), Settings())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert set(container["resources"]) == {"requests"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MEDIAIMPORT_JOB_RESOURCES", '{"request": {"cpu": "1"}}', "not one of requests"),
        ("MEDIAIMPORT_JOB_RESOURCES", '{"limits": {"cpu": "lots"}}', "lots"),
        ("MEDIAIMPORT_JOB_TOLERATIONS", '{"key": "x"}', "list"),
        ("MEDIAIMPORT_TMP_SIZE_LIMIT", "10Mi", "no room"),
        ("MEDIAIMPORT_TMP_SIZE_LIMIT", "huge", "huge"),
        ("MEDIAIMPORT_JOB_TERMINATION_GRACE_PERIOD_SECONDS", "3", "greater than or equal"),
    ],
)
def test_settings_refuse_bad_pod_settings(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        Settings()


def test_empty_s3_secret_name_means_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials from the service account (IRSA, Workload Identity): no envFrom at all."""
    monkeypatch.setenv("MEDIAIMPORT_S3_SECRET_NAME", "")
    job = build_job(MediaImport.from_body(mi_body()), Settings())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in container


def test_credentials_mode_gives_the_pod_the_secret_and_still_the_channel(
    settings: Settings,
) -> None:
    tuned = settings.model_copy(update={"storage_access": "credentials"})
    grant = ChannelGrant("http://10.96.0.9:8081/v1/imports/media/sunset", "v1.1.9.mac")
    (container,) = build_job(MediaImport.from_body(mi_body()), tuned, grant)["spec"][
        "template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MEDIAIMPORT_STORAGE"] == "credentials"
    assert env["MEDIAIMPORT_CHANNEL_URL"].endswith("/v1/imports/media/sunset")


def test_imports_of_namespaces_no_api_serves_never_write_among_its_users_media() -> None:
    served = Settings(served_namespaces=["media"])
    mine = MediaImport.from_body(mi_body(spec={"userId": "alice", "assetId": ASSET}))
    assert mine.ref.namespace == "media"
    assert key_prefix(mine, served) == f"media/alice/{ASSET}"
    body = mi_body(spec={"userId": "alice", "assetId": ASSET})
    body["metadata"]["namespace"] = "team-b"
    theirs = MediaImport.from_body(body)
    assert key_prefix(theirs, served) == f"namespaces/team-b/media/alice/{ASSET}"
    args = job_args(theirs, served)
    assert args[args.index("--key-prefix") + 1] == f"namespaces/team-b/media/alice/{ASSET}"
    # No API named: every namespace keeps the layout.
    assert key_prefix(theirs, Settings()) == f"media/alice/{ASSET}"
