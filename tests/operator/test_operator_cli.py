"""`mediaimport-operator --help` answers without a cluster; unknown arguments are refused."""

from __future__ import annotations

import pytest
from mediaimport_operator.main import main


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


def test_unknown_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--namespace", "x"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --namespace x" in capsys.readouterr().err
