"""The Dockerfiles' base image, made on this machine with debootstrap.

The Dockerfiles start ``FROM python:3.11-slim-bookworm``. No registry is
reachable here, so this makes an image that serves the same purpose from Debian
itself: bookworm ``minbase`` with Debian's Python 3.11 (``python``/``python3``,
``venv`` with its bundled pip), slimmed the way Debian's ``-slim`` images are
(no documentation, manuals or translations, now or in later installs; apt's
downloads removed after each install), and committed under exactly the
``FROM`` name, so the Dockerfiles build unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mediaimport_dev.buildah import Buildah
from mediaimport_dev.imageinputs import Hasher

BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python-is-python3")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

# Later `apt-get install`s in the Dockerfiles leave these out too (as in
# Debian's slim images); copyright files stay, as the licences ask.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""  # noqa: E501
IMAGE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# Bumped when the steps below change in a way the constants above do not show.
RECIPE_REVISION = "1"


@dataclass(frozen=True)
class Mirrors:
    """Where Debian's packages come from: the mirrors this machine's apt uses."""

    debian: str
    security: str

    def sources(self) -> str:
        return (
            f"Types: deb\nURIs: {self.debian}\nSuites: {SUITE} {SUITE}-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            f"Types: deb\nURIs: {self.security}\nSuites: {SUITE}-security\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )


def apt_mirrors(etc_apt: Path = Path("/etc/apt")) -> Mirrors:
    """The Debian and Debian-security mirrors named in apt's sources (deb822 or one-line)."""
    entries: list[tuple[str, list[str]]] = []
    sources = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (key.strip().lower(), value.strip())
                    for key, _, value in (
                        line.partition(":") for line in stanza.splitlines()
                        if ":" in line and not line.lstrip().startswith("#")
                    )
                )
                suites = fields.get("suites", "").split()
                entries.extend((uri, suites) for uri in fields.get("uris", "").split())
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    debian = next((uri for uri, suites in entries if SUITE in suites), DEFAULT_MIRROR)
    security = next(
        (uri for uri, suites in entries if f"{SUITE}-security" in suites),
        DEFAULT_SECURITY_MIRROR,
    )
    return Mirrors(debian=debian.rstrip("/"), security=security.rstrip("/"))


def recipe_key(mirrors: Mirrors) -> str:
    """Content hash of everything that decides the base image."""
    hasher = Hasher("debian-base")
    for label, value in (
        ("image", BASE_IMAGE),
        ("suite", SUITE),
        ("packages", " ".join(PACKAGES)),
        ("dpkg-excludes", DPKG_EXCLUDES),
        ("apt-clean", APT_CLEAN),
        ("env", "\n".join(IMAGE_ENV)),
        ("sources", mirrors.sources()),
        ("revision", RECIPE_REVISION),
    ):
        hasher.add_text(label, value)
    return hasher.hexdigest()


def _quiet(argv: list[str], *, env: dict[str, str] | None = None, timeout: float) -> None:
    """Run a step of the recipe; its output shows only when it fails."""
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({completed.returncode}):\n{output}")


def _chroot(root: Path, *command: str, timeout: float = 900) -> None:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
    }
    _quiet(["chroot", str(root), *command], env=env, timeout=timeout)


def make_rootfs(root: Path, mirrors: Mirrors, *, deb_cache: Path) -> None:
    """debootstrap the root filesystem, bring it up to date and slim it."""
    deb_cache.mkdir(parents=True, exist_ok=True)
    _quiet(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            f"--cache-dir={deb_cache}",
            SUITE,
            str(root),
            mirrors.debian,
        ],
        timeout=1800,
    )
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(mirrors.sources())
    (root / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    # Security updates: debootstrap reads the release suite only.
    _chroot(root, "apt-get", "update", "-qq")
    _chroot(root, "apt-get", "-y", "-qq", "-o", "Dpkg::Options::=--force-confold", "upgrade")
    _slim(root)


def _slim(root: Path) -> None:
    """Drop what an image never needs: caches, logs, docs and the host's resolver."""
    for pattern in (
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/cache/apt/archives/partial/*",
        "var/lib/apt/lists/*",
        "var/log/*",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/groff/*",
        "usr/share/lintian/*",
        "tmp/*",
        "dev/*",
        "etc/resolv.conf",
        "etc/hostname",
    ):
        for path in root.glob(pattern):
            _remove(path)
    for path in (root / "usr/share/locale").glob("*"):
        if path.name != "locale.alias":
            _remove(path)
    for path in (root / "usr/share/doc").rglob("*"):
        if path.is_file() and path.name != "copyright":
            _remove(path)
    for path in sorted((root / "usr/share/doc").rglob("*"), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    # A container runtime provides these; the image keeps empty files in place.
    (root / "etc/hostname").touch()
    (root / "etc/resolv.conf").touch()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def commit_image(buildah: Buildah, root: Path, name: str) -> None:
    """Copy the root filesystem into a scratch container and commit it as name."""
    container = buildah.run("from", "scratch").strip()
    try:
        mountpoint = Path(buildah.run("mount", container).strip())
        subprocess.run(
            ["cp", "-a", f"{root}/.", f"{mountpoint}/"], check=True, timeout=600
        )
        config: list[str] = ["--cmd", "python3"]
        for env in IMAGE_ENV:
            config += ["--env", env]
        buildah.run("config", *config, container)
        buildah.run("commit", "--quiet", "--rm", container, name)
    except BaseException:
        buildah.run("rm", container)
        raise


def ensure_base(
    buildah: Buildah, images_dir: Path, *, log: Callable[[str], None]
) -> str:
    """Make the base image unless the store has it from the same recipe; return its key."""
    mirrors = apt_mirrors()
    key = recipe_key(mirrors)
    record = images_dir / "base" / f"{key}.json"
    info = buildah.image_info(BASE_IMAGE)
    if info is not None and record.is_file() and json.loads(record.read_text())["id"] == info["id"]:
        return key
    log(f"making the base image {BASE_IMAGE} with debootstrap ({SUITE}, {mirrors.debian})")
    work = images_dir / "work" / f"base-{key}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        make_rootfs(work / "rootfs", mirrors, deb_cache=images_dir / "debs")
        commit_image(buildah, work / "rootfs", BASE_IMAGE)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = buildah.image_info(BASE_IMAGE)
    if info is None:
        raise RuntimeError(f"{BASE_IMAGE} is missing right after it was committed")
    record.parent.mkdir(parents=True, exist_ok=True)
    temporary = record.with_suffix(".tmp")
    temporary.write_text(json.dumps({"id": info["id"], "name": BASE_IMAGE}))
    temporary.replace(record)
    return key
