"""Checking the result an import pod claims before any of it is believed.

The pod parses hostile input: a decoder exploit controls what it says. A Ready result is
kept only if it names the configured bucket, keys under the import's own prefix (the main
object's last segment is the name it claims), and objects that exist with the size (and
sha256 metadata, when stored) it claims. Anything else refuses the result with
``InvalidResult``; nothing of it reaches the status or the row.

``result_problems`` and ``object_problems`` are pure; ``ResultVerifier`` adds the HEADs.
"""

from __future__ import annotations

import asyncio
import re

from mediaimport_job.channel_protocol import REASON_INVALID_RESULT
from mediaimport_job.result import ReadyResult

from .model import MediaImport, ResultStatus
from .settings import Settings
from .status import result_status
from .storage import ObjectHead, Scope, Storage, content_type_problem

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ResultRefused(Exception):  # noqa: N818 - a verdict
    """The result fails its checks; ``message`` says which, in sentences."""

    reason = REASON_INVALID_RESULT

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.message = " ".join(problems)
        super().__init__(self.message)


def result_problems(result: ReadyResult, scope: Scope) -> list[str]:
    """What is wrong with a result on its face (no S3 request), as sentences."""
    problems: list[str] = []
    if result.bucket != scope.bucket:
        problems.append(f"The result names bucket {result.bucket!r}, not the configured "
                        f"bucket {scope.bucket!r}.")
    key_problem = scope.key_problem(result.key)
    if key_problem is not None:
        problems.append(key_problem)
    elif result.key != f"{scope.prefix}/{result.name}":
        problems.append(f"The result's name {result.name!r} is not the last segment of its "
                        f"key {result.key!r}.")
    if result.thumbnailKey is not None:
        thumbnail_problem = scope.key_problem(result.thumbnailKey)
        if thumbnail_problem is not None:
            problems.append(f"Thumbnail: {thumbnail_problem}")
        elif result.thumbnailKey == result.key:
            problems.append("The thumbnail's key is the media object's key.")
    if result.size < 0:
        problems.append(f"The result claims a negative size ({result.size}).")
    if not _SHA256.match(result.sha256):
        problems.append("The result's sha256 is not 64 lowercase hexadecimal digits.")
    type_problem = content_type_problem(result.contentType)
    if type_problem is not None:
        problems.append(type_problem)
    return problems


def object_problems(
    result: ReadyResult, media: ObjectHead | None, thumbnail: ObjectHead | None
) -> list[str]:
    """What the stored objects say against the result (``thumbnail`` is only looked at when
    the result names one)."""
    problems: list[str] = []
    if media is None:
        problems.append(f"The object {result.key} does not exist.")
    else:
        if media.size != result.size:
            problems.append(f"The object {result.key} holds {media.size} bytes, not the "
                            f"{result.size} the result claims.")
        if media.sha256 is not None and media.sha256 != result.sha256:
            problems.append(f"The object {result.key} was stored with sha256 {media.sha256}, "
                            f"not the {result.sha256} the result claims.")
    if result.thumbnailKey is not None and thumbnail is None:
        problems.append(f"The thumbnail {result.thumbnailKey} does not exist.")
    return problems


class ResultVerifier:
    """Checks results against the settings and the stored objects. S3 being unavailable
    (``storage.StorageUnavailable``) is not a verdict: it propagates, to be tried again."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings

    async def verify(self, mi: MediaImport, result: ReadyResult) -> ResultStatus:
        """The result as ``status.result``, once every check passed; ``ResultRefused``
        otherwise."""
        scope = Scope.of(mi, self.settings)
        problems = result_problems(result, scope)
        if problems:
            raise ResultRefused(problems)
        media, thumbnail = await asyncio.gather(
            self.storage.head(scope, result.key),
            self.storage.head(scope, result.thumbnailKey) if result.thumbnailKey else _none(),
        )
        problems = object_problems(result, media, thumbnail)
        if problems:
            raise ResultRefused(problems)
        return result_status(result)

    async def refusal(self, mi: MediaImport, result: ReadyResult) -> str | None:
        """Why ``result`` is not believed (None: every check passed)."""
        try:
            await self.verify(mi, result)
        except ResultRefused as refused:
            return refused.message
        return None


async def _none() -> None:
    return None
