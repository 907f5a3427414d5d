"""What an import request may ask for, checked before anything is created (pure).

The source URL goes through the job's own rules: its form (``mediaimport_job.urls``)
and its address guard (``mediaimport_job.netguard``, honouring the same allowed
networks as the operator), so a URL the job would refuse — credentials in it, a
literal private or loopback address, ``localhost`` — is refused here with a clear
error instead of failing later in a pod; other host names are not resolved here
(the job resolves and checks every address).
The name is sanitised by the job's own file-name code, so the name answered now is
the name the file is stored under.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from mediaimport_job.filenames import name_from_url, sanitize
from mediaimport_job.netguard import AddressPolicy, BlockedAddressError, fixed_addresses
from mediaimport_job.netguard import parse_network as _parse_network
from mediaimport_job.urls import UnsupportedUrl, check_source_url
from mediaimport_operator import metadata as metadata_rules
from pydantic import BaseModel, ConfigDict, Field, field_validator

MediaType = Literal["video", "image", "audio"]
MAX_URL_LENGTH = 4096  # the CRD's spec.url maxLength
MAX_NAME_LENGTH = 255  # the CRD's spec.name maxLength
MAX_METADATA_KEYS = 64  # the CRD's spec.metadata maxProperties
MAX_METADATA_BYTES = 16 * 1024
_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
_EXTENSION_TYPES: dict[str, MediaType] = {
    **dict.fromkeys(("mp4", "mov", "webm", "mkv", "avi", "m4v", "mpeg", "mpg", "ts"), "video"),
    **dict.fromkeys(("png", "jpg", "jpeg", "webp", "gif", "bmp", "tiff", "tif", "avif", "heic"),
                    "image"),
    **dict.fromkeys(("mp3", "wav", "ogg", "m4a", "aac", "flac", "opus"), "audio"),
}  # fmt: skip


class SourceUrlError(ValueError):
    pass


def check_url_shape(url: str) -> str:
    """The URL with its scheme in lowercase, or SourceUrlError saying what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise SourceUrlError(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if not _URL.match(url):
        raise SourceUrlError("the URL must be an http:// or https:// URL without spaces")
    scheme, rest = url.split(":", 1)
    try:
        return check_source_url(scheme.lower() + ":" + rest)
    except UnsupportedUrl as error:
        raise SourceUrlError(str(error)) from error


def check_url_address(url: str, policy: AddressPolicy) -> None:
    """Refuse a URL whose host stands for an address the job would refuse (no lookup)."""
    for address in fixed_addresses(urlsplit(url).hostname or ""):
        try:
            policy.check(address)
        except BlockedAddressError as error:
            raise SourceUrlError(f"the URL's host is refused: {error}") from error


def metadata_problem(metadata: dict[str, Any]) -> str | None:
    if len(metadata) > MAX_METADATA_KEYS:
        return f"metadata has more than {MAX_METADATA_KEYS} keys"
    if problem := metadata_rules.problem(metadata):
        return problem
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        return f"metadata is larger than {MAX_METADATA_BYTES // 1024} KiB as JSON"
    return None


class ImportRequest(BaseModel):
    """The body of POST /api/v1/media/import-from-url."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field(
        max_length=MAX_URL_LENGTH,
        description="http(s) URL of the media file (e.g. a temporary CDN URL).",
        examples=["https://replicate.delivery/pbxt/abc123/output.mp4"],
    )
    name: str | None = Field(
        default=None, max_length=MAX_NAME_LENGTH,
        description="File name to store the media under (sanitised; default: from the URL).",
    )
    type: MediaType | None = Field(
        default=None, description="video, image or audio; detected from the file when absent."
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Free-form metadata kept with the asset (at most {MAX_METADATA_KEYS} "
        f"keys and {MAX_METADATA_BYTES // 1024} KiB as JSON).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url_shape(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        safe = sanitize(value)
        if not safe:
            raise ValueError("the name has no usable characters (letters or digits)")
        return safe

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and (problem := metadata_problem(value)):
            raise ValueError(problem)
        return value


@dataclass(frozen=True)
class Source:
    """A checked import request."""

    url: str
    name: str | None
    type: MediaType | None
    metadata: dict[str, Any]

    @property
    def display_name(self) -> str:
        """The name answered before the job has run: the given one, else the URL's."""
        return self.name or name_from_url(self.url) or "media"

    @property
    def guessed_type(self) -> MediaType | None:
        if self.type is not None:
            return self.type
        extension = self.display_name.rsplit(".", 1)[-1].lower() if "." in self.display_name else ""
        return _EXTENSION_TYPES.get(extension)

    def fingerprint(self) -> dict[str, Any]:
        """What makes two requests the same import (for Idempotency-Key)."""
        return {"url": self.url, "name": self.name, "type": self.type, "metadata": self.metadata}


def policy_for(networks: Sequence[str]) -> AddressPolicy:
    return AddressPolicy(tuple(_parse_network(network) for network in networks))


def checked(request: ImportRequest, policy: AddressPolicy) -> Source:
    """The request as a Source, or SourceUrlError for a refused address."""
    check_url_address(request.url, policy)
    return Source(request.url, request.name, request.type, dict(request.metadata or {}))
