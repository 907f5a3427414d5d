"""The project's images, built on this machine with no registry, as OCI archives.

``ensure_images()`` returns an OCI archive per image, ready for
``ctr -n k8s.io images import``:

- ``ghcr.io/mediaimport/mediaimport-job:<version>`` from ``job-image/Dockerfile``,
- ``ghcr.io/mediaimport/mediaimport-operator:<version>`` from ``operator/Dockerfile``,
- ``localhost/mediaimport/pause:<version>``, the pod sandbox image.

The Dockerfiles are the ones a user builds with Docker, unchanged: their base is
made with debootstrap under the ``FROM`` name (:mod:`debian_base`), and pip
installs from a wheelhouse made on this machine (:mod:`wheelhouse`). Each image is
cached under the content hash of its inputs, so a warm call only hashes files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mediaimport_dev import debian_base, pause, wheelhouse
from mediaimport_dev.binaries import cache_root
from mediaimport_dev.buildah import RUNC, Buildah, BuildahError
from mediaimport_dev.imageinputs import Hasher, context_files, dockerfile_key

REPO = Path(__file__).resolve().parents[2]
# The annotation containerd names an imported image by. Without it, ctr reads
# OCI's ref.name, drops a full reference there unless given --base-name, and
# the image arrives nameless.
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"


def project_version(repo: Path = REPO) -> str:
    """The image tag: pyproject's version, which is also the chart's appVersion."""
    return str(tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"])


VERSION = project_version()
JOB_IMAGE = f"ghcr.io/mediaimport/mediaimport-job:{VERSION}"
OPERATOR_IMAGE = f"ghcr.io/mediaimport/mediaimport-operator:{VERSION}"
PAUSE_IMAGE = pause.PAUSE_IMAGE


@dataclass(frozen=True)
class DockerfileImage:
    name: str
    dockerfile: str
    # "host" when a RUN installs Debian packages from the mirror; otherwise the
    # build has no network at all.
    network: str


DOCKERFILE_IMAGES = (
    DockerfileImage(JOB_IMAGE, "job-image/Dockerfile", network="host"),
    DockerfileImage(OPERATOR_IMAGE, "operator/Dockerfile", network="none"),
)
ALL_IMAGES = (JOB_IMAGE, OPERATOR_IMAGE, PAUSE_IMAGE)
# Builds kept per image (and wheelhouses): checkouts that share the cache at
# different commits each find theirs instead of rebuilding in turn.
KEEP_BUILDS = 3
# Bumped when how an image is built or recorded changes, so that older builds
# are redone rather than trusted.
BUILDER_REVISION = "2"


@dataclass(frozen=True)
class ImageArchive:
    """One built image, as an OCI archive on disk."""

    name: str
    """Full reference, as containerd lists it after the import."""
    archive: Path
    """OCI archive (uncompressed layers): ``ctr -n k8s.io images import <archive>``."""
    image_id: str
    """``sha256:`` digest of the image config: the image ID the kubelet and crictl report."""
    manifest_digest: str
    """``sha256:`` digest of the manifest: containerd's target digest after the import."""
    size: int
    """Bytes of the unpacked layers: the image's size, as ``crictl images`` shows it."""
    archive_size: int
    """Bytes of the archive (zstd-compressed layers)."""
    key: str
    """Content hash of the inputs this build came from."""
    build_seconds: float
    """How long the cold build took (base image and wheelhouse not included)."""

    @property
    def store_tag(self) -> str:
        """This build's tag in the buildah store (``buildah_for()``), e.g. for ``exec_in``."""
        return build_tag(self.name, self.key)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "archive": str(self.archive)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ImageArchive:
        data = json.loads(text)
        return cls(**{**data, "archive": Path(data["archive"])})


