"""Static checks of the Dockerfiles that the offline local build relies on (the built
images themselves are checked in test_images_build)."""

from __future__ import annotations

import re

import pytest
from mediaimport_dev import images, wheelhouse

DOCKERFILES = [image.dockerfile for image in images.DOCKERFILE_IMAGES]


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    text = re.sub(r"\\\n", " ", (images.REPO / dockerfile).read_text())
    result: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op.upper() == "FROM":
            result.append([])
        result[-1].append((op.upper(), arg.strip()))
    return result


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_stage_that_runs_pip_takes_the_wheelhouse_arguments(dockerfile: str) -> None:
    pip_stages = [
        stage for stage in stages(dockerfile)
        if any("pip install" in arg for op, arg in stage if op == "RUN")
    ]
    assert pip_stages
    for stage in pip_stages:
        declared = {arg.split("=")[0] for op, arg in stage if op == "ARG"}
        assert {"PIP_NO_INDEX", "PIP_FIND_LINKS", "PIP_INDEX_URL"} <= declared


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_from_names_the_base_the_local_build_makes(dockerfile: str) -> None:
    bases = [arg.split()[0] for stage in stages(dockerfile) for op, arg in stage if op == "FROM"]
    assert bases and all(
        f"docker.io/library/{base}" == images.debian_base.BASE_IMAGE for base in bases
    )


def test_the_wheelhouse_mount_is_not_in_any_build_context() -> None:
    for dockerfile in DOCKERFILES:
        text = (images.REPO / dockerfile).read_text()
        assert wheelhouse.MOUNT_POINT not in text  # pip finds it through PIP_FIND_LINKS only
