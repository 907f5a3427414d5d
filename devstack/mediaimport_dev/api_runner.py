"""The HTTP API as a component of the local stack (`mediaimport-dev up`), and
`mediaimport-dev token USER`.

`up` writes a tokens file with one token for the stack's user, makes a webhook
secret and a context signing key, and starts `python -m mediaimport_api` on
loopback against the stack's control plane (namespace `default`, where the
operator watches), Postgres and S3. It adds MEDIAIMPORT_API_URL,
MEDIAIMPORT_API_TOKEN, MEDIAIMPORT_API_USER and MEDIAIMPORT_WEBHOOK_SECRET to the
stack's environment (`mediaimport-dev env`); `mediaimport-dev logs api` shows its log.

Hooked in by `stack.EXTENSIONS.append(ApiComponent())` and the `token` command of cli.py.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from mediaimport_api.auth import hash_token, new_token, valid_user_id

from mediaimport_dev.operator_runner import NAMESPACE
from mediaimport_dev.ports import free_port
from mediaimport_dev.processes import pid_alive, spawn, stop_group, wait_started

if TYPE_CHECKING:
    from mediaimport_dev.stack import StackContext

State = dict[str, Any]
STACK_USER = "dev-user"


def add_token(tokens_file: Path, user: str) -> str:
    """A new token for ``user``, appended to the tokens file the API re-reads."""
    if not valid_user_id(user):
        raise ValueError(
            f"{user!r} is not a valid user id: letters, digits, '.', '_', '@' or '-', "
            "at most 128, starting with a letter or digit, no '..'"
        )
    token = new_token()
    with tokens_file.open("a") as file:
        file.write(f"{hash_token(token)} {user}\n")
    return token


def api_env(ctx_env: dict[str, str], *, port: int, tokens_file: Path, webhook_secret: str,
            signing_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAIMPORT_"))}
    env.update({k: v for k, v in ctx_env.items() if k.startswith("AWS_") or k == "KUBECONFIG"})
    env.update({
        "MEDIAIMPORT_API_NAMESPACE": NAMESPACE,
        "MEDIAIMPORT_API_TOKENS_FILE": str(tokens_file),
        "MEDIAIMPORT_API_WEBHOOK_SECRET": webhook_secret,
        "MEDIAIMPORT_API_CONTEXT_SIGNING_KEY": signing_key,
        "MEDIAIMPORT_API_ALLOWED_NETWORKS": ctx_env.get("MEDIAIMPORT_ALLOWED_NETWORKS", ""),
        "MEDIAIMPORT_API_DATABASE_URL": ctx_env.get("DATABASE_URL", ""),
        "MEDIAIMPORT_API_BUCKET": ctx_env.get("MEDIAIMPORT_BUCKET", "mediaimport"),
        "MEDIAIMPORT_API_S3_PUBLIC_ENDPOINT": ctx_env.get("AWS_ENDPOINT_URL_S3", ""),
        "MEDIAIMPORT_API_HOST": "127.0.0.1",
        "MEDIAIMPORT_API_PORT": str(port),
        "MEDIAIMPORT_API_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    })
    return env


class ApiComponent:
    name = "api"

    def up(self, ctx: StackContext) -> State:
        home = ctx.home / "api"
        home.mkdir(parents=True, exist_ok=True)
        tokens_file = home / "tokens"
        tokens_file.write_text("# <sha256 of a token> <user-id>; `mediaimport-dev token USER`\n")
        tokens_file.chmod(0o600)
        token = add_token(tokens_file, STACK_USER)
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        port = free_port("127.0.0.1")
        log = home / "api.log"
        process = spawn(
            [sys.executable, "-m", "mediaimport_api"], log,
            env=api_env(ctx.env, port=port, tokens_file=tokens_file,
                        webhook_secret=webhook_secret, signing_key=secrets.token_hex(32)),
        )
        url = f"http://127.0.0.1:{port}"
        state = {"pid": process.pid, "log": str(log), "port": port, "url": url,
                 "tokens_file": str(tokens_file)}
        wait_started(process, log, lambda: self._ready(url), what="the API", timeout=60,
                     interval=0.2)
        # Part of the stack's environment from here on (`mediaimport-dev env`).
        ctx.env.update({
            "MEDIAIMPORT_API_URL": url,
            "MEDIAIMPORT_API_TOKEN": token,
            "MEDIAIMPORT_API_USER": STACK_USER,
            "MEDIAIMPORT_WEBHOOK_SECRET": webhook_secret,
        })
        return state

    @staticmethod
    def _ready(url: str) -> bool:
        try:
            return requests.get(f"{url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def down(self, state: State) -> None:
        stop_group(state["pid"], grace=15.0)

    def healthy(self, state: State) -> bool:
        if not pid_alive(state["pid"]):
            return False
        try:
            return requests.get(f"{state['url']}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    def describe(self, state: State) -> str:
        return (f"pid {state['pid']}, {state['url']} (docs {state['url']}/docs), imports in "
                f"namespace {NAMESPACE}, tokens {state['tokens_file']}")

    def log_path(self, state: State) -> Path | None:
        return Path(state["log"])


def configure_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="the user id the token stands for")
    parser.set_defaults(run=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    from mediaimport_dev.stack import Stack  # noqa: PLC0415 - the stack imports this module

    state = (Stack(args.home).load() or {}).get("components", {}).get(ApiComponent.name)
    if state is None:
        print("mediaimport-dev: the API is not up (mediaimport-dev up)", file=sys.stderr)
        return 1
    try:
        token = add_token(Path(state["tokens_file"]), args.user)
    except ValueError as error:
        print(f"mediaimport-dev: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0
