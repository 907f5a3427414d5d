"""What an image is built from, and the content hash that names a build of it.

A Dockerfile's build context is the repository root filtered by the Dockerfile's
own ignore file (``<Dockerfile>.dockerignore``, read by BuildKit). The same
filter picks the files hashed here and copied into the context the local build
uses, so the key covers exactly what the build can see: change one of those files
(or the Dockerfile, or the ignore file) and the key changes; touch anything else
and it does not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class IgnoreFileError(ValueError):
    """An ignore file in a form the local build does not read."""


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    include: bool


def _glob_to_regex(glob: str) -> re.Pattern[str]:
    """Docker's path globs: ``*`` and ``?`` stay within one path segment, ``**`` spans any."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class IgnoreFile:
    """A ``.dockerignore`` of the allow-list form: ``*`` first, then ``!path`` lines.

    Matching follows Docker: a pattern that matches a directory matches everything
    under it, and the last matching line decides.
    """

    roots: tuple[str, ...]
    rules: tuple[_Rule, ...]

    @classmethod
    def parse(cls, text: str, *, source: str = "ignore file") -> IgnoreFile:
        lines = [line.strip() for line in text.splitlines()]
        patterns = [line for line in lines if line and not line.startswith("#")]
        if not patterns or patterns[0] != "*":
            raise IgnoreFileError(
                f"{source}: the local image build reads allow-list ignore files only "
                "(first pattern '*', then '!path' lines)"
            )
        rules: list[_Rule] = []
        roots: list[str] = []
        for raw in patterns[1:]:
            include = raw.startswith("!")
            glob = str(PurePosixPath(raw.removeprefix("!").strip().lstrip("/")))
            if include:
                literal = re.split(r"[*?\[]", glob, maxsplit=1)[0]
                root = literal if literal == glob else literal.rsplit("/", 1)[0]
                if not root or root.startswith(".."):
                    raise IgnoreFileError(f"{source}: '{raw}' is too broad to build from")
                roots.append(root)
            rules.append(_Rule(_glob_to_regex(glob), include))
        return cls(tuple(roots), tuple(rules))

    def includes(self, relative: str) -> bool:
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        included = False
        for rule in self.rules:
            if any(rule.pattern.match(prefix) for prefix in prefixes):
                included = rule.include
        return included

    def files(self, root: Path) -> list[str]:
        """Relative POSIX paths of the regular files under root the filter lets through."""
        found: set[str] = set()
        for start in self.roots:
            for path in _walk(root / start):
                relative = path.relative_to(root).as_posix()
                if self.includes(relative):
                    found.add(relative)
        return sorted(found)


def _walk(path: Path) -> Iterator[Path]:
    if path.is_symlink() or path.is_file():
        yield path
    elif path.is_dir():
        for child in sorted(path.iterdir()):
            yield from _walk(child)


class Hasher:
    """SHA-256 over labelled parts, so that moving bytes between parts changes it."""

    def __init__(self, purpose: str) -> None:
        self._sha = hashlib.sha256()
        self.add_text("purpose", purpose)

    def add_bytes(self, label: str, data: bytes) -> Hasher:
        for chunk in (label.encode(), len(data).to_bytes(8, "big"), data):
            self._sha.update(len(chunk).to_bytes(8, "big"))
            self._sha.update(chunk)
        return self

    def add_text(self, label: str, text: str) -> Hasher:
        return self.add_bytes(label, text.encode())

    def add_files(self, root: Path, relatives: Iterable[str]) -> Hasher:
        """Path, executable bit and content of each file (a symlink by its target)."""
        for relative in relatives:
            path = root / relative
            if path.is_symlink():
                self.add_text(f"link:{relative}", str(path.readlink()))
            else:
                executable = "x" if path.stat().st_mode & 0o111 else "-"
                self.add_bytes(f"file:{executable}:{relative}", path.read_bytes())
        return self

    def hexdigest(self, length: int = 16) -> str:
        return self._sha.hexdigest()[:length]


def context_files(repo: Path, dockerfile: str) -> list[str]:
    """The build context's files for a Dockerfile, through its ``.dockerignore``."""
    ignore_path = repo / f"{dockerfile}.dockerignore"
    ignore = IgnoreFile.parse(ignore_path.read_text(), source=str(ignore_path))
    return ignore.files(repo)


def dockerfile_key(repo: Path, dockerfile: str, *, upstream: Iterable[str] = ()) -> str:
    """Content hash of a Dockerfile build: the file, its ignore file and its context.

    ``upstream`` are the keys of what the build uses from outside the context
    (the base image, the wheelhouse), so a new base also means a new image.
    """
    hasher = Hasher("dockerfile-image")
    for key in upstream:
        hasher.add_text("upstream", key)
    hasher.add_files(repo, [dockerfile, f"{dockerfile}.dockerignore"])
    return hasher.add_files(repo, context_files(repo, dockerfile)).hexdigest()
