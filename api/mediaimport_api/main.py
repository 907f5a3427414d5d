"""``mediaimport-api``: serve the API with uvicorn, configured from MEDIAIMPORT_API_* (or flags)."""

from __future__ import annotations

import socket
import sys

import uvicorn
from mediaimport_operator.cli import settings_from_args
from mediaimport_operator.kube import allow_kubernetes_nesting
from pydantic import ValidationError

from . import logs
from .app import create_app
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = settings_from_args(
            Settings, sys.argv[1:] if argv is None else argv, prog="mediaimport-api",
            description="The HTTP API of mediaimport: import-from-url, Replicate webhooks, "
            "media and import status (see docs/api.md).",
        )
    except ValidationError as error:
        print(f"mediaimport-api: invalid settings: {error}", file=sys.stderr)
        return 2
    if not settings.database_url:
        print("mediaimport-api: MEDIAIMPORT_API_DATABASE_URL (or --database-url) is required: "
              "the API writes and reads the media_assets rows", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    allow_kubernetes_nesting()  # the shared watch reads every MediaImport
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # ours leaves query strings (tokens, contexts) out
        timeout_graceful_shutdown=10,
        ws_ping_interval=20,
    )
    sockets = None
    if settings.admin_port is not None:
        # One server (one app, one lifespan) on both ports; ports.py tells them apart.
        sockets = [_bound(settings.host, port) for port in (settings.port, settings.admin_port)]
    uvicorn.Server(config).run(sockets=sockets)
    return 0


def _bound(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


if __name__ == "__main__":
    sys.exit(main())
