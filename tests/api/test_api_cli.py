"""mediaimport-api's command line: --help without any service, settings as flags, unknown
arguments and bad values refused before anything starts."""

from __future__ import annotations

import pytest
from mediaimport_api.main import main


def test_help_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mediaimport-api")
    for variable in ("MEDIAIMPORT_API_NAMESPACE", "MEDIAIMPORT_API_TOKENS_FILE",
                     "MEDIAIMPORT_API_WEBHOOK_SECRET", "MEDIAIMPORT_API_CONTEXT_SIGNING_KEY",
                     "MEDIAIMPORT_API_ALLOWED_NETWORKS", "MEDIAIMPORT_API_PUBLIC_BASE_URL",
                     "MEDIAIMPORT_API_DATABASE_URL", "MEDIAIMPORT_API_BUCKET",
                     "MEDIAIMPORT_API_S3_PUBLIC_ENDPOINT", "MEDIAIMPORT_API_IMAGE_WAIT_SECONDS",
                     "MEDIAIMPORT_API_HOST", "MEDIAIMPORT_API_PORT", "MEDIAIMPORT_API_LOG_LEVEL",
                     "MEDIAIMPORT_API_LOG_FORMAT"):
        assert variable in out
    assert "--public-base-url" in out and "--image-wait-seconds" in out


def test_unknown_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--workers", "4"])
    assert exited.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argument", "field"),
    [("--webhook-secret=not-whsec", "webhook_secret"),
     ("--webhook-secret=whsec_not-base64!", "webhook_secret"), ("--context-signing-key=short",
                                                        "context_signing_key"),
     ("--allowed-networks=10.0.0.0/33", "allowed_networks"), ("--image-wait-seconds=61",
                                                              "image_wait_seconds"),
     ("--public-base-url=ftp://x", "public_base_url")],
)
def test_bad_values_are_refused(capsys: pytest.CaptureFixture[str], argument: str,
                                field: str) -> None:
    assert main([argument]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mediaimport-api: invalid settings:") and field in err


def test_the_database_is_required(capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIAIMPORT_API_DATABASE_URL", raising=False)
    assert main([]) == 2
    assert "MEDIAIMPORT_API_DATABASE_URL (or --database-url) is required" in (
        capsys.readouterr().err)
