"""``mediaimport-api``: serve the API with uvicorn, configured from MEDIAIMPORT_API_*."""

from __future__ import annotations

import sys

import uvicorn

from . import logs
from .app import create_app
from .settings import Settings


def main() -> int:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # ours leaves query strings (tokens, contexts) out
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
