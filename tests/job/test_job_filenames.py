"""File-name sanitising: what users and URLs send, what ends up in the S3 key."""

from __future__ import annotations

import pytest
from mediaimport_job import filenames


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("video.mp4", "video.mp4"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", ""),
        ("...", ""),
        (".hidden.mp4", "hidden.mp4"),
        (".bashrc", ""),
        ("a/b\\c.mp4", "a_b_c.mp4"),
        ("bad\x00name\x1f.mp4", "badname.mp4"),
        ("evil\u202egpj.exe", "evilgpj.exe"),  # right-to-left override
        ("  spaced   out  .mp4 ", "spaced out .mp4"),
        ("tab\tand\nnewline.mov", "tabandnewline.mov"),
        ("clip?.mp4", "clip_.mp4"),
        ("thumbnail.jpg", "original-thumbnail.jpg"),
        ("ÉTÉ 🎬.webm", "ÉTÉ 🎬.webm"),
        ("___", ""),
        ("", ""),
    ],
)
def test_sanitize(raw: str, expected: str) -> None:
    assert filenames.sanitize(raw) == expected


def test_long_names_keep_their_extension_and_fit_the_byte_limit() -> None:
    name = filenames.sanitize("é" * 500 + ".webm")
    assert name.endswith(".webm")
    assert len(name.encode()) <= filenames.MAX_NAME_BYTES
    name.encode().decode()  # never cut inside a character


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cdn.example/a/b/out-0.mp4?sig=abc#x", "out-0.mp4"),
        ("https://cdn.example/a/my%20clip%20%C3%A9.mp4", "my clip é.mp4"),
        ("https://cdn.example/a/..%2F..%2Fetc%2Fpasswd", "_.._etc_passwd"),
        ("https://cdn.example/a/%2e%2e", ""),
        ("https://cdn.example/", ""),
        ("https://cdn.example", ""),
        ("https://cdn.example/a/%00%0a.mp4", ""),
        ("https://cdn.example/a/%ff%fe.mp4", ""),
        ("https://cdn.example/a/.mp4", ""),
    ],
)
def test_name_from_url(url: str, expected: str) -> None:
    assert filenames.name_from_url(url) == expected


def test_defaults_and_extensions() -> None:
    assert filenames.default_name("video", "mp4") == "video.mp4"
    assert filenames.default_name(None, None) == "media"
    assert filenames.with_extension("download", "webm") == "download.webm"
    assert filenames.with_extension("clip.mp4", "webm") == "clip.mp4"
    assert filenames.has_extension("a.mp4") and not filenames.has_extension("a.")
