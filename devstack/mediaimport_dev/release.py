"""The operator and the API as a Helm release of charts/mediaimport: the local stack runs the
chart the way users install it (`mediaimport-dev up`), and `mediaimport-dev token USER`.

`up` creates the Secrets the chart's values name (S3 credentials, the Postgres URL, the
API's tokens, webhook secret and context-signing key) in namespace `default`, then runs
`helm upgrade --install` of the chart with the images the node imported (pull policy
Never): the CRD, the operator with two replicas (one leader) and the API, as pods. Postgres
and S3 stay services of this machine that the pods reach on the node's link. The API's
Service is reachable from this machine (the node's Service range is routed over the veth),
so MEDIAIMPORT_API_URL in `mediaimport-dev env` points at it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from mediaimport_api.auth import hash_token, new_token, valid_user_id

from mediaimport_dev.binaries import binary
from mediaimport_dev.images import OPERATOR_IMAGE, job_image
from mediaimport_dev.kube import Json, Kube, KubeError

if TYPE_CHECKING:
    from mediaimport_dev.stack import StackContext

State = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/mediaimport"
RELEASE = "mediaimport"
NAMESPACE = "default"
# The chart's object names for a release called like the chart (its fullname rule).
OPERATOR = f"{RELEASE}-operator"  # the Deployment and its Lease
API_SERVICE = f"{RELEASE}-api"
STACK_USER = "dev-user"
S3_SECRET = "mediaimport-s3"  # noqa: S105 - Secret names, not secrets
DB_SECRET = "mediaimport-db"  # noqa: S105
API_SECRET = "mediaimport-api"  # noqa: S105
TOKENS_KEY = "tokens"
PARTS = ("operator", "api")
READY_TIMEOUT = 300.0
TOKEN_TIMEOUT = 120.0
_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL_S3")


def _image(name: str) -> dict[str, str]:
    repository, _, tag = name.rpartition(":")
    # Imported into the node's containerd: there is no registry to pull from.
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


def stack_values(*, operator_image: str, job_image: str, bucket: str, s3_endpoint: str,
                 region: str, allowed_networks: list[str]) -> Json:
    """The chart values of the local stack: this checkout's images as the node has them,
    small CPU requests (a 2-core machine shares them), S3 and Postgres on the node's link."""
    small = {"requests": {"cpu": "10m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}}
    return {
        "operator": {"replicaCount": 2, "image": _image(operator_image), "resources": small},
        "api": {
            "replicaCount": 1, "image": _image(operator_image), "resources": small,
            "tokens": {"existingSecret": API_SECRET, "key": TOKENS_KEY},
            "webhookSecret": {"existingSecret": API_SECRET},
            "contextSigningKey": {"existingSecret": API_SECRET},
        },
        "job": {"image": _image(job_image),
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                              "limits": {"cpu": "2", "memory": "1Gi"}}},
        "s3": {"bucket": bucket, "region": region, "endpoint": s3_endpoint,
               "publicEndpoint": s3_endpoint, "existingSecret": S3_SECRET},
        "database": {"existingSecret": DB_SECRET},
        "allowedNetworks": allowed_networks,
    }


def pod_database_url(url: str, host: str) -> str:
    """The stack's Postgres URL with the address pods reach it on."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace(f"@{parts.hostname}", f"@{host}", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def put_secret(kube: Kube, name: str, data: dict[str, str], namespace: str = NAMESPACE) -> None:
    path = f"/api/v1/namespaces/{namespace}/secrets"
    body: Json = {"metadata": {"name": name}, "stringData": data}
    try:
        kube.create(path, body)
    except KubeError as error:
        if error.status != 409:
            raise
        kube.request("PUT", f"{path}/{name}", body={**body, "data": None})


def helm(kubeconfig: str, *args: str, timeout: float = 600) -> str:
    """Run the pinned helm; its own message on failure."""
    try:
        done = subprocess.run([str(binary("helm")), "--kubeconfig", kubeconfig, *args],
                              capture_output=True, text=True, check=True, timeout=timeout)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"helm {args[0]} failed: {error.stderr.strip()}") from error
    return done.stdout


def _service_urls(service: Json) -> tuple[str, str]:
    """The API's URL (its Service port ``http``, the one an Ingress reaches) and the URL
    of its probes and metrics (``http-admin``; the same without an admin port)."""
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    host = service["spec"]["clusterIP"]
    admin = ports.get("http-admin", ports["http"])
    return f"http://{host}:{ports['http']}", f"http://{host}:{admin}"


def _ready(url: str, token: str | None = None) -> bool:
    """The API answers /readyz at ``url``, its admin URL (or, with a token, ``url`` is
    the API's and accepts it)."""
    path, headers = ("/api/v1/media?limit=1", {"Authorization": f"Bearer {token}"}) if token \
        else ("/readyz", {})
    try:
        return requests.get(f"{url}{path}", headers=headers, timeout=3).status_code == 200
    except requests.RequestException:
        return False


def _leader(kube: Kube) -> str | None:
    try:
        lease = kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{OPERATOR}")
    except KubeError:
        return None
    holder: str | None = (lease.get("spec") or {}).get("holderIdentity")
    return holder


def _wait(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # start-up only: short polling keeps it simple
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:.0f} s (kubectl get pods -n {NAMESPACE}"
                               f"; mediaimport-dev logs release)")
        time.sleep(0.5)


class ReleaseComponent:
    name = "release"

    def up(self, ctx: StackContext) -> State:
        env = ctx.env
        kube = Kube.from_kubeconfig(env["KUBECONFIG"])
        home = ctx.home / self.name
        home.mkdir(parents=True, exist_ok=True)
        token = new_token()
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        put_secret(kube, S3_SECRET, {k: env[k] for k in _AWS_KEYS if k in env})
        put_secret(kube, DB_SECRET, {"url": pod_database_url(
            env["DATABASE_URL"], env["MEDIAIMPORT_ORIGIN_HOST"])})
        put_secret(kube, API_SECRET, {
            TOKENS_KEY: f"# <sha256 of a token> <user-id>; `mediaimport-dev token USER`\n"
                        f"{hash_token(token)} {STACK_USER}\n",
            "webhook-secret": webhook_secret,
            "context-signing-key": secrets.token_hex(32),
        })
        values = home / "values.json"
        values.write_text(json.dumps(stack_values(
            operator_image=OPERATOR_IMAGE, job_image=job_image(ctx.images), bucket=ctx.bucket,
            s3_endpoint=env["AWS_ENDPOINT_URL_S3"], region=env.get("AWS_REGION", "us-east-1"),
            allowed_networks=ctx.allow_networks), indent=2))
        state: State = {"kubeconfig": env["KUBECONFIG"], "values": str(values),
                        "logs": str(home / "logs")}
        helm(env["KUBECONFIG"], "upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE,
             "-f", str(values), "--wait", "--timeout", f"{READY_TIMEOUT:.0f}s")
        service = kube.get(f"/api/v1/namespaces/{NAMESPACE}/services/{API_SERVICE}")
        state["url"], state["admin_url"] = _service_urls(service)
        _wait("no operator replica became the leader", lambda: _leader(kube), 120)
        _wait(f"the API at {state['url']} did not become ready",
              lambda: _ready(state["url"], token), 120)
        env.update({"MEDIAIMPORT_API_URL": state["url"], "MEDIAIMPORT_API_TOKEN": token,
                    "MEDIAIMPORT_API_USER": STACK_USER,
                    "MEDIAIMPORT_WEBHOOK_SECRET": webhook_secret})
        return state

    def down(self, state: State) -> None:
        """Nothing to do: the release lives in the control plane's etcd and its pods on the
        node, and both stop right after (an uninstall would only wait for the pods)."""

    def healthy(self, state: State) -> bool:
        # /readyz is on the admin port (a state from before there was one: the API's).
        if "url" not in state or not _ready(str(state.get("admin_url", state["url"]))):
            return False
        try:
            kube = Kube.from_kubeconfig(state["kubeconfig"])
            deployment = kube.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{OPERATOR}")
        except (KubeError, OSError, requests.RequestException):
            return False
        return bool((deployment.get("status") or {}).get("readyReplicas")) and bool(
            _leader(kube))

    def describe(self, state: State) -> str:
        return (f"helm release {RELEASE} in {NAMESPACE}: operator x2 (Lease {OPERATOR}), "
                f"API {state.get('url')} (docs {state.get('url')}/docs); "
                f"kubectl logs deploy/{OPERATOR}")

    def log_path(self, state: State) -> Path | None:
        """The pods' logs, fetched now with kubectl into one file per part."""
        directory = Path(state["logs"])
        directory.mkdir(parents=True, exist_ok=True)
        for part in PARTS:
            selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={part}"
            done = subprocess.run(
                [str(binary("kubectl")), "--kubeconfig", state["kubeconfig"], "logs", "-n",
                 NAMESPACE, "-l", selector, "--prefix", "--tail", "-1", "--all-containers"],
                capture_output=True, text=True, check=False, timeout=60)
            (directory / f"{part}.log").write_text(done.stdout + done.stderr)
        return directory


def add_token(kube: Kube, user: str) -> str:
    """A new token for ``user``, added to the tokens Secret the API pods mount."""
    if not valid_user_id(user):
        raise ValueError(
            f"{user!r} is not a valid user id: letters, digits, '.', '_', '@' or '-', "
            "at most 128, starting with a letter or digit, no '..'"
        )
    token = new_token()
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets/{API_SECRET}"
    secret = kube.get(path)
    lines = base64.b64decode(secret["data"][TOKENS_KEY]).decode()
    # The resourceVersion makes two concurrent additions conflict instead of losing one.
    kube.request("PUT", path, body={
        **secret, "data": {**secret["data"], TOKENS_KEY: base64.b64encode(
            f"{lines}{hash_token(token)} {user}\n".encode()).decode()}})
    return token


def configure_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", help="the user id the token stands for")
    parser.set_defaults(run=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    from mediaimport_dev.stack import Stack  # noqa: PLC0415 - the stack imports this module

    state = (Stack(args.home).load() or {}).get("components", {}).get(ReleaseComponent.name)
    if state is None or "url" not in state:
        print("mediaimport-dev: the API is not up (mediaimport-dev up)", file=sys.stderr)
        return 1
    try:
        token = add_token(Kube.from_kubeconfig(state["kubeconfig"]), args.user)
    except ValueError as error:
        print(f"mediaimport-dev: {error}", file=sys.stderr)
        return 2
    # The kubelet refreshes the mounted Secret on its next sync and the API re-reads the
    # file each second: print the token once it works, so a script can use it at once.
    try:
        _wait("the API did not accept the new token", lambda: _ready(state["url"], token),
              float(os.environ.get("MEDIAIMPORT_DEV_TOKEN_TIMEOUT", TOKEN_TIMEOUT)))
    except RuntimeError as error:
        print(f"mediaimport-dev: {error}", file=sys.stderr)
        return 1
    print(token)
    return 0
