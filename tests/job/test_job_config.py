"""Flags, their environment variables, and validation."""

from __future__ import annotations

import ipaddress

import pytest
from mediaimport_job.config import ConfigError, build_parser, env_name, parse_settings

BASE = ["--url", "https://cdn.example/v.mp4", "--bucket", "media", "--key-prefix", "media/u/a"]


def test_defaults() -> None:
    settings = parse_settings(BASE, {})
    assert settings.thumbnail_width == 320 and settings.thumbnail_at == 0
    assert settings.result_file == "/dev/termination-log"
    assert settings.allow_networks == () and settings.media_type is None


def test_every_flag_has_an_environment_variable() -> None:
    environ = {
        "MEDIAIMPORT_URL": "https://cdn.example/v.mp4",
        "MEDIAIMPORT_BUCKET": "media",
        "MEDIAIMPORT_KEY_PREFIX": "media/u/a/",
        "MEDIAIMPORT_NAME": "clip.mp4",
        "MEDIAIMPORT_TYPE": "video",
        "MEDIAIMPORT_THUMBNAIL_WIDTH": "641",
        "MEDIAIMPORT_THUMBNAIL_AT": "1.5",
        "MEDIAIMPORT_MAX_BYTES": "1000",
        "MEDIAIMPORT_SHA256": "A" * 64,
        "MEDIAIMPORT_RESULT_FILE": "/tmp/r.json",
        "MEDIAIMPORT_ALLOW_NETWORK": "127.0.0.2/32, 10.0.0.0/8",
    }
    settings = parse_settings([], environ)
    assert settings.key_prefix == "media/u/a"
    assert settings.thumbnail_width == 640  # odd widths round down to even
    assert settings.sha256 == "a" * 64 and settings.max_bytes == 1000
    assert settings.allow_networks == (
        ipaddress.ip_network("127.0.0.2/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    # A flag wins over its variable.
    assert parse_settings(["--bucket", "other"], environ).bucket == "other"
    help_text = build_parser({}).format_help()
    for action in ("--url", "--key-prefix", "--allow-network", "--thumbnail-at"):
        assert env_name(action) in help_text


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([], "InvalidArgument"),
        (["--url", "https://x.example/a", "--bucket", "b1b"], "InvalidArgument"),
        ([*BASE, "--thumbnail-width", "abc"], "InvalidArgument"),
        ([*BASE, "--thumbnail-width", "0"], "InvalidArgument"),
        ([*BASE, "--thumbnail-at", "-1"], "InvalidArgument"),
        ([*BASE, "--thumbnail-at", "nan"], "InvalidArgument"),
        ([*BASE, "--max-bytes", "0"], "InvalidArgument"),
        ([*BASE, "--sha256", "xyz"], "InvalidArgument"),
        ([*BASE, "--type", "document"], "InvalidArgument"),
        ([*BASE, "--allow-network", "not-a-cidr"], "InvalidArgument"),
        ([*BASE, "--key-prefix", "media/../other"], "InvalidArgument"),
        ([*BASE, "--key-prefix", "/"], "InvalidArgument"),
        ([*BASE, "--bucket", "Bad_Bucket"], "InvalidArgument"),
        ([*BASE, "--unknown-flag"], "InvalidArgument"),
        ([*BASE, "--url", "ftp://example.com/a.mp4"], "InvalidURL"),
        ([*BASE, "--url", "file:///etc/passwd"], "InvalidURL"),
        ([*BASE, "--url", "https://user:pw@cdn.example/a.mp4"], "InvalidURL"),
        ([*BASE, "--url", "http://127.0.0.2@169.254.169.254/"], "InvalidURL"),
        ([*BASE, "--url", "https:///nohost"], "InvalidURL"),
        ([*BASE, "--url", "https://cdn.example/a b.mp4"], "InvalidURL"),
        ([*BASE, "--url", "https://cdn.example:99999/a.mp4"], "InvalidURL"),
    ],
)
def test_invalid_arguments(argv: list[str], reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(argv, {})
    assert error.value.reason == reason