def _stderr(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def images_dir(cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "images"


def buildah_for(cache: Path | None = None) -> Buildah:
    """The buildah store the images live in (for running a command in one, in tests)."""
    return Buildah.under(images_dir(cache))


def _slug(name: str) -> str:
    return name.rsplit("/", 1)[-1].replace(":", "-")


def _record_path(directory: Path, name: str, key: str) -> Path:
    return directory / "archives" / f"{_slug(name)}-{key}.json"


def image_keys(repo: Path = REPO) -> dict[str, str]:
    """The content hash of each image's inputs (what decides whether it is rebuilt)."""
    upstream = (
        BUILDER_REVISION,
        debian_base.recipe_key(debian_base.apt_mirrors()),
        wheelhouse.wheelhouse_key(repo),
    )
    keys = {
        image.name: dockerfile_key(repo, image.dockerfile, upstream=upstream)
        for image in DOCKERFILE_IMAGES
    }
    keys[PAUSE_IMAGE] = Hasher("pause").add_text("builder", BUILDER_REVISION).add_text(
        "recipe", pause.pause_key()
    ).hexdigest()
    return keys


def _cached(directory: Path, keys: dict[str, str]) -> dict[str, ImageArchive]:
    found: dict[str, ImageArchive] = {}
    for name, key in keys.items():
        record = _record_path(directory, name, key)
        try:
            archive = ImageArchive.from_json(record.read_text())
        except (OSError, ValueError, TypeError, KeyError):
            continue  # never built, or by an older version of this module: build it
        if archive.archive.is_file():
            found[name] = archive
            _mark_used(record)
    return found


def _mark_used(path: Path) -> None:
    """Recently used builds are the ones kept (checkouts sharing the cache alternate)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def evictable(paths: Iterable[Path], keep: int) -> list[Path]:
    """All but the ``keep`` most recently used of paths."""
    return sorted(paths, key=lambda path: path.stat().st_mtime, reverse=True)[keep:]


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One builder at a time per cache (the stack and a test may both ask)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_images(
    cache: Path | None = None,
    *,
    only: Iterable[str] | None = None,
    log: Callable[[str], None] = _stderr,
) -> dict[str, ImageArchive]:
    """Every image (or those named in ``only``) as an OCI archive, building what is stale.

    Keyed by full reference (``JOB_IMAGE``, ``OPERATOR_IMAGE``, ``PAUSE_IMAGE``).
    Warm (nothing changed), this hashes the inputs and returns: no buildah call.
    """
    directory = images_dir(cache)
    wanted = list(only) if only is not None else list(ALL_IMAGES)
    unknown = sorted(set(wanted) - set(ALL_IMAGES))
    if unknown:
        raise ValueError(f"unknown image(s) {unknown}; known: {list(ALL_IMAGES)}")
    keys = {name: key for name, key in image_keys().items() if name in wanted}
    found = _cached(directory, keys)
    if len(found) == len(keys):
        return found
    if os.geteuid() != 0:
        raise PermissionError("building the images needs root (debootstrap, buildah)")
    with _locked(directory):
        found = _cached(directory, keys)
        builder = _Builder(directory, log)
        if len(found) < len(keys):
            # A build cut short (Ctrl-C, a killed process) leaves its working containers in
            # the private store, and they keep the next build's clean-up from removing
            # images: nothing else uses this store, and the lock is ours.
            builder.buildah.run("rm", "--all")
        for name, key in keys.items():
            if name not in found:
                found[name] = builder.build(name, key)
    return {name: found[name] for name in wanted}


class _Builder:
    def __init__(self, directory: Path, log: Callable[[str], None]) -> None:
        self.directory = directory
        self.log = log
        self.buildah = Buildah.under(directory)
        self._wheels: Path | None = None

    def build(self, name: str, key: str) -> ImageArchive:
        started = time.monotonic()
        if name == PAUSE_IMAGE:
            self.log(f"building {name}")
            pause.build_pause(self.buildah, self.directory / "pause-src")
        else:
            image = next(image for image in DOCKERFILE_IMAGES if image.name == name)
            self._build_dockerfile(image)
        # The build's own tag keeps its image in the store (for running commands in
        # it) while the plain name moves to whatever was built last.
        self.buildah.run("tag", name, build_tag(name, key))
        archive = self._export(name, key, build_seconds=time.monotonic() - started)
        self._evict_builds(name)
        self.log(f"{name}: {format_size(archive.size)} in {archive.build_seconds:.0f} s")
        return archive

    def _evict_builds(self, name: str) -> None:
        """Keep the last few builds of an image (its archive, record and tag); drop older."""
        archives = self.directory / "archives"
        records = list(archives.glob(f"{_slug(name)}-*.json"))
        for record in evictable(records, KEEP_BUILDS):
            key = record.stem.rsplit("-", 1)[1]
            with contextlib.suppress(BuildahError):
                self.buildah.run("rmi", build_tag(name, key))
            archives.joinpath(f"{record.stem}.tar").unlink(missing_ok=True)
            record.unlink(missing_ok=True)

    def _wheelhouse(self) -> Path:
        if self._wheels is None:
            path = self.directory / "wheelhouse" / wheelhouse.wheelhouse_key(REPO)
            if not path.is_dir():
                earlier = [
                    p for p in path.parent.glob("*")
                    if p.is_dir() and not p.name.endswith(".partial")
                ]
                wheelhouse.build_wheelhouse(
                    REPO, path, log=self.log,
                    log_file=self.directory / "logs" / "wheelhouse.log", earlier=earlier,
                )
            _mark_used(path)
            built = [p for p in path.parent.iterdir() if p.is_dir() and p.suffix != ".partial"]
            for old in evictable(built, KEEP_BUILDS):
                shutil.rmtree(old, ignore_errors=True)
            self._wheels = path
        return self._wheels

    def _build_dockerfile(self, image: DockerfileImage) -> None:
        debian_base.ensure_base(self.buildah, self.directory, log=self.log)
        wheels = self._wheelhouse()
        context = self.directory / "work" / f"{_slug(image.name)}-context"
        if context.exists():
            shutil.rmtree(context)
        for relative in context_files(REPO, image.dockerfile):
            target = context / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, target, follow_symlinks=False)
        log_file = self.directory / "logs" / f"{_slug(image.name)}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log(f"building {image.name} from {image.dockerfile} (log: {log_file})")
        common = (
            "bud",
            "--runtime", RUNC,
            "--pull=never",
            "--layers",
            "--force-rm",  # a failed step leaves no container (nor its mount) behind
            "--network", image.network,
            "--volume", f"{wheels}:{wheelhouse.MOUNT_POINT}:ro",
            "--build-arg", "PIP_NO_INDEX=1",
            "--build-arg", f"PIP_FIND_LINKS={wheelhouse.MOUNT_POINT}",
            "--file", str(REPO / image.dockerfile),
        )  # fmt: skip
        # Each named stage is built and tagged first: a tag keeps that stage's
        # cached layers (the installed dependencies) alive through the prune below,
        # which removes every layer no tag leads to (superseded builds).
        builds: list[tuple[str, ...]] = [
            (*common, "--target", stage, "--tag", _stage_tag(image.name, stage))
            for stage in named_stages(REPO / image.dockerfile)
        ]
        builds.append((*common, "--tag", image.name))
        try:
            with log_file.open("w") as output:
                for build in builds:
                    completed = subprocess.run(
                        [*self.buildah.argv(*build), str(context)],
                        stdout=output, stderr=subprocess.STDOUT, timeout=1800, check=False,
                    )
                    if completed.returncode != 0:
                        tail = log_file.read_text()[-4000:]
                        raise BuildahError(
                            f"building {image.name} failed; see {log_file}:\n{tail}"
                        )
        finally:
            shutil.rmtree(context, ignore_errors=True)
        self.buildah.run("rmi", "--prune")

    def _export(self, name: str, key: str, *, build_seconds: float) -> ImageArchive:
        archives = self.directory / "archives"
        archives.mkdir(parents=True, exist_ok=True)
        layout = self.directory / "work" / f"{_slug(name)}-oci"
        if layout.exists():
            shutil.rmtree(layout)
        # zstd: on this machine it exports in about a third of gzip's time,
        # and containerd (1.5 and later) unpacks it faster too.
        self.buildah.run(
            "push", "--quiet", "--compression-format", "zstd", name, f"oci:{layout}:{name}"
        )
        try:
            manifest_digest, image_id = _name_layout(layout, name)
            archive_path = archives / f"{_slug(name)}-{key}.tar"
            partial = archive_path.with_suffix(".partial")
            with tarfile.open(partial, "w") as tar:
                for entry in sorted(layout.iterdir()):
                    tar.add(entry, arcname=entry.name)
            partial.replace(archive_path)
        finally:
            shutil.rmtree(layout, ignore_errors=True)
        archive = ImageArchive(
            name=name,
            archive=archive_path,
            image_id=image_id,
            manifest_digest=manifest_digest,
            size=self.buildah.image_size(name),
            archive_size=archive_path.stat().st_size,
            key=key,
            build_seconds=round(build_seconds, 1),
        )
        record = _record_path(self.directory, name, key)
        partial = record.with_suffix(".partial")
        partial.write_text(archive.to_json())
        partial.replace(record)
        return archive



def named_stages(dockerfile: Path) -> list[str]:
    """The ``FROM ... AS <name>`` stages of a Dockerfile, in order."""
    return re.findall(r"(?im)^\s*FROM\s+\S+\s+AS\s+(\S+)\s*$", dockerfile.read_text())


def _stage_tag(name: str, stage: str) -> str:
    return f"localhost/mediaimport/build-cache:{_slug(name)}-{stage}"


def build_tag(name: str, key: str) -> str:
    """The store's tag for one build of an image: run commands in exactly that build."""
    return f"localhost/mediaimport/build:{_slug(name)}-{key}"


def _name_layout(layout: Path, name: str) -> tuple[str, str]:
    """Name the image in the OCI layout's index for containerd; return its two digests."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    (descriptor,) = index["manifests"]
    descriptor.setdefault("annotations", {})[CONTAINERD_NAME_ANNOTATION] = name
    index_path.write_text(json.dumps(index))
    manifest_digest = str(descriptor["digest"])
    manifest = json.loads(_blob(layout, manifest_digest).read_text())
    return manifest_digest, str(manifest["config"]["digest"])


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hex_digest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hex_digest


def format_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def job_image(images: dict[str, Path]) -> str:
    """The job image's name among the node's images."""
    names = [name for name in images if "mediaimport-job" in name]
    if len(names) != 1:
        raise RuntimeError(f"expected one mediaimport-job image among {sorted(images)}")
    return names[0]
