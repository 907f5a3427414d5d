"""The content hashes that decide when an image is rebuilt: they change when an input
of the build changes, and only then."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest
from mediaimport_dev import debian_base, wheelhouse
from mediaimport_dev.imageinputs import IgnoreFile, IgnoreFileError, context_files, dockerfile_key
from mediaimport_dev.images import REPO, evictable

JOB = "job-image/Dockerfile"
OPERATOR = "operator/Dockerfile"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the files the images are built from, plus some they are not."""
    root = tmp_path / "repo"
    for relative in ("pyproject.toml", "README.md"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, root / relative)
    for folder in ("job-image", "operator", "api"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for relative in ("devstack/mediaimport_dev/cli.py", "tests/test_x.py", ".venv/bin/python"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("# not in any image\n")
    return root


def touch(repo: Path, relative: str, text: str = "# changed\n") -> None:
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(text)


def test_job_context_is_what_its_dockerignore_lets_through() -> None:
    files = context_files(REPO, JOB)
    assert {"pyproject.toml", "README.md", "job-image/mediaimport_job/cli.py"} <= set(files)
    allowed = ("job-image/mediaimport_job/", "pyproject.toml", "README.md")
    assert [f for f in files if not f.startswith(allowed)] == []
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


def test_operator_context_has_operator_api_and_the_job_package_only() -> None:
    files = context_files(REPO, OPERATOR)
    assert {"operator/mediaimport_operator/main.py", "api/mediaimport_api/__init__.py",
            "job-image/mediaimport_job/result.py"} <= set(files)
    allowed = ("operator/mediaimport_operator/", "api/", "job-image/mediaimport_job/",
               "pyproject.toml", "README.md")
    assert [f for f in files if not f.startswith(allowed)] == []
    assert "operator/Dockerfile" not in files


def test_key_is_stable_when_nothing_changes(repo: Path) -> None:
    assert dockerfile_key(repo, JOB) == dockerfile_key(repo, JOB)
    assert len(dockerfile_key(repo, JOB)) == 16


@pytest.mark.parametrize(
    ("dockerfile", "changed"),
    [
        (JOB, "job-image/mediaimport_job/cli.py"),
        (JOB, "job-image/Dockerfile"),
        (JOB, "job-image/Dockerfile.dockerignore"),
        (JOB, "pyproject.toml"),
        (JOB, "README.md"),
        (JOB, "job-image/mediaimport_job/new_module.py"),
        (OPERATOR, "operator/mediaimport_operator/reconcile.py"),
        (OPERATOR, "api/mediaimport_api/__init__.py"),
        (OPERATOR, "job-image/mediaimport_job/result.py"),
        (OPERATOR, "operator/Dockerfile"),
    ],
)
def test_key_changes_with_an_input(repo: Path, dockerfile: str, changed: str) -> None:
    before = dockerfile_key(repo, dockerfile)
    touch(repo, changed)
    assert dockerfile_key(repo, dockerfile) != before


@pytest.mark.parametrize(
    ("dockerfile", "changed"),
    [
        (JOB, "operator/mediaimport_operator/reconcile.py"),
        (JOB, "api/mediaimport_api/__init__.py"),
        (JOB, "devstack/mediaimport_dev/cli.py"),
        (JOB, "tests/test_x.py"),
        (JOB, ".venv/bin/python"),
        (JOB, "job-image/mediaimport_job/__pycache__/cli.cpython-311.pyc"),
        (JOB, "operator/Dockerfile"),
        (OPERATOR, "job-image/Dockerfile"),
        (OPERATOR, "devstack/mediaimport_dev/cli.py"),
        (OPERATOR, "operator/mediaimport_operator/__pycache__/main.cpython-311.pyc"),
    ],
)
def test_key_ignores_what_the_build_cannot_see(repo: Path, dockerfile: str, changed: str) -> None:
    before = dockerfile_key(repo, dockerfile)
    touch(repo, changed)
    assert dockerfile_key(repo, dockerfile) == before


def test_key_changes_with_the_executable_bit(repo: Path) -> None:
    before = dockerfile_key(repo, JOB)
    (repo / "job-image/mediaimport_job/cli.py").chmod(0o755)
    assert dockerfile_key(repo, JOB) != before


def test_key_changes_with_a_file_moving(repo: Path) -> None:
    before = dockerfile_key(repo, JOB)
    package = repo / "job-image/mediaimport_job"
    (package / "cli.py").rename(package / "cli2.py")
    assert dockerfile_key(repo, JOB) != before


def test_key_changes_with_what_the_build_uses_from_outside(repo: Path) -> None:
    assert dockerfile_key(repo, JOB, upstream=["base-1", "wheels-1"]) != dockerfile_key(
        repo, JOB, upstream=["base-2", "wheels-1"]
    )


def test_wheelhouse_key_follows_pyproject(repo: Path) -> None:
    before = wheelhouse.wheelhouse_key(repo)
    touch(repo, "job-image/mediaimport_job/cli.py")
    assert wheelhouse.wheelhouse_key(repo) == before
    touch(repo, "pyproject.toml")
    assert wheelhouse.wheelhouse_key(repo) != before


def test_base_key_follows_the_recipe_and_the_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    mirrors = debian_base.Mirrors("http://deb.debian.org/debian", "http://deb.debian.org/debian-security")
    before = debian_base.recipe_key(mirrors)
    assert debian_base.recipe_key(mirrors) == before
    other = debian_base.Mirrors("http://mirror.example/debian", mirrors.security)
    assert debian_base.recipe_key(other) != before
    monkeypatch.setattr(debian_base, "PACKAGES", (*debian_base.PACKAGES, "curl"))
    assert debian_base.recipe_key(mirrors) != before


def test_ignore_file_must_be_an_allow_list() -> None:
    with pytest.raises(IgnoreFileError, match="allow-list"):
        IgnoreFile.parse("**/__pycache__\n")
    with pytest.raises(IgnoreFileError, match="too broad"):
        IgnoreFile.parse("*\n!**/*.py\n")


def test_ignore_file_follows_docker_matching() -> None:
    ignore = IgnoreFile.parse("# comment\n*\n!src/\nsrc/**/*.log\n!src/keep.log\nsrc/secret?\n")
    assert ignore.includes("src/a.py")
    assert ignore.includes("src/deep/er/b.py")
    assert not ignore.includes("src/deep/x.log")
    assert ignore.includes("src/keep.log")
    assert not ignore.includes("src/secret1")
    assert ignore.includes("src/secret12")
    assert not ignore.includes("other/a.py")
    assert not ignore.includes("srcx/a.py")


def test_apt_mirrors_read_deb822_and_one_line_sources(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment: here\nURIs: http://mirror.local/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.local/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    (etc / "sources.list.d" / "other.list").write_text("deb https://example.org/apt stable main\n")
    assert debian_base.apt_mirrors(etc) == debian_base.Mirrors(
        "http://mirror.local/debian", "http://mirror.local/debian-security"
    )
    (etc / "sources.list.d" / "debian.sources").unlink()
    (etc / "sources.list").write_text(
        "deb [arch=amd64] http://old.local/debian bookworm main\n"
        "# deb http://commented.local/debian bookworm main\n"
    )
    mirrors = debian_base.apt_mirrors(etc)
    assert mirrors.debian == "http://old.local/debian"
    assert mirrors.security == debian_base.DEFAULT_SECURITY_MIRROR


def test_wheelhouse_holds_the_build_backend_and_the_images_extras_only() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = wheelhouse.requirements(pyproject)
    assert pyproject["build-system"]["requires"][0] in wanted
    assert set(pyproject["project"]["dependencies"]) <= set(wanted)
    assert set(pyproject["project"]["optional-dependencies"]["operator"]) <= set(wanted)
    assert not [r for r in wanted if r.startswith(("pytest", "mypy", "ruff", "mediaimport"))]


def test_the_most_recently_used_builds_are_kept(tmp_path: Path) -> None:
    paths = []
    for age, name in enumerate(["newest", "middle", "oldest", "ancient"]):
        path = tmp_path / name
        path.write_text(name)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
        paths.append(path)
    assert evictable(paths, 2) == [tmp_path / "oldest", tmp_path / "ancient"]
    assert evictable(paths, 5) == []
