"""The channel's settings: which storage the job uses, and the credential kept out of sight."""

from __future__ import annotations

import pytest
from mediaimport_job import channel_protocol, config, progress
from mediaimport_job.config import ConfigError, parse_settings
from mediaimport_job.reasons import FailureReason

BASE = ["--url", "https://cdn.example/v.mp4", "--bucket", "media", "--key-prefix", "media/u/a"]
URL = "http://10.0.0.5:8081/v1/imports/default/clip-1"
TOKEN = "v1.c2VjcmV0LXRva2VuLWZvci10ZXN0cw"


def test_the_names_are_the_contracts() -> None:
    """config repeats the channel's variable names (the contract loads pydantic)."""
    assert config.CHANNEL_URL_ENV == channel_protocol.CHANNEL_URL_ENV
    assert config.CHANNEL_TOKEN_ENV == channel_protocol.CHANNEL_TOKEN_ENV
    assert config.STORAGE_ENV == channel_protocol.STORAGE_ENV
    assert config.POD_NAME_ENV == channel_protocol.POD_NAME_ENV
    assert config.POD_UID_ENV == channel_protocol.POD_UID_ENV
    assert config.env_name("--channel-url") == channel_protocol.CHANNEL_URL_ENV
    assert config.env_name("--storage") == channel_protocol.STORAGE_ENV
    assert config.env_name("--pod-name") == channel_protocol.POD_NAME_ENV
    assert progress.REPORT_INTERVAL_S == channel_protocol.REPORT_INTERVAL_S
    assert channel_protocol.ProgressPhase.__args__ == progress.PHASES  # type: ignore[attr-defined]
    assert FailureReason.CHANNEL_UNAVAILABLE == channel_protocol.REASON_CHANNEL_UNAVAILABLE
    assert FailureReason.INVALID_RESULT == channel_protocol.REASON_INVALID_RESULT


def test_without_a_channel_the_job_uses_its_credentials_as_before() -> None:
    settings = parse_settings(BASE, {})
    assert settings.storage == "credentials" and settings.channel is None


def test_a_channel_means_brokered_storage_by_default() -> None:
    environ = {
        "MEDIAIMPORT_CHANNEL_URL": URL + "/",
        "MEDIAIMPORT_CHANNEL_TOKEN": TOKEN,
        "MEDIAIMPORT_POD_NAME": "clip-1-abcde",
        "MEDIAIMPORT_ATTEMPT": "5b0c1d2e-uid",
    }
    settings = parse_settings(BASE, environ)
    assert settings.storage == "brokered"
    assert settings.channel is not None
    assert settings.channel.url == URL
    assert settings.channel.token.reveal() == TOKEN
    assert (settings.channel.pod_name, settings.channel.pod_uid) == ("clip-1-abcde", "5b0c1d2e-uid")
    assert settings.channel.budget == config.DEFAULT_CHANNEL_BUDGET
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.channel.token)


def test_credentials_storage_with_a_channel() -> None:
    environ = {"MEDIAIMPORT_CHANNEL_TOKEN": TOKEN, "MEDIAIMPORT_STORAGE": "credentials"}
    settings = parse_settings([*BASE, "--channel-url", URL, "--channel-budget", "7"], environ)
    assert settings.storage == "credentials"
    assert settings.channel is not None and settings.channel.budget == 7


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--storage", "brokered"], {}, "needs the operator's channel"),
        ([], {"MEDIAIMPORT_STORAGE": "brokered"}, "needs the operator's channel"),
        ([], {"MEDIAIMPORT_STORAGE": "keys"}, "brokered or credentials"),
        (["--channel-url", URL], {}, "needs its credential in MEDIAIMPORT_CHANNEL_TOKEN"),
        (["--channel-url", "ftp://x/v1"], {"MEDIAIMPORT_CHANNEL_TOKEN": TOKEN}, "http(s)"),
        (
            ["--channel-url", "http://user:pw@op:8081/v1/imports/a/b"],
            {"MEDIAIMPORT_CHANNEL_TOKEN": TOKEN},
            "must not carry credentials",
        ),
        (
            ["--channel-url", URL],
            {"MEDIAIMPORT_CHANNEL_TOKEN": TOKEN + " \r\nX-Evil: 1"},
            "printable ASCII",
        ),
    ],
)
def test_channel_settings_are_checked(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings([*BASE, *argv], environ)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_the_credential_is_not_a_flag() -> None:
    """A flag would put it in the pod's command line (/proc/PID/cmdline, ps)."""
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        parse_settings([*BASE, "--channel-token", "x"], {})
    assert "CHANNEL_TOKEN" not in "".join(
        action.dest.upper() for action in config.build_parser({})._actions
    )


@pytest.mark.parametrize(("value", "interval"), [("1", 1.0), ("5", 5.0), ("0", 0.0)])
def test_progress_reports_are_a_second_apart_at_most_often_or_off(
    value: str, interval: float
) -> None:
    environ = {channel_protocol.CHANNEL_TOKEN_ENV: "v1.1.2.mac"}
    settings = parse_settings([*BASE, "--channel-url", URL, "--progress-interval", value],
                              environ)
    assert settings.channel is not None
    assert settings.channel.progress_interval == interval
    with pytest.raises(ConfigError, match="at least 1 second"):
        parse_settings([*BASE, "--channel-url", URL, "--progress-interval", "0.5"], environ)
