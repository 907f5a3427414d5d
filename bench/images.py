"""How long the images take to make, and how big they are.

    python bench/images.py           # warm: nothing changed, median of 5 calls
    python bench/images.py --cold    # also everything from nothing, in a temporary cache:
                                     # the debootstrapped base, the wheelhouse, each image

Cold figures depend on the Debian mirror and PyPI (the wheelhouse is made on the host,
from pip's cache when it has the files). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mediaimport_dev import debian_base, images, wheelhouse
from mediaimport_dev.buildah import Buildah

MB = 1_000_000


def cold(cache: Path) -> dict[str, float]:
    """Build everything into an empty cache, phase by phase."""
    directory = images.images_dir(cache)
    buildah = Buildah.under(directory)
    figures: dict[str, float] = {}
    started = time.monotonic()
    debian_base.ensure_base(buildah, directory, log=print)
    figures["cold_base_s"] = round(time.monotonic() - started, 1)
    figures["base_mb"] = round(buildah.image_size(debian_base.BASE_IMAGE) / MB, 1)
    started = time.monotonic()
    wheels = directory / "wheelhouse" / wheelhouse.wheelhouse_key(images.REPO)
    wheelhouse.build_wheelhouse(
        images.REPO, wheels, log=print, log_file=directory / "logs" / "wheelhouse.log"
    )
    figures["cold_wheelhouse_s"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    built = images.ensure_images(cache)
    figures["cold_images_s"] = round(time.monotonic() - started, 1)
    for name, archive in built.items():
        figures[f"cold_{_short(name)}_s"] = archive.build_seconds
    return figures


def warm(cache: Path | None) -> dict[str, float]:
    images.ensure_images(cache)
    samples = []
    for _ in range(5):
        started = time.monotonic()
        images.ensure_images(cache, log=lambda message: print(f"unexpected: {message}"))
        samples.append(time.monotonic() - started)
    return {"warm_s": round(statistics.median(samples), 3)}


def sizes(cache: Path | None) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, archive in images.ensure_images(cache).items():
        figures[f"{_short(name)}_mb"] = round(archive.size / MB, 1)
        figures[f"{_short(name)}_archive_mb"] = round(archive.archive_size / MB, 1)
    return figures


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":", maxsplit=1)[0].removeprefix("mediaimport-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also build from nothing")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    if args.cold:
        cache = Path(tempfile.mkdtemp(prefix="mediaimport-bench-images-"))
        try:
            figures |= cold(cache)
            figures |= warm(cache)
            figures |= sizes(cache)
        finally:
            buildah = Buildah.under(images.images_dir(cache))
            buildah.release()
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(buildah.runroot, ignore_errors=True)
    else:
        figures |= warm(None)
        figures |= sizes(None)
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps({"benchmark": "images", "cpus": os.cpu_count(), **figures}))


if __name__ == "__main__":
    main()
