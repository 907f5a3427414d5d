"""Which source URLs the job fetches, and what of one may be shown or stored.

``check_source_url`` is the one definition of a URL's acceptable form: the job
refuses anything else before it connects, and the API refuses it before an
import exists (addresses are ``netguard``'s business). Signed URLs (S3
presigned, CDN tokens) carry their secret in the query string, and a URL may
carry credentials before its host. The job's messages and logs and the
operator's asset row all show URLs through ``redact``, so what one hides the
others hide too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
MAX_URL_LENGTH = 8192


class UnsupportedUrl(ValueError):  # noqa: N818 - a verdict on input, not a bug
    """A source URL the job does not fetch; the message says why."""


def check_source_url(url: str) -> str:
    """``url`` if its form is one the job fetches, else UnsupportedUrl saying why."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsupportedUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise UnsupportedUrl("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsupportedUrl(f"the URL cannot be parsed: {exc}") from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise UnsupportedUrl(
            f"only http and https URLs are supported, not {parts.scheme or 'none'!r}"
        )
    if not parts.hostname:
        raise UnsupportedUrl("the URL has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        # Credentials in URLs are a classic parser-confusion vector
        # (http://good@evil/); signed URLs never need them.
        raise UnsupportedUrl("URLs with credentials (user@host) are not supported")
    if port == 0:
        raise UnsupportedUrl("the URL's port is invalid")
    return url


def redact(url: str) -> str:
    """The URL without query, fragment or credentials: scheme, host, port and path."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        # Unparsable (e.g. a port that is no number): cut at the query, drop user@.
        return _USERINFO.sub(r"\1", re.split(r"[?#]", url, maxsplit=1)[0])
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
