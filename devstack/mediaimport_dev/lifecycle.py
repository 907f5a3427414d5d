"""Stop what this process started when it exits, however it exits.

Normal exit and exceptions reach `atexit`; Ctrl-C raises KeyboardInterrupt, which
unwinds to `atexit` too. SIGTERM would end Python without running either, so a
handler turns it into SystemExit (only where nobody installed a handler before).
SIGKILL cannot be caught: that is what `mediaimport-dev down` and the state file
are for.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import signal
import threading
from collections.abc import Callable
from types import FrameType

_lock = threading.Lock()
_callbacks: dict[int, Callable[[], None]] = {}
_ids = itertools.count()
_installed = False


def _run_all() -> None:
    with _lock:
        pending = list(_callbacks.items())
        _callbacks.clear()
    # Last started, first stopped: the node goes before the API server it talks to.
    for _, callback in reversed(pending):
        with contextlib.suppress(Exception):
            callback()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _install() -> None:
    global _installed  # noqa: PLW0603 - one process-wide installation, by nature
    if _installed:
        return
    _installed = True
    atexit.register(_run_all)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGTERM
    ) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def on_exit(callback: Callable[[], None]) -> int:
    """Run callback at interpreter exit unless cancelled; returns a handle for cancel()."""
    with _lock:
        _install()
        handle = next(_ids)
        _callbacks[handle] = callback
    return handle


def cancel(handle: int) -> None:
    with _lock:
        _callbacks.pop(handle, None)
