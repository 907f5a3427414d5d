"""A small JSON client for the Kubernetes API, used by the local stack and the tests.

Why not the generated `kubernetes` client everywhere: plain dicts are both faster than
the generated models and free of their quirks (the Binding subresource's spurious ValueError,
kubernetes-client/python#547). Connection settings still come from the ordinary
kubeconfig loader, so anything kubectl accepts works here too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from kubernetes import client, config

Json = dict[str, Any]


class KubeError(RuntimeError):
    """A non-2xx answer of the API server, with its Status reason and message."""

    def __init__(self, method: str, path: str, status: int, body: Json | str) -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        message = body.get("message", "") if isinstance(body, dict) else body[:500]
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {message}")


@dataclass
class Kube:
    """Talks to one API server; safe to share between threads (one session per thread)."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    timeout: float = 30.0
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def from_kubeconfig(cls, path: Path | str, context: str | None = None) -> Kube:
        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), context=context, client_configuration=cfg
        )
        auth = cfg.auth_settings().get("BearerToken")
        token = str(auth["value"]).removeprefix("Bearer ") if auth else None
        return cls(
            server=str(cfg.host),
            ca_file=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            token=token,
        )

    def with_token(self, token: str) -> Kube:
        """The same server seen by another identity (e.g. a ServiceAccount token)."""
        return Kube(server=self.server, ca_file=self.ca_file, token=token, timeout=self.timeout)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # Not the environment's CA bundle (REQUESTS_CA_BUNDLE would silently
            # override a session's verify setting): this cluster's CA only.
            session.trust_env = False
            session.verify = self.ca_file or True
            if self.cert_file and self.key_file:
                session.cert = (self.cert_file, self.key_file)
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            self._local.session = session
        return session

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Json:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        response = self._session().request(
            method,
            self.server + path,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout or self.timeout,
        )
        if not 200 <= response.status_code < 300:
            try:
                err: Json | str = response.json()
            except ValueError:
                err = response.text
            raise KubeError(method, path, response.status_code, err)
        if not response.content:
            return {}
        result: Json = response.json()
        return result

    def text(self, path: str, *, timeout: float | None = None) -> str:
        """GET a non-JSON endpoint such as /readyz or a pod log."""
        response = self._session().get(self.server + path, timeout=timeout or self.timeout)
        if response.status_code != 200:
            raise KubeError("GET", path, response.status_code, response.text)
        return response.text

    def get(self, path: str, **params: str | int) -> Json:
        return self.request("GET", path, params=params)

    def create(self, path: str, body: Json) -> Json:
        return self.request("POST", path, body=body)

    def merge_patch(self, path: str, patch: Json) -> Json:
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Json | None = None) -> Json:
        return self.request("DELETE", path, body=body)

    def watch(
        self, path: str, *, resource_version: str, timeout_seconds: int = 60, **params: str
    ) -> Iterator[Json]:
        """Yield watch events ({type, object}) until the server ends the watch.

        The caller resumes from the last seen resourceVersion; a 410 Gone
        (as an ERROR event or a KubeError) means: list again.
        """
        query: dict[str, str | int] = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        with self._session().get(
            self.server + path, params=query, stream=True, timeout=(10, timeout_seconds + 30)
        ) as response:
            if response.status_code != 200:
                raise KubeError("WATCH", path, response.status_code, response.text)
            for line in response.iter_lines():
                if line:
                    event: Json = json.loads(line)
                    yield event
