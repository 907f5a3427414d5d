"""mediaimport-operator's command line: --help answers without a cluster, every setting is
also a flag (the chart's operator.extraArgs) that wins over the environment, unknown
arguments and bad values are refused before anything starts."""

from __future__ import annotations

import pytest
from mediaimport_operator.main import main, settings_from


def test_help_lists_the_settings_and_exits_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mediaimport-operator")
    assert "MEDIAIMPORT_JOB_IMAGE: Image of the import Job." in out
    assert "MEDIAIMPORT_NAMESPACES:" in out
    for flag in ("--log-level", "--concurrency", "--job-image", "--lease-duration"):
        assert flag in out


def test_unknown_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--namespace", "x"])  # not an abbreviation of --namespaces
    assert exited.value.code == 2
    assert "unrecognized arguments: --namespace x" in capsys.readouterr().err


def test_a_bad_value_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    assert main(["--concurrency=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mediaimport-operator: invalid settings:")
    assert "concurrency" in err
    assert "greater than or equal to 1" in err


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAIMPORT_LOG_LEVEL", "INFO")
    monkeypatch.setenv("MEDIAIMPORT_CONCURRENCY", "8")
    settings = settings_from(["--log-level=DEBUG", "--job-extra-env", '{"HTTPS_PROXY": "p"}'])
    assert settings.log_level == "DEBUG"
    assert settings.concurrency == 8
    assert settings.job_extra_env == {"HTTPS_PROXY": "p"}
    assert settings_from([]).log_level == "INFO"
