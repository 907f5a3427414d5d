"""What an import may write: keys strictly under its own prefix, in the configured bucket
(pure checks, before anything is signed), and the S3 Secret read once per namespace."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast
from urllib.parse import quote

import pytest
from mediaimport_operator.kube import Json
from mediaimport_operator.model import MediaImport
from mediaimport_operator.settings import Settings
from mediaimport_operator.storage import (
    KeyRefused,
    NamespaceSecrets,
    Scope,
    StorageUnavailable,
    content_type_problem,
    credentials_from_secret,
    key_problem,
    signed_headers,
)

PREFIX = "media/user-1/asset-1"


@pytest.mark.parametrize("key", [f"{PREFIX}/clip.mp4", f"{PREFIX}/thumbnail.jpg",
                                 f"{PREFIX}/a/b.mp4", f"{PREFIX}/ünïcode name.mov"])
def test_keys_under_the_prefix_are_allowed(key: str) -> None:
    assert key_problem(PREFIX, key) is None


@pytest.mark.parametrize("key", [
    PREFIX, f"{PREFIX}/", f"{PREFIX}clip.mp4", "media/user-1/asset-2/clip.mp4",
    f"{PREFIX}/../asset-2/clip.mp4", f"{PREFIX}/./clip.mp4", f"{PREFIX}//clip.mp4",
    f"{PREFIX}/clip.mp4/", f"{PREFIX}/clip\n.mp4", f"{PREFIX}/clip\x7f.mp4",
    f"{PREFIX}/clip\u0085.mp4", f"{PREFIX}/a\\..\\b", f"{PREFIX}/" + "x" * 1100,
    "other/" + PREFIX + "/clip.mp4",
])
def test_keys_outside_the_prefix_are_refused(key: str) -> None:
    assert key_problem(PREFIX, key) is not None


@pytest.mark.parametrize("prefix", ["", "media/../x", "media//x", "media/\x00"])
def test_a_prefix_that_cannot_scope_refuses_everything(prefix: str) -> None:
    assert key_problem(prefix, f"{prefix}/clip.mp4") is not None


def test_the_scope_follows_the_key_prefix_template_and_bucket() -> None:
    mi = MediaImport.from_body({
        "metadata": {"namespace": "media", "name": "sunset", "uid": "uid-1"},
        "spec": {"url": "https://example.com/a.mp4", "userId": "user-1"},
    })
    scope = Scope.of(mi, Settings(bucket="assets", key_prefix_template="v/{user_id}/{asset_id}/"))
    assert scope == Scope(namespace="media", bucket="assets", prefix="v/user-1/uid-1")
    scope.require("v/user-1/uid-1/a.mp4")
    with pytest.raises(KeyRefused):
        scope.require("v/user-1/uid-1/a.mp4", bucket="other")
    with pytest.raises(KeyRefused):
        scope.require("v/user-2/uid-1/a.mp4")


@pytest.mark.parametrize(("content_type", "ok"), [
    ("video/mp4", True), ('video/mp4; codecs="avc1"', True), ("", False),
    (" video/mp4", False), ("video/mp4\r\nX-Evil: 1", False), ("vidéo/mp4", False),
])
def test_content_types_are_printable_ascii(content_type: str, ok: bool) -> None:
    assert (content_type_problem(content_type) is None) is ok


def test_the_headers_a_url_signs_are_returned_with_their_values() -> None:
    url = ("http://s3/b/k?X-Amz-SignedHeaders=" + quote("content-length;content-type;host;"
           "x-amz-meta-sha256") + "&X-Amz-Signature=abc")
    values = {"content-type": "video/mp4", "content-length": "5", "x-amz-meta-sha256": "ab"}
    assert signed_headers(url, values) == {"Content-Type": "video/mp4", "Content-Length": "5",
                                           "x-amz-meta-sha256": "ab"}
    with pytest.raises(StorageUnavailable):
        signed_headers(url.replace("host", "host%3Bx-amz-acl"), values)


def secret(version: str, **data: str) -> Json:
    return {"metadata": {"name": "mediaimport-s3", "resourceVersion": version},
            "data": {key: base64.b64encode(value.encode()).decode()
                     for key, value in data.items()}}


KEYS = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}


def test_a_secret_gives_credentials_region_and_endpoint() -> None:
    creds = credentials_from_secret(
        secret("1", **KEYS, AWS_REGION="eu-west-1", AWS_ENDPOINT_URL_S3="http://s3:9000",
               AWS_SESSION_TOKEN="tok"))
    assert (creds.access_key_id, creds.secret_access_key, creds.region, creds.endpoint_url,
            creds.session_token) == ("id", "secret", "eu-west-1", "http://s3:9000", "tok")
    assert "secret" not in repr(creds) and "tok" not in repr(creds)
    assert credentials_from_secret(secret("1", **KEYS), default_region="r").region == "r"
    with pytest.raises(StorageUnavailable, match="lacks"):
        credentials_from_secret(secret("1", AWS_ACCESS_KEY_ID="id"))


class SecretsApi:
    """The one API call NamespaceSecrets makes, answered from a dict, counted."""

    def __init__(self) -> None:
        self.secrets: dict[str, Json] = {}
        self.reads = 0

    async def get(self, path: str) -> Json | None:
        self.reads += 1
        return self.secrets.get(path.split("/")[4])


def test_the_secret_is_read_again_after_its_ttl_and_a_client_built_only_on_change() -> None:
    api = SecretsApi()
    api.secrets["media"] = secret("1", **KEYS)
    clock = [0.0]
    source = NamespaceSecrets(cast(Any, api), "mediaimport-s3", ttl=60.0,
                              clock=lambda: clock[0])

    async def scenario() -> None:
        first = await source.client("media")
        assert await source.client("media") is first and api.reads == 1
        clock[0] = 61.0
        assert await source.client("media") is first and api.reads == 2  # same version
        api.secrets["media"] = secret("2", **{**KEYS, "AWS_SECRET_ACCESS_KEY": "rotated"})
        clock[0] = 122.0
        rotated = await source.client("media")
        assert rotated is not first and api.reads == 3
        with pytest.raises(StorageUnavailable, match="does not exist in namespace other"):
            await source.client("other")

    asyncio.run(scenario())
