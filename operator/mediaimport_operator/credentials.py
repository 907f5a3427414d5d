"""Per-import channel credentials: an HMAC over who the import is and until when.

A credential names one MediaImport (namespace, name and uid) and an expiry, signed with a
key of the chart-managed key ring. Every replica holds the same ring, so any of them can
check a credential without shared state, and a credential outlives the replica that minted
it. Its text is readable by whoever may read the import's Job, so it is worth exactly that
import until the import's deadline: a recreated import with the same name has another uid.

Wire form (opaque to the pod): ``v1.<key id>.<expiry, unix seconds>.<base64url MAC>``.
The MAC covers the version, the key id, the namespace, the name, the uid and the expiry,
as a JSON array (no separator can be smuggled into a field).

Keys rotate by adding a file: credentials are signed with the highest key id and checked
against any key present, so imports that run while a new key arrives keep working as long
as the old key stays in the ring until their deadline.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

VERSION = "v1"
# A key must hold at least this many bytes: HMAC-SHA256 with less is guessable.
MIN_KEY_BYTES = 32
# A token naming an unknown key reads the directory again, at most this often: a mounted
# Secret updates in place (the new key may reach this replica after another minted with it),
# and tokens made up by anyone must not turn into a stream of directory reads.
RELOAD_INTERVAL_S = 5.0
MAX_TOKEN_LENGTH = 256
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EXPIRY = re.compile(r"^[0-9]{1,12}$")
_MAC = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url without padding


class Refusal(enum.StrEnum):
    """Why a credential was refused."""

    MALFORMED = "Malformed"
    UNKNOWN_KEY = "UnknownKey"
    WRONG_IMPORT = "WrongImport"
    EXPIRED = "Expired"


class CredentialRefused(Exception):  # noqa: N818 - a verdict, like PermissionError
    """The credential does not grant this request; ``reason`` says why."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class KeyRingError(Exception):
    """The key ring holds no usable key."""


def key_order(key_id: str) -> tuple[int, int, str]:
    """How key ids rank: numbers numerically and above names; names by their text."""
    if key_id.isdigit():
        return (1, int(key_id), key_id)
    return (0, 0, key_id)


def read_keys(directory: Path) -> dict[str, bytes]:
    """The keys of a directory: each regular file whose name is a valid key id.

    A mounted Secret also holds ``..data`` and dated directories (the kubelet's atomic
    update): names starting with a dot are not key ids. Trailing newlines of a file are not
    part of its key (``echo`` and editors add them).
    """
    keys: dict[str, bytes] = {}
    for path in sorted(directory.iterdir()):
        if not _KEY_ID.match(path.name) or not path.is_file():
            continue
        key = path.read_bytes().rstrip(b"\r\n")
        if len(key) < MIN_KEY_BYTES:
            log.warning("channel key ignored: shorter than %d bytes", MIN_KEY_BYTES,
                        extra={"key_id": path.name, "directory": str(directory)})
            continue
        keys[path.name] = key
    return keys


