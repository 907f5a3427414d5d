"""The images built from the project's Dockerfiles, with no registry: what each one
holds, how it runs, and the archives containerd imports.

Cold, the build takes minutes (debootstrap, Debian's ffmpeg); warm, it is a hash of
the inputs. Commands run in the images through buildah with runc, no kubelet needed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tarfile
import time
import tomllib
from pathlib import Path

import pytest
from mediaimport_dev import images, pause
from mediaimport_dev.buildah import Buildah, BuildahError

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def built() -> dict[str, images.ImageArchive]:
    return images.ensure_images()


@pytest.fixture(scope="module")
def buildah() -> Buildah:
    return images.buildah_for()


def run_in(buildah: Buildah, image: str, script: str) -> str:
    return buildah.exec_in(tag(image), ["sh", "-c", script])


def tag(image: str) -> str:
    """This checkout's build of the image (the plain name may be another checkout's)."""
    return images.ensure_images(only=[image])[image].store_tag


def image_config(buildah: Buildah, image: str) -> dict[str, object]:
    inspected = json.loads(buildah.run("inspect", "--type", "image", tag(image)))
    config: dict[str, object] = inspected["OCIv1"]["config"]
    return config


def console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((images.REPO / "pyproject.toml").read_text())
    scripts: dict[str, str] = pyproject["project"]["scripts"]
    return scripts


def test_every_image_is_an_oci_archive_containerd_names(
    built: dict[str, images.ImageArchive],
) -> None:
    assert set(built) == {images.JOB_IMAGE, images.OPERATOR_IMAGE, images.PAUSE_IMAGE}
    for name, archive in built.items():
        assert archive.name == name
        with tarfile.open(archive.archive) as tar:
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
            (descriptor,) = index["manifests"]
            assert descriptor["annotations"]["io.containerd.image.name"] == name
            assert descriptor["digest"] == archive.manifest_digest
            blob = "blobs/" + archive.manifest_digest.replace(":", "/")
            manifest = json.load(tar.extractfile(blob))  # type: ignore[arg-type]
        assert manifest["config"]["digest"] == archive.image_id
        assert archive.archive_size == archive.archive.stat().st_size
        assert archive.size >= sum(layer["size"] for layer in manifest["layers"])


def test_job_image_has_its_tools_and_no_others(
    built: dict[str, images.ImageArchive], buildah: Buildah
) -> None:
    found = run_in(
        buildah,
        images.JOB_IMAGE,
        "for c in sh python3 ffmpeg ffprobe mediaimport-job mediaimport-operator "
        "mediaimport-api mediaimport-dev pip pip3; do "
        "command -v $c >/dev/null && echo $c; done; true",
    ).split()
    assert found == ["sh", "python3", "ffmpeg", "ffprobe", "mediaimport-job"]


def test_job_image_makes_a_thumbnail_and_runs_the_job(
    built: dict[str, images.ImageArchive], buildah: Buildah
) -> None:
    # The GPU drivers the Dockerfile leaves out are not needed to decode and encode.
    output = run_in(
        buildah,
        images.JOB_IMAGE,
        "cd /tmp && ffmpeg -v error -f lavfi -i testsrc2=size=320x240:rate=25:duration=1 "
        "-c:v libx264 clip.mp4 && ffmpeg -v error -i clip.mp4 -frames:v 1 thumb.jpg && "
        "ffprobe -v error -show_entries stream=codec_name,width -of csv=p=0 thumb.jpg && "
        "mediaimport-job --help >/dev/null && echo job-ok && id -u",
    )
    assert output.split() == ["mjpeg,320", "job-ok", "10001"]


def test_job_image_links_everything_ffmpeg_needs(
    built: dict[str, images.ImageArchive], buildah: Buildah
) -> None:
    missing = run_in(
        buildah, images.JOB_IMAGE, "ldd /usr/bin/ffmpeg /usr/bin/ffprobe | grep 'not found'; true"
    )
    assert missing == ""


@pytest.mark.parametrize("image", [images.JOB_IMAGE, images.OPERATOR_IMAGE])
def test_images_run_as_a_numeric_user_with_tmp_as_home(
    built: dict[str, images.ImageArchive], buildah: Buildah, image: str
) -> None:
    config = image_config(buildah, image)
    assert config["User"] == "10001:10001"
    env = dict(item.split("=", 1) for item in config["Env"])  # type: ignore[attr-defined]
    assert env["HOME"] == "/tmp"
    assert env["TMPDIR"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_operator_image_runs_the_operator_and_api_commands_only(
    built: dict[str, images.ImageArchive], buildah: Buildah
) -> None:
    theirs = sorted(
        name for name, target in console_scripts().items()
        if target.startswith(("mediaimport_operator", "mediaimport_api"))
    )
    assert "mediaimport-operator" in theirs
    others = [*sorted(set(console_scripts()) - set(theirs)), "pip", "pip3", "ffmpeg"]
    script = " && ".join(f"{name} --help >/dev/null" for name in theirs)
    script += " && echo helped; for c in " + " ".join(others)
    script += "; do command -v $c >/dev/null && echo $c; done; true"
    assert run_in(buildah, images.OPERATOR_IMAGE, script).split() == ["helped"]
    config = image_config(buildah, images.OPERATOR_IMAGE)
    assert config["Cmd"] == ["mediaimport-operator"]


def test_pause_image_holds_one_static_program_run_as_nobody(
    built: dict[str, images.ImageArchive], buildah: Buildah
) -> None:
    config = image_config(buildah, images.PAUSE_IMAGE)
    assert config["Entrypoint"] == ["/pause"]
    assert config["User"] == pause.USER
    container = buildah.run("from", "--pull=never", tag(images.PAUSE_IMAGE)).strip()
    try:
        root = Path(buildah.run("mount", container).strip())
        assert sorted(p.name for p in root.iterdir()) == ["pause"]
        assert b"libc.so" not in (root / "pause").read_bytes()  # static: no loader, no libc
    finally:
        buildah.run("rm", container)


def test_pause_program_waits_until_sigterm(built: dict[str, images.ImageArchive]) -> None:
    program = images.images_dir() / "pause-src" / "pause"
    process = subprocess.Popen([program])
    try:
        time.sleep(0.5)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()


def test_base_image_carries_the_dockerfiles_from_name(
    built: dict[str, images.ImageArchive], buildah: Buildah
) -> None:
    output = buildah.exec_in(
        "python:3.11-slim-bookworm", ["sh", "-c",
        "python --version && python3 -m venv /tmp/v && /tmp/v/bin/pip --version >/dev/null "
        "&& echo venv-ok && ls /usr/share/man | wc -l"],
    )
    version, venv, manuals = output.split("\n")[:3]
    assert version.startswith("Python 3.11.")
    assert venv == "venv-ok"
    assert int(manuals) == 0  # slim, as the image it stands for


def test_warm_run_builds_nothing(built: dict[str, images.ImageArchive]) -> None:
    messages: list[str] = []
    mtimes = {name: archive.archive.stat().st_mtime_ns for name, archive in built.items()}
    again = images.ensure_images(log=messages.append)
    assert again == built
    assert messages == []
    assert {name: a.archive.stat().st_mtime_ns for name, a in again.items()} == mtimes


def test_cli_prints_every_image_with_its_size(built: dict[str, images.ImageArchive]) -> None:
    result = subprocess.run(
        ["mediaimport-dev", "images", "build"], capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name, archive in built.items():
        (line,) = [line for line in lines if line.startswith(name + " ")]
        assert images.format_size(archive.size) in line
        assert str(archive.archive) in line


def test_exec_in_reports_a_failing_command(
    built: dict[str, images.ImageArchive], buildah: Buildah
) -> None:
    with pytest.raises(BuildahError, match="run failed"):
        run_in(buildah, images.JOB_IMAGE, "exit 3")


def test_a_released_store_can_be_deleted(tmp_path: Path) -> None:
    store = Buildah.under(tmp_path / "images")
    container = store.run("from", "scratch").strip()
    store.run("mount", container)
    store.release()
    shutil.rmtree(tmp_path / "images")
    shutil.rmtree(store.runroot, ignore_errors=True)
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
    assert not (tmp_path / "images").exists()
