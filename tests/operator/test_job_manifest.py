"""MediaImport → Job manifest, without a cluster."""

from __future__ import annotations

import re

import pytest
from mediaimport_operator.jobs import build_job, job_args, job_name
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
    job = build_job(mi, settings)
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
    assert spec["ttlSecondsAfterFinished"] == 3600
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
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert container["resources"]["requests"]["cpu"] == "250m"
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}}]
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
