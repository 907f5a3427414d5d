"""Where import pods reach the channel, how long their credential lasts, and the status
patch that can never touch a finished import."""

from __future__ import annotations

from typing import Any, cast

import pytest
from mediaimport_operator.channel import (
    ChannelConfigError,
    ChannelServer,
    credential_expiry,
    precondition_failed,
    public_url,
    status_patch,
)
from mediaimport_operator.credentials import CredentialRefused, KeyRing, check, peek_expiry
from mediaimport_operator.kube import ApiError
from mediaimport_operator.model import MediaImport
from mediaimport_operator.settings import Settings

SERVICE = {"spec": {"clusterIP": "10.96.0.20",
                    "ports": [{"name": "http", "port": 8080}, {"name": "channel", "port": 8081}]}}


def test_the_url_setting_wins() -> None:
    settings = Settings(channel_url="http://channel.example:9000/", channel_service="svc")
    assert public_url(settings, port=1234) == "http://channel.example:9000"


def test_the_service_gives_its_cluster_ip_and_channel_port() -> None:
    settings = Settings(channel_service="mediaimport-operator")
    assert public_url(settings, port=1234, service=SERVICE) == "http://10.96.0.20:8081"
    v6 = {"spec": {**SERVICE["spec"], "clusterIP": "fd00::20"}}
    assert public_url(settings, port=1234, service=v6) == "http://[fd00::20]:8081"
    for service in (None, {"spec": {"clusterIP": "None", "ports": SERVICE["spec"]["ports"]}},
                    {"spec": {"clusterIP": "10.96.0.20", "ports": []}}):
        with pytest.raises(ChannelConfigError):
            public_url(settings, port=1234, service=service)


def test_a_concrete_listening_address_is_its_own_url() -> None:
    assert public_url(Settings(channel_host="10.1.2.3"), port=4321) == "http://10.1.2.3:4321"
    for host in ("0.0.0.0", "::", ""):
        with pytest.raises(ChannelConfigError):
            public_url(Settings(channel_host=host), port=4321)


def test_a_credential_lasts_the_deadline_the_grace_period_and_the_margin() -> None:
    settings = Settings(job_termination_grace_period_seconds=60, channel_credential_margin=300)
    assert credential_expiry(settings, deadline_s=1800, now=1_000.7) == 1_000 + 1800 + 60 + 300


def test_the_status_patch_first_tests_that_the_import_is_importing() -> None:
    patch = status_patch("uid-1", "progress", {"summary": "5%"})
    assert patch[0] == {"op": "test", "path": "/status/phase", "value": "Importing"}
    assert {"op": "test", "path": "/metadata/uid", "value": "uid-1"} in patch
    assert patch[-1] == {"op": "add", "path": "/status/progress", "value": {"summary": "5%"}}


def test_a_failed_test_is_told_from_a_schema_refusal() -> None:
    failed_test = ApiError("PATCH", "/x", 422, {"reason": "Invalid", "details": {}})
    schema = ApiError("PATCH", "/x", 422, {"reason": "Invalid", "details": {
        "causes": [{"field": "status.progress.phase"}]}})
    assert precondition_failed(failed_test)
    assert not precondition_failed(schema)
    assert not precondition_failed(ApiError("PATCH", "/x", 500, "boom"))


def test_a_grant_is_the_imports_url_and_a_credential_for_it_alone() -> None:
    settings = Settings(channel_url="http://10.96.0.20:8081", deadline_video=1800,
                        job_termination_grace_period_seconds=60, channel_credential_margin=300)
    ring = KeyRing({"1": b"k" * 32})
    # Minting and resolving a URL make no request: no Kubernetes client or S3 is needed.
    server = ChannelServer(settings, ring=ring, kube=cast(Any, None), storage=cast(Any, None),
                           wall=lambda: 1_000_000.0)
    server._url = public_url(settings, port=0)
    mi = MediaImport.from_body({
        "metadata": {"namespace": "media", "name": "sunset", "uid": "uid-1"},
        "spec": {"url": "https://example.com/a.mp4", "userId": "user-1", "type": "video"},
    })
    grant = server.grant(mi)
    assert grant.url == "http://10.96.0.20:8081/v1/imports/media/sunset"
    assert grant.token not in repr(grant)
    assert peek_expiry(grant.token) == 1_000_000 + 1800 + 60 + 300
    check(ring, grant.token, namespace="media", name="sunset", uid="uid-1", now=1_000_000.0)
    with pytest.raises(CredentialRefused):
        check(ring, grant.token, namespace="media", name="sunset", uid="uid-2", now=1_000_000.0)


def test_no_keys_no_channel() -> None:
    with pytest.raises(ChannelConfigError, match="channel_keys_dir"):
        ChannelServer.from_settings(Settings(channel_keys_dir=None))
