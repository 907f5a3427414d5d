"""`mediaimport-dev demo`: import a locally made sample video, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from .binaries import cache_root
from .s3server import S3Server
from .samples import make_sample_video, serve_directory

DEMO_BUCKET = "mediaimport"


def run_demo() -> int:
    """Run ``mediaimport-job`` against a sample video served on loopback into a local S3."""
    sample = make_sample_video(cache_root() / "samples")
    with tempfile.TemporaryDirectory(prefix="mediaimport-demo-") as scratch:
        workdir = Path(scratch)
        with S3Server(workdir / "s3") as s3, serve_directory(sample.parent) as origin:
            s3.create_bucket(DEMO_BUCKET)
            key_prefix = f"media/demo-user/{uuid.uuid4()}"
            result_file = workdir / "result.json"
            print(f"importing {origin}/{sample.name} into s3://{DEMO_BUCKET}/{key_prefix}/")
            completed = subprocess.run(
                [
                    "mediaimport-job",
                    "--url", f"{origin}/{sample.name}",
                    "--bucket", DEMO_BUCKET,
                    "--key-prefix", key_prefix,
                    "--allow-network", "127.0.0.2/32",
                    "--result-file", str(result_file),
                ],
                env={**os.environ, **s3.env(), "TMPDIR": str(workdir)},
                check=False,
            )
            print(f"mediaimport-job exited with {completed.returncode}")
            if result_file.exists():
                print(json.dumps(json.loads(result_file.read_text()), indent=2))
            listing = s3.client().list_objects_v2(Bucket=DEMO_BUCKET, Prefix=key_prefix)
            for item in listing.get("Contents", []):
                head = s3.client().head_object(Bucket=DEMO_BUCKET, Key=item["Key"])
                print(f"  s3://{DEMO_BUCKET}/{item['Key']}  {item['Size']} bytes  "
                      f"{head['ContentType']}  sha256={head['Metadata'].get('sha256', '-')}")
            return completed.returncode


if __name__ == "__main__":
    sys.exit(run_demo())
