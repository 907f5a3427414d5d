"""What the job does first: keep its secrets from the media tools it runs.

ffprobe and ffmpeg run as the same uid as the job and parse hostile files. A same-uid
process may read another's ``/proc/PID/environ`` (the environment it was *started* with:
removing a variable from ``os.environ`` later does not change it) and ``/proc/PID/mem``,
unless the target is not dumpable. ``PR_SET_DUMPABLE 0`` makes both unreadable to
processes without CAP_SYS_PTRACE (a restricted pod has none). ``execve`` resets the flag
in the child, so the tools also start with an empty environment (``tools``), and the
channel's credential is taken out of ``os.environ`` so nothing started later inherits it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .config import CHANNEL_TOKEN_ENV

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, value: int) -> int:
    import ctypes  # noqa: PLC0415 - only here; ~2 ms

    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.prctl(option, value, 0, 0, 0)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def make_undumpable() -> bool:
    """Make this process non-dumpable; False (logged) where the kernel has no prctl."""
    try:
        _prctl(PR_SET_DUMPABLE, 0)
    except (OSError, AttributeError) as exc:
        log.warning("could not make the job non-dumpable (prctl): %s", exc)
        return False
    return True


def is_dumpable() -> bool:
    return bool(_prctl(PR_GET_DUMPABLE, 0))


def take_environment() -> Mapping[str, str]:
    """A copy of the environment for the settings, with the channel's credential removed
    from the process's own (``os.environ`` and the C environment behind it)."""
    environ = dict(os.environ)
    os.environ.pop(CHANNEL_TOKEN_ENV, None)
    return environ


def harden() -> Mapping[str, str]:
    """Non-dumpable first, then the credential out of the environment; returns the
    environment the settings are read from."""
    make_undumpable()
    return take_environment()
