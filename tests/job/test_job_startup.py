"""What the job loads before its first request, and the part reader behind UploadPart."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mediaimport_job import reasons, result
from mediaimport_job.errors import JobError
from mediaimport_job.upload import FileSlice

HEAVY = ("boto3", "botocore", "s3transfer", "pydantic", "pydantic_core")


def test_the_download_path_imports_neither_boto3_nor_pydantic() -> None:
    """boto3 and pydantic cost 0.3 s of start-up: they load on the S3 client's thread."""
    code = (
        "import sys, mediaimport_job.cli\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_result_still_exports_the_contract() -> None:
    assert result.FailureReason is reasons.FailureReason
    assert result.ExitCode is reasons.ExitCode
    for name in ("ReadyResult", "FailedResult", "ErrorInfo", "MediaInfo", "parse", "render"):
        assert hasattr(result, name)
    assert result.TERMINATION_MESSAGE_LIMIT == 4096


@pytest.fixture
def data_fd(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = bytes(range(256)) * 64  # 16 KiB
    path = tmp_path / "data"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def test_file_slice_reads_its_range_and_rewinds(data_fd: tuple[int, bytes]) -> None:
    fd, data = data_fd
    part = FileSlice(fd, 1000, 5000)
    assert len(part) == 5000 and part.seekable() and part.readable()
    first = part.read(1234)
    assert first == data[1000:2234]
    assert part.tell() == 1234
    assert part.read() == data[2234:6000]
    assert part.read(10) == b""
    assert part.seek(0) == 0
    assert part.read() == data[1000:6000]  # a retry re-reads the same bytes
    assert part.seek(-10, io.SEEK_END) == 4990
    assert part.read() == data[5990:6000]
    part.seek(100)
    assert part.seek(50, io.SEEK_CUR) == 150
    buffer = bytearray(64)
    assert part.readinto(buffer) == 64 and bytes(buffer) == data[1150:1214]
    with pytest.raises(ValueError, match="negative"):
        part.seek(-1)


def test_file_slice_past_the_end_of_the_file_is_an_error(data_fd: tuple[int, bytes]) -> None:
    fd, data = data_fd
    part = FileSlice(fd, len(data) - 100, 500, "part 7")
    assert part.read(100) == data[-100:]
    with pytest.raises(JobError, match="part 7: the file ended 400 bytes early"):
        part.read(100)
