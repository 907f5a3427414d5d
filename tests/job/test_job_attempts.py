"""The cleanup of a failed run deletes only what this run (this pod) wrote: an object a newer
attempt wrote under the same key is left alone (real S3 server, which checks signatures)."""

from __future__ import annotations

from mediaimport_dev.s3server import S3Server
from mediaimport_job import upload
from mediaimport_job.upload import ClientPromise, DirectStorage, Written, put_small


def test_a_failed_run_leaves_another_attempts_object_alone(
    s3_server: S3Server, s3_bucket: str, tmp_path
) -> None:
    client = s3_server.client()
    key = "media/user-1/asset/clip.mp4"
    # This run registered the key before creating it, and was cut short; meanwhile a newer
    # attempt (another pod) stored the object under the same key.
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"newer attempt",
                      Metadata={"attempt": "a-newer-pod"})
    written = Written(DirectStorage(ClientPromise(s3_server.client), s3_bucket))
    written.add(key)
    written.delete_all()
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"newer attempt"


def test_a_failed_run_deletes_what_it_wrote_itself(
    s3_server: S3Server, s3_bucket: str, tmp_path
) -> None:
    client = s3_server.client()
    key = "media/user-1/asset/thumbnail.jpg"
    source = tmp_path / "thumbnail.jpg"
    source.write_bytes(b"ours")
    written = Written(DirectStorage(ClientPromise(s3_server.client), s3_bucket))
    written.add(key)
    put_small(client, s3_bucket, key, source, content_type="image/jpeg", sha256="00" * 32)
    stored = client.head_object(Bucket=s3_bucket, Key=key)
    assert stored["Metadata"]["attempt"] == upload.ATTEMPT
    written.add("media/user-1/asset/never-created.mp4")  # deleting nothing is fine
    written.delete_all()
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