class KeyRing:
    """The channel's HMAC keys, by id; optionally re-read from a directory."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        directory: Path | None = None,
        reload_interval: float = RELOAD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = self._checked(keys)
        self._directory = directory
        self._reload_interval = reload_interval
        self._clock = clock
        self._loaded_at = clock()
        self._lock = threading.Lock()

    @classmethod
    def from_directory(
        cls,
        directory: Path | str,
        *,
        reload_interval: float = RELOAD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> KeyRing:
        path = Path(directory)
        try:
            keys = read_keys(path)
        except OSError as error:
            raise KeyRingError(f"cannot read the channel keys in {path}: {error}") from error
        return cls(keys, directory=path, reload_interval=reload_interval, clock=clock)

    @staticmethod
    def _checked(keys: Mapping[str, bytes]) -> dict[str, bytes]:
        bad = [key_id for key_id in keys if not _KEY_ID.match(key_id)]
        if bad:
            raise KeyRingError(f"invalid channel key ids {bad}: letters, digits, - and _ only")
        short = [key_id for key_id, key in keys.items() if len(key) < MIN_KEY_BYTES]
        if short:
            raise KeyRingError(f"channel keys {short} are shorter than {MIN_KEY_BYTES} bytes")
        if not keys:
            raise KeyRingError("no channel key: at least one is needed to sign credentials")
        return dict(keys)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys, key=key_order)

    @property
    def signing_key_id(self) -> str:
        return max(self._keys, key=key_order)

    def key(self, key_id: str) -> bytes | None:
        """The key with this id; an unknown id re-reads the directory (rate-limited)."""
        key = self._keys.get(key_id)
        if key is None and self._reload_due():
            self.reload()
            key = self._keys.get(key_id)
        return key

    def _reload_due(self) -> bool:
        return (self._directory is not None
                and self._clock() - self._loaded_at >= self._reload_interval)

    def reload(self) -> None:
        """Read the directory again; on any problem the keys held so far stay."""
        if self._directory is None:
            return
        with self._lock:
            self._loaded_at = self._clock()
            try:
                keys = self._checked(read_keys(self._directory))
            except (OSError, KeyRingError) as error:
                log.warning("channel keys not reloaded; the previous ones stay",
                            extra={"directory": str(self._directory), "error": str(error)})
                return
            if keys.keys() != self._keys.keys():
                log.info("channel keys reloaded", extra={"key_ids": sorted(keys, key=key_order)})
            self._keys = keys


def _message(key_id: str, namespace: str, name: str, uid: str, expires_at: int) -> bytes:
    return json.dumps([VERSION, key_id, namespace, name, uid, expires_at],
                      separators=(",", ":")).encode()


def _mac(key: bytes, message: bytes) -> str:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint(ring: KeyRing, *, namespace: str, name: str, uid: str, expires_at: int) -> str:
    """A credential for the import (namespace, name, uid), good until ``expires_at``
    (unix seconds), signed with the ring's highest key."""
    key_id = ring.signing_key_id
    key = ring.key(key_id)
    assert key is not None  # the signing id is one of the ring's
    expiry = int(expires_at)
    mac = _mac(key, _message(key_id, namespace, name, uid, expiry))
    return f"{VERSION}.{key_id}.{expiry}.{mac}"


def peek_expiry(token: str) -> int:
    """The expiry a well-formed token claims (not yet proven: the MAC covers it).

    Lets a server refuse what is malformed or says it has expired before it spends an API
    request looking up the import the token might be for.
    """
    parts = token.split(".")
    if (len(token) > MAX_TOKEN_LENGTH or len(parts) != 4 or parts[0] != VERSION
            or not _KEY_ID.match(parts[1]) or not _EXPIRY.match(parts[2])
            or not _MAC.match(parts[3])):
        raise CredentialRefused(Refusal.MALFORMED, "The credential is not a channel credential.")
    return int(parts[2])


def precheck(ring: KeyRing, token: str, *, now: float) -> None:
    """Refuse what is malformed, says it has expired, or names a key the ring lacks, before
    the import it may be for is looked up (``check`` proves the rest)."""
    if peek_expiry(token) <= now:
        raise CredentialRefused(Refusal.EXPIRED, "The credential has expired.")
    key_id = token.split(".")[1]
    if ring.key(key_id) is None:
        raise CredentialRefused(Refusal.UNKNOWN_KEY,
                                f"The credential was signed with a key this operator does not "
                                f"hold ({key_id}).")


def check(
    ring: KeyRing, token: str, *, namespace: str, name: str, uid: str, now: float
) -> None:
    """Accept ``token`` for the import (namespace, name, uid) at ``now`` (unix seconds), or
    raise ``CredentialRefused``."""
    expires_at = peek_expiry(token)
    _, key_id, _, mac = token.split(".")
    key = ring.key(key_id)
    if key is None:
        raise CredentialRefused(Refusal.UNKNOWN_KEY,
                                f"The credential was signed with a key this operator does not "
                                f"hold ({key_id}).")
    expected = _mac(key, _message(key_id, namespace, name, uid, expires_at))
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        raise CredentialRefused(Refusal.WRONG_IMPORT,
                                f"The credential is not one for import {namespace}/{name}.")
    if now >= expires_at:
        raise CredentialRefused(Refusal.EXPIRED, "The credential has expired.")
