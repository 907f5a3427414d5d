"""The operator's settings, read from MEDIAIMPORT_* environment variables.

Every field is documented here once; docs/operator.md and the chart's values
mirror this list.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .model import MediaType


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Operator configuration. Lists are comma-separated in the environment."""

    model_config = SettingsConfigDict(env_prefix="MEDIAIMPORT_", frozen=True, extra="ignore")

    # -- what to watch ------------------------------------------------------------
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch; empty means every namespace (cluster-wide).",
    )

    # -- the Job ----------------------------------------------------------------
    job_image: str = Field(
        default="ghcr.io/mediaimport/mediaimport-job:0.1.0", description="Image of the import Job."
    )
    job_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    job_command: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mediaimport-job"],
        description="The container command (the image's entrypoint is mediaimport-job).",
    )
    job_extra_env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra environment of the import container, as JSON (e.g. the job's "
            'MEDIAIMPORT_RETRIES or HTTPS_PROXY): {"NAME": "value"}.'
        ),
    )
    bucket: str = Field(default="mediaimport", description="S3 bucket the media is stored in.")
    s3_secret_name: str = Field(
        default="mediaimport-s3",
        description=(
            "Secret (in the import's namespace) with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_REGION and optionally AWS_ENDPOINT_URL_S3, given to the Job as envFrom."
        ),
    )
    key_prefix_template: str = Field(
        default="media/{user_id}/{asset_id}", description="S3 key prefix; {user_id} and {asset_id}."
    )
    backoff_limit: int = Field(default=3, ge=0, le=20, description="Job backoffLimit (retries).")
    deadline_video: int = Field(default=1800, ge=1, description="activeDeadlineSeconds for video.")
    deadline_image: int = Field(default=600, ge=1, description="activeDeadlineSeconds for images.")
    deadline_audio: int = Field(default=600, ge=1, description="activeDeadlineSeconds for audio.")
    ttl_seconds_after_finished: int = Field(
        default=3600, ge=0, description="Job ttlSecondsAfterFinished (the status keeps the result)."
    )
    max_bytes: int = Field(
        default=10 * 1024**3, ge=1, description="Largest file accepted, in bytes (--max-bytes)."
    )
    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "CIDRs that sources may resolve to in addition to public addresses "
            "(--allow-network); e.g. an internal CDN."
        ),
    )
    cpu_request: str = "250m"
    cpu_limit: str = "2"
    memory_request: str = "256Mi"
    memory_limit: str = "1Gi"
    tmp_size_limit: str = Field(
        default="20Gi",
        description="sizeLimit of the Job's /tmp emptyDir (the download lands there).",
    )
    job_service_account: str | None = Field(
        default=None, description="ServiceAccount for import pods (its token is never mounted)."
    )
    run_as_user: int = Field(default=10001, ge=1, description="UID of the import container.")

    # -- Postgres ---------------------------------------------------------------
    database_url: str | None = Field(
        default=None, description="Postgres URL of the media_assets table; unset = no recording."
    )
    database_timeout: float = Field(
        default=3.0, gt=0, description="Seconds to wait for a database connection before giving up."
    )
    database_pool_size: int = Field(default=4, ge=1, le=64)
    record_retry_interval: float = Field(
        default=10.0, gt=0, description="Seconds between retries of a row write that failed."
    )
    orphan_sweep_interval: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between sweeps that fail rows of imports deleted while unseen.",
    )

    # -- deletion ----------------------------------------------------------------
    delete_objects_on_delete: bool = Field(
        default=False,
        description=(
            "Delete the stored S3 objects when a Ready MediaImport is deleted (through a "
            "finalizer); by default they are kept and the row stays ready."
        ),
    )

    # -- operations ---------------------------------------------------------------
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /healthz and /metrics."
    )
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    concurrency: int = Field(
        default=16, ge=1, le=256, description="Parallel API calls and handler workers."
    )
    api_timeout: float = Field(
        default=30.0, gt=0, description="Timeout of one API request, seconds."
    )
    watch_server_timeout: int = Field(
        default=300, gt=0, description="Server-side timeout of a watch request, seconds."
    )
    watch_client_timeout: float = Field(
        default=330.0, gt=0, description="Client-side timeout of a watch request, seconds."
    )
    watch_connect_timeout: float = Field(default=10.0, gt=0)
    event_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level of messages posted as Kubernetes Events."
    )
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # -- high availability ---------------------------------------------------------
    leader_election: bool = Field(
        default=True, description="Elect one active replica through a coordination.k8s.io Lease."
    )
    lease_name: str = "mediaimport-operator"
    lease_namespace: str | None = Field(
        default=None,
        description=(
            "Namespace of the Lease (default: the pod's namespace from "
            "POD_NAMESPACE, else 'default')."
        ),
    )
    lease_duration: float = Field(default=15.0, gt=0, description="Seconds a leader's lease lasts.")
    lease_renew_deadline: float = Field(default=10.0, gt=0)
    lease_retry_period: float = Field(default=2.0, gt=0)
    identity: str = Field(
        default_factory=lambda: (
            os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        ),
        description="This replica's identity in the Lease (default: POD_NAME or host-pid).",
    )

    @field_validator("namespaces", "job_command", "allowed_networks", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(item, strict=False)) for item in value]

    def deadline_for(self, media_type: MediaType | None) -> int:
        """activeDeadlineSeconds for a type; an undetected type gets video's (the longest)."""
        if media_type == "image":
            return self.deadline_image
        if media_type == "audio":
            return self.deadline_audio
        return self.deadline_video

    @property
    def lease_namespace_resolved(self) -> str:
        return self.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
