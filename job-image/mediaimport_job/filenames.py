"""Safe file names for S3 keys, from a user's ``--name`` or the URL's last path segment.

The name becomes the last segment of ``{key-prefix}/{name}`` and, later, a
download's file name, so it must not be able to climb out of the prefix, hide
characters (control or bidirectional overrides), or collide with the
thumbnail's key.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit

MAX_NAME_BYTES = 200
THUMBNAIL_NAME = "thumbnail.jpg"
# Extensions are kept when a long name is shortened; longer "extensions" are
# just part of the name.
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}$")
# Separators and characters that file systems or shells treat specially.
_UNSAFE = re.compile(r'[/\\:*?"<>|]')
_WHITESPACE = re.compile(r"\s+")

DEFAULT_STEM = {"video": "video", "image": "image", "audio": "audio"}


def _drop_invisible(text: str) -> str:
    # Cc: control characters; Cf: format characters such as U+202E (right-to-left
    # override, which makes "evil\u202egpj.exe" display as "evilexe.jpg"); Cs/Co/Cn:
    # surrogates, private use, unassigned; U+FFFD stands for undecodable bytes.
    return "".join(
        char
        for char in text
        if char != "\ufffd" and unicodedata.category(char) not in {"Cc", "Cf", "Cs", "Co", "Cn"}
    )


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def sanitize(raw: str) -> str:
    """A safe name for ``raw``, or "" when nothing usable is left.

    Path separators become ``_`` (so ``../../etc/passwd`` is one harmless name),
    invisible characters go, whitespace runs collapse to one space, leading dots
    and spaces go (no hidden files, no ``..``), and the name is cut to
    ``MAX_NAME_BYTES`` of UTF-8 keeping its extension.
    """
    name = unicodedata.normalize("NFC", raw)
    name = _drop_invisible(name)
    name = _UNSAFE.sub("_", name)
    name = _WHITESPACE.sub(" ", name).strip(" ")
    if name.startswith(".") and "." not in name.lstrip("."):
        return ""  # only an extension (".mp4") or a dot file: no name at all
    name = name.strip(" .")
    if not any(char.isalnum() for char in name):
        return ""
    if len(name.encode()) > MAX_NAME_BYTES:
        match = _EXTENSION.search(name)
        extension = match.group(0) if match else ""
        stem = name[: len(name) - len(extension)]
        name = _truncate_utf8(stem, MAX_NAME_BYTES - len(extension)).rstrip(" .") + extension
    if name == THUMBNAIL_NAME:
        # The thumbnail lives next to the media under this exact name.
        name = "original-" + THUMBNAIL_NAME
    return name


def name_from_url(url: str) -> str:
    """The sanitised, percent-decoded last segment of the URL's path ("" if none)."""
    path = urlsplit(url).path
    segment = path.rsplit("/", 1)[-1]
    return sanitize(unquote(segment, errors="replace"))


def has_extension(name: str) -> bool:
    return _EXTENSION.search(name) is not None


def with_extension(name: str, extension: str) -> str:
    """``name`` plus ``.extension`` unless it already ends with an extension."""
    if has_extension(name) or not extension:
        return name
    return sanitize(f"{name}.{extension}")


def default_name(media_type: str | None, extension: str | None) -> str:
    """The name used when neither ``--name`` nor the URL gives one, e.g. ``video.mp4``."""
    stem = DEFAULT_STEM.get(media_type or "", "media")
    return f"{stem}.{extension}" if extension else stem
