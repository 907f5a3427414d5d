"""The API's settings, read from MEDIAIMPORT_API_* environment variables.

Every field is documented here once; docs/api.md and the chart's values mirror
this list. S3 credentials, region and the cluster-side endpoint come from the
standard AWS_* variables (as for the operator and the job).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .signatures import SECRET_PREFIX as WEBHOOK_SECRET_PREFIX
from .signatures import secret_key

# A namespace's name (a DNS label).
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _default_namespace() -> str:
    return os.environ.get("POD_NAMESPACE") or "default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDIAIMPORT_API_", frozen=True, extra="ignore")

    namespace: str = Field(
        default_factory=_default_namespace,
        description="Namespace the MediaImports are created in (default: POD_NAMESPACE, "
        "else 'default').",
    )
    served_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated namespaces whose imports the API's users see (their "
        "assets in GET /api/v1/media); the API's own namespace is always one of them. An "
        "import made in any other namespace for a user's id is not that user's media. Unset: "
        "the API's own namespace only. Assets without a namespace (rows the application "
        "wrote itself, without an import) are always served.",
    )
    tokens_file: Path | None = Field(
        default=None,
        description="File of bearer tokens, one '<sha256 hex of the token> <user-id>' per line "
        "('#' comments and blank lines ignored); re-read when it changes. Unset: every "
        "authenticated request is refused.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="The Standard Webhooks secret ('whsec_...') Replicate signs deliveries "
        "with. Unset: the webhook endpoints answer 503.",
    )
    context_signing_key: SecretStr | None = Field(
        default=None,
        description="Key that signs the context of issued webhook URLs (at least 32 "
        "characters). Unset: the webhook endpoints answer 503.",
    )
    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated CIDRs that source URLs may point at besides public "
        "addresses (the operator's MEDIAIMPORT_ALLOWED_NETWORKS).",
    )
    public_base_url: str | None = Field(
        default=None,
        description="The URL clients and Replicate reach this API by (e.g. "
        "https://media.example.com); issued webhook URLs start with it. Unset: the "
        "request's own address.",
    )
    database_url: str | None = Field(
        default=None, description="Postgres URL of the media_assets table (required)."
    )
    database_pool_size: int = Field(
        default=32, ge=1, le=256, description="Postgres connections of one API process."
    )
    bucket: str = Field(default="mediaimport", description="The S3 bucket of the media.")
    s3_public_endpoint: str | None = Field(
        default=None,
        description="S3 endpoint used in presigned URLs (clients may reach S3 by another "
        "address than the cluster). Unset: AWS_ENDPOINT_URL_S3, else AWS's own.",
    )
    image_wait_seconds: float = Field(
        default=30.0, ge=0, le=60,
        description="How long an image import waits for its result before answering 202.",
    )
    host: str = "0.0.0.0"  # noqa: S104 - the pod's port is reached from outside the pod
    port: int = Field(default=8000, ge=0, le=65535,
                      description="The API's port (the one an Ingress exposes).")
    admin_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port of /healthz, /readyz and /metrics (probes and Prometheus), on "
        "the same host; set, the API's port no longer serves /readyz and /metrics. Unset: "
        "everything on the API's port.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("admin_port", mode="before")
    @classmethod
    def _no_admin_port(cls, value: object) -> object:
        return None if value in ("", 0, "0") else value

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        if self.admin_port is not None and self.admin_port == self.port:
            raise ValueError("the admin port must differ from the API's port")
        return self

    @property
    def served(self) -> tuple[str, ...]:
        """The namespaces whose assets the API answers: its own first, then the others."""
        return tuple(dict.fromkeys([self.namespace, *self.served_namespaces]))

    @field_validator("allowed_networks", "served_namespaces", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(item, strict=False)) for item in value]

    @field_validator("served_namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAMESPACE.match(name):
                raise ValueError(f"{name!r} is not a namespace name")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            if not value.get_secret_value().startswith(WEBHOOK_SECRET_PREFIX):
                raise ValueError(f"the webhook secret must start with {WEBHOOK_SECRET_PREFIX!r}")
            secret_key(value.get_secret_value())  # ValueError unless base64 follows
        return value

    @field_validator("context_signing_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("the context signing key must be at least 32 characters")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("the public base URL must start with http:// or https://")
        return value
