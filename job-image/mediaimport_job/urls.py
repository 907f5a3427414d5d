"""What of a source URL may be shown or stored.

Signed URLs (S3 presigned, CDN tokens) carry their secret in the query string,
and a URL may carry credentials before its host. The job's messages and logs
and the operator's asset row all show URLs through ``redact``, so what one
hides the others hide too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


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
