"""Command line and environment → one frozen ``Settings``.

Every flag can also be set from an environment variable (``--key-prefix`` ↔
``MEDIAIMPORT_KEY_PREFIX``), so a Job spec may use either; a flag wins over its
variable. Validation happens here, once, so the rest of the job can trust
its inputs; a bad value raises ``ConfigError`` with the reason to report.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn
from urllib.parse import urlsplit

from .netguard import IPNetwork, parse_network
from .reasons import FailureReason, MediaType
from .tunnel import TunnelProxy
from .urls import UnsupportedUrl, check_source_url

ENV_PREFIX = "MEDIAIMPORT_"
DEFAULT_RESULT_FILE = "/dev/termination-log"
DEFAULT_MAX_BYTES = 16 * 1024**3
# Room the temporary directory keeps besides the download: the thumbnail (a JPEG
# at most 4096 pixels across) and ffmpeg's scratch files. The operator sizes the
# pod's /tmp volume as max bytes plus the same reserve.
TMP_RESERVE = 64 * 1024 * 1024
# Kubernetes' default terminationGracePeriodSeconds.
DEFAULT_GRACE_PERIOD = 30.0
MAX_KEY_PREFIX_BYTES = 700  # S3 keys are at most 1024 bytes; the name takes up to 200.
MAX_THUMBNAIL_WIDTH = 4096
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_TYPES: tuple[MediaType, ...] = ("video", "image", "audio")

# The channel's variables (``channel_protocol`` defines them; repeated here because that
# module loads pydantic, which stays off the start-up path — a test keeps them equal).
CHANNEL_URL_ENV = "MEDIAIMPORT_CHANNEL_URL"
CHANNEL_TOKEN_ENV = "MEDIAIMPORT_CHANNEL_TOKEN"  # noqa: S105 - a variable name
STORAGE_ENV = "MEDIAIMPORT_STORAGE"
POD_NAME_ENV = "MEDIAIMPORT_POD_NAME"
POD_UID_ENV = "MEDIAIMPORT_ATTEMPT"
StorageAccess = Literal["brokered", "credentials"]
_STORAGE: tuple[StorageAccess, ...] = ("brokered", "credentials")
DEFAULT_CHANNEL_BUDGET = 120.0
_TOKEN = re.compile(r"^[\x21-\x7e]{1,4096}$")  # visible ASCII: it goes into a header


class ConfigError(Exception):
    """A missing or invalid argument; ``reason`` is InvalidArgument or InvalidURL."""

    def __init__(self, message: str, reason: FailureReason = FailureReason.INVALID_ARGUMENT):
        super().__init__(message)
        self.reason = reason


class Secret:
    """A credential that never shows itself in a repr, a log line or a message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Channel:
    """Where the operator's channel for this import is, and the credential for it."""

    url: str  # the import's endpoint base: http://host:port/v1/imports/{namespace}/{name}
    token: Secret
    budget: float  # seconds one request may spend retrying
    pod_name: str
    pod_uid: str
    progress_interval: float = 1.0  # seconds between progress reports; 0: none


@dataclass(frozen=True)
class Settings:
    url: str
    bucket: str
    key_prefix: str
    name: str | None
    media_type: MediaType | None
    thumbnail_width: int
    thumbnail_at: float
    max_bytes: int
    tmp_limit: int | None
    grace_period: float
    sha256: str | None
    result_file: str
    allow_networks: tuple[IPNetwork, ...]
    download_proxy: TunnelProxy | None
    connect_timeout: float
    read_timeout: float
    download_timeout: float
    min_rate: int
    min_rate_window: float
    retries: int
    upload_concurrency: int
    # "brokered": writes through the channel's presigned URLs (no S3 credential here);
    # "credentials": the AWS_* variables, as the job always did.
    storage: StorageAccess = "credentials"
    channel: Channel | None = None


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting.

    The job must always end with a result document, also for bad arguments.
    """

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mediaimport-job",
        description=(
            "Import one media file from an http(s) URL into S3: download (guarded against "
            "internal addresses), probe with ffprobe, render a JPEG thumbnail, upload. "
            "Writes one JSON result document to --result-file and as the last line of stdout. "
            "Exit 0 = ready, 2 = permanent failure, other = retryable. With a channel "
            f"({CHANNEL_URL_ENV}, credential in {CHANNEL_TOKEN_ENV}: never a flag) the job "
            "reports progress and its result to the operator and, in brokered storage, writes "
            "through presigned URLs from it; otherwise S3 credentials, region and endpoint "
            "come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and "
            "AWS_ENDPOINT_URL_S3. Each flag can also be set from the environment variable "
            "shown in brackets."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def add(flag: str, help_text: str, **kwargs: object) -> None:
        variable = env_name(flag)
        default = environ.get(variable, kwargs.pop("default", None))
        parser.add_argument(
            flag,
            help=f"{help_text} [{variable}]",
            default=default,
            **kwargs,  # type: ignore[arg-type]
        )

    add("--url", "http(s) URL of the media file (required)")
    add("--bucket", "destination S3 bucket (required)")
    add("--key-prefix", "S3 key prefix, e.g. media/{userId}/{assetId} (required)")
    add("--name", "file name for the object (default: the URL's last path segment)")
    add("--type", "expected media type; detected when absent", choices=_TYPES)
    add("--thumbnail-width", "thumbnail width in pixels (odd values round down)", default="320")
    add("--thumbnail-at", "thumbnail time in seconds, clamped into the duration", default="0")
    add("--max-bytes", "largest accepted file size in bytes", default=str(DEFAULT_MAX_BYTES))
    add(
        "--tmp-limit",
        "bytes the temporary directory may hold (the pod's /tmp sizeLimit); a file larger "
        f"than this less {TMP_RESERVE // 1024**2} MiB for the thumbnail fails as TooLarge",
    )
    add(
        "--grace-period",
        "seconds between SIGTERM and SIGKILL (the pod's terminationGracePeriodSeconds): the "
        "cleanup after SIGTERM ends in time to write the result",
        default=str(DEFAULT_GRACE_PERIOD),
    )
    add("--sha256", "expected SHA-256 of the file (hex)")
    add("--result-file", "where the result document goes", default=DEFAULT_RESULT_FILE)
    parser.add_argument(
        "--allow-network",
        action="append",
        default=None,
        metavar="CIDR",
        help=(
            "let the download reach this otherwise refused network; repeatable "
            f"[{env_name('--allow-network')}, comma-separated]"
        ),
    )
    add(
        "--download-proxy",
        "http://[user:password@]host:port of a proxy to download through; the target's "
        "address is still resolved and checked here, and the proxy is asked to CONNECT "
        "to that address (the *_PROXY variables are never used for the download)",
    )
    add("--connect-timeout", "seconds to establish a connection", default="10")
    add("--read-timeout", "seconds without any byte from the origin", default="30")
    add("--download-timeout", "overall download deadline in seconds", default="3000")
    add("--min-rate", "minimum download rate in bytes/s over --min-rate-window", default="4096")
    add("--min-rate-window", "seconds over which --min-rate is measured", default="20")
    add("--retries", "retries for transient download failures", default="5")
    add("--upload-concurrency", "parallel multipart upload parts", default="4")
    add(
        "--channel-url",
        "the import's endpoint on the operator's channel "
        "(http://host:port/v1/imports/NAMESPACE/NAME); its credential comes only from "
        f"{CHANNEL_TOKEN_ENV}",
    )
    add(
        "--storage",
        "how objects are written: brokered (presigned URLs from the channel, no S3 "
        "credential) or credentials (AWS_* variables); default: brokered with a channel",
        choices=_STORAGE,
    )
    add("--pod-name", "this pod's name, sent with the result (default: the host name)")
    add(
        "--progress-interval",
        "seconds between progress reports to the channel (at least 1; 0: none)",
        default="1",
    )
    add(
        "--channel-budget",
        "seconds one channel request may spend retrying before the job fails as ChannelUnavailable",
        default=str(DEFAULT_CHANNEL_BUDGET),
    )
    return parser


def _number(value: str | None, flag: str, kind: type[int] | type[float], minimum: float) -> float:
    try:
        number = kind(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < minimum:
        raise ConfigError(f"{flag} must be at least {minimum}, got {value!r}")
    return number


def _validate_url(url: str) -> str:
    try:
        return check_source_url(url.strip())
    except UnsupportedUrl as exc:
        raise ConfigError(str(exc), FailureReason.INVALID_URL) from None


def _validate_key_prefix(prefix: str) -> str:
    prefix = prefix.strip().strip("/")
    if not prefix:
        raise ConfigError("--key-prefix must not be empty")
    if len(prefix.encode()) > MAX_KEY_PREFIX_BYTES:
        raise ConfigError(f"--key-prefix is longer than {MAX_KEY_PREFIX_BYTES} bytes")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in prefix) or "\\" in prefix:
        raise ConfigError("--key-prefix contains control characters or backslashes")
    segments = prefix.split("/")
    if any(segment in {"", ".", ".."} for segment in segments):
        raise ConfigError("--key-prefix must not contain empty, '.' or '..' segments")
    return prefix


def _validate_channel_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("--channel-url must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"--channel-url must not carry credentials (use {CHANNEL_TOKEN_ENV})")
    if parts.query or parts.fragment or any(ord(char) <= 0x20 for char in url):
        raise ConfigError("--channel-url must have no query, fragment, spaces or controls")
    return url


def _channel(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[StorageAccess, Channel | None]:
    url = (args.channel_url or "").strip()
    storage_text = (args.storage or "").strip() or ("brokered" if url else "credentials")
    if storage_text not in _STORAGE:
        raise ConfigError(f"--storage must be brokered or credentials, got {storage_text!r}")
    storage: StorageAccess = "brokered" if storage_text == "brokered" else "credentials"
    if not url:
        if storage == "brokered":
            raise ConfigError(
                f"--storage brokered needs the operator's channel (--channel-url or "
                f"{CHANNEL_URL_ENV}); without one use --storage credentials"
            )
        return storage, None
    token = environ.get(CHANNEL_TOKEN_ENV, "")
    if not token:
        raise ConfigError(f"a channel URL needs its credential in {CHANNEL_TOKEN_ENV}")
    if not _TOKEN.match(token):  # the value itself is never part of a message
        raise ConfigError(f"{CHANNEL_TOKEN_ENV} must be printable ASCII without spaces")
    pod_name = (args.pod_name or "").strip() or _host_name()
    # Standalone (no downward API): an id of this process's own, like upload.ATTEMPT.
    pod_uid = environ.get(POD_UID_ENV, "").strip() or uuid.uuid4().hex
    return storage, Channel(
        url=_validate_channel_url(url),
        token=Secret(token),
        budget=_number(args.channel_budget, "--channel-budget", float, 0.1),
        pod_name=pod_name[:253],
        pod_uid=pod_uid[:64],
        progress_interval=_progress_interval(args.progress_interval),
    )


def _progress_interval(value: str | None) -> float:
    """0 (no reports) or at least a second: the channel takes one report a second."""
    interval = _number(value, "--progress-interval", float, 0)
    if 0 < interval < 1:
        raise ConfigError("--progress-interval must be 0 (no reports) or at least 1 second")
    return interval


def _host_name() -> str:
    import socket  # noqa: PLC0415 - only without the downward API

    return socket.gethostname() or "unknown"


def parse_settings(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate; raises ``ConfigError`` (SystemExit only for --help)."""
    environ = os.environ if environ is None else environ
    args = build_parser(environ).parse_args(list(argv))
    for flag in ("url", "bucket", "key_prefix"):
        if not (getattr(args, flag) or "").strip():
            raise ConfigError(f"--{flag.replace('_', '-')} is required (or {env_name(flag)})")

    media_type = args.type or None
    if media_type is not None and media_type not in _TYPES:
        raise ConfigError(f"--type must be one of {', '.join(_TYPES)}, got {media_type!r}")
    sha256 = (args.sha256 or "").strip() or None
    if sha256 is not None and not _SHA256.match(sha256):
        raise ConfigError("--sha256 must be 64 hexadecimal characters")

    networks_text: list[str] = args.allow_network or (
        environ.get(env_name("--allow-network"), "").split(",")
    )
    try:
        networks = tuple(parse_network(text) for text in networks_text if text.strip())
    except ValueError as exc:
        raise ConfigError(f"--allow-network: {exc}") from None

    width = int(_number(args.thumbnail_width, "--thumbnail-width", int, 2))
    if width > MAX_THUMBNAIL_WIDTH:
        raise ConfigError(f"--thumbnail-width must be at most {MAX_THUMBNAIL_WIDTH}")
    bucket = args.bucket.strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(f"--bucket {bucket!r} is not a valid S3 bucket name")
    name = (args.name or "").strip() or None
    download_proxy = None
    if (args.download_proxy or "").strip():
        try:
            download_proxy = TunnelProxy.from_url(args.download_proxy)
        except ValueError as exc:
            raise ConfigError(f"--download-proxy: {exc}") from None
    storage, channel = _channel(args, environ)
    tmp_limit = None
    if args.tmp_limit is not None and str(args.tmp_limit).strip():
        tmp_limit = int(_number(args.tmp_limit, "--tmp-limit", int, TMP_RESERVE + 1))

    return Settings(
        url=_validate_url(args.url),
        bucket=bucket,
        key_prefix=_validate_key_prefix(args.key_prefix),
        name=name,
        media_type=media_type,
        thumbnail_width=width - width % 2,  # JPEG 4:2:0 and players prefer even sizes
        thumbnail_at=_number(args.thumbnail_at, "--thumbnail-at", float, 0),
        max_bytes=int(_number(args.max_bytes, "--max-bytes", int, 1)),
        tmp_limit=tmp_limit,
        grace_period=_number(args.grace_period, "--grace-period", float, 1),
        sha256=sha256.lower() if sha256 else None,
        result_file=args.result_file or DEFAULT_RESULT_FILE,
        allow_networks=networks,
        download_proxy=download_proxy,
        connect_timeout=_number(args.connect_timeout, "--connect-timeout", float, 0.1),
        read_timeout=_number(args.read_timeout, "--read-timeout", float, 0.1),
        download_timeout=_number(args.download_timeout, "--download-timeout", float, 0.1),
        min_rate=int(_number(args.min_rate, "--min-rate", int, 0)),
        min_rate_window=_number(args.min_rate_window, "--min-rate-window", float, 0.1),
        retries=int(_number(args.retries, "--retries", int, 0)),
        upload_concurrency=int(_number(args.upload_concurrency, "--upload-concurrency", int, 1)),
        storage=storage,
        channel=channel,
    )
