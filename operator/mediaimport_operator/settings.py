"""The operator's settings, read from MEDIAIMPORT_* environment variables.

Every field is documented here once; docs/operator.md and the chart's values
mirror this list.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .model import MediaType

MiB = 1024 * 1024
# Room in /tmp besides the download: the thumbnail (a JPEG of at most 4096 pixels
# across) and ffmpeg's scratch files. The job keeps the same reserve (--tmp-limit).
TMP_RESERVE_BYTES = 64 * MiB
# The job needs a few seconds after SIGTERM to abort its upload and report.
MIN_GRACE_PERIOD = 10
RESOURCE_SECTIONS = ("requests", "limits")


def parse_quantity(value: str) -> Decimal:
    """A Kubernetes quantity ("20Gi", "500M", "1e3") as a number; ValueError if it is none."""
    # The client's own parser, imported late: the kubernetes package is slow to import.
    from kubernetes.utils.quantity import parse_quantity as parse  # noqa: PLC0415

    return Decimal(parse(value))  # type: ignore[no-untyped-call]


def _quantity_text(value: object) -> object:
    """A quantity given as a number, as text (``2``, ``1.5``); anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
            "MEDIAIMPORT_RETRIES or MEDIAIMPORT_DOWNLOAD_PROXY; HTTPS_PROXY and NO_PROXY "
            'reach only its S3 client, never the download): {"NAME": "value"}.'
        ),
    )
    bucket: str = Field(default="mediaimport", description="S3 bucket the media is stored in.")
    s3_secret_name: str = Field(
        default="mediaimport-s3",
        description=(
            "Secret (in the import's namespace) with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_REGION and optionally AWS_ENDPOINT_URL_S3, given to the Job as envFrom. "
            "Empty: no Secret, the credentials come from the pod's service account "
            "(IRSA, Workload Identity) and the region and endpoint from job_extra_env."
        ),
    )
    key_prefix_template: str = Field(
        default="media/{user_id}/{asset_id}", description="S3 key prefix; {user_id} and {asset_id}."
    )
    served_namespaces: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description=(
            "Namespaces an API serves to its users (the chart: the API's namespace and "
            "api.servedNamespaces, the list the API shows). Their "
            "imports keep the key layout key_prefix_template gives; every other namespace's "
            "imports are stored under namespaces/{namespace}/ in front of it, so an import "
            "made in another team's namespace for an API user's id never writes where that "
            "user's media are. Unset: every namespace keeps the layout (no API)."
        ),
    )
    backoff_limit: int = Field(default=3, ge=0, le=20, description="Job backoffLimit (retries).")
    deadline_video: int = Field(default=1800, ge=1, description="activeDeadlineSeconds for video.")
    deadline_image: int = Field(default=600, ge=1, description="activeDeadlineSeconds for images.")
    deadline_audio: int = Field(default=600, ge=1, description="activeDeadlineSeconds for audio.")
    ttl_seconds_after_finished: int = Field(
        default=3600,
        ge=0,
        description=(
            "ttlSecondsAfterFinished the operator sets on a finished Job once its result is in "
            "the MediaImport's status (until then the Job stays)."
        ),
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
    cpu_request: str = Field(default="250m", description="CPU request (see job_resources).")
    cpu_limit: str = Field(default="2", description="CPU limit (see job_resources).")
    memory_request: str = Field(default="256Mi", description="Memory request (job_resources).")
    memory_limit: str = Field(default="1Gi", description="Memory limit (see job_resources).")
    job_resources: dict[str, dict[str, str | None]] = Field(
        default_factory=dict,
        description=(
            "The import container's resources as a Kubernetes ResourceRequirements, in JSON "
            '({"requests": {...}, "limits": {...}}, any resource names), laid over the '
            "defaults built from the cpu/memory settings and the ephemeral-storage request; "
            'a null value removes that entry ({"limits": {"cpu": null}}: no CPU limit).'
        ),
    )
    tmp_size_limit: str | None = Field(
        default=None,
        description=(
            "sizeLimit of the Job's /tmp emptyDir, where the download lands; it is also the "
            "pod's ephemeral-storage request. Default: max_bytes plus room for the thumbnail. "
            "A file that cannot fit fails as TooLarge."
        ),
    )
    job_service_account: str | None = Field(
        default=None, description="ServiceAccount for import pods (its token is never mounted)."
    )
    job_node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector of import pods (JSON object)."
    )
    job_tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="tolerations of import pods (JSON list)."
    )
    job_affinity: dict[str, Any] = Field(
        default_factory=dict, description="affinity of import pods (JSON object)."
    )
    job_priority_class_name: str | None = Field(
        default=None, description="priorityClassName of import pods."
    )
    job_image_pull_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Names of Secrets (in the import's namespace) to pull the job image with.",
    )
    job_pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels of import pods (JSON object); the operator's own labels win.",
    )
    job_pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of import pods (JSON object)."
    )
    job_termination_grace_period_seconds: int = Field(
        default=60,
        ge=MIN_GRACE_PERIOD,
        le=3600,
        description=(
            "terminationGracePeriodSeconds of import pods. After SIGTERM (a cancellation, "
            "the deadline, a drain) the job aborts its upload, deletes what it wrote and "
            "writes its result within this period, less a margin."
        ),
    )
    run_as_user: int = Field(default=10001, ge=1, description="UID of the import container.")

    # -- the per-import channel (docs/operator.md, "The import pod's channel") -----
    storage_access: Literal["brokered", "credentials"] = Field(
        default="brokered",
        description=(
            "How import pods write to S3. brokered: the pod holds no S3 credential and asks "
            "the operator's channel for presigned write URLs under its own prefix (the "
            "operator signs with the namespace's S3 Secret, or its own identity when "
            "s3_secret_name is empty). credentials: the pod gets the Secret (or its service "
            "account's identity) as before; progress and the result still go through the "
            "channel."
        ),
    )
    channel_keys_dir: str | None = Field(
        default=None,
        description=(
            "Directory of the channel's HMAC keys (the chart mounts its Secret here): one "
            "file per key, named by its id; credentials are signed with the highest id and "
            "checked against every key present, so a rotation keeps running imports valid. "
            "Unset: no channel (storage_access must then be credentials)."
        ),
    )
    channel_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - import pods connect from other pods
        description="Address the channel listens on.",
    )
    channel_port: int = Field(
        default=8081, ge=0, le=65535, description="Port of the channel (0: any free port)."
    )
    channel_url: str | None = Field(
        default=None,
        description=(
            "Base URL import pods reach the channel at (http://host:port). Unset: from "
            "channel_service, else http://channel_host:port when channel_host is an address."
        ),
    )
    channel_service: str | None = Field(
        default=None,
        description=(
            "Service (in the operator's namespace) whose cluster IP and port named "
            "'channel' give channel_url: import pods need no cluster DNS to reach it."
        ),
    )
    channel_credential_margin: int = Field(
        default=300,
        ge=0,
        le=86400,
        description=(
            "Seconds a channel credential stays valid past the import's deadline and grace "
            "period (a Job created late in its import's life still finishes)."
        ),
    )
    channel_progress_writes: float = Field(
        default=10.0,
        gt=0,
        le=1000,
        description=(
            "Most status.progress writes per second a replica makes, whatever the number of "
            "imports reporting (each is written at most every 2 s): beyond it reports are "
            "dropped, as they are while this replica creates Jobs — progress never slows "
            "Job creation or status writes."
        ),
    )
    s3_region: str | None = Field(
        default=None,
        description="Region of the operator's own S3 client (when s3_secret_name is empty).",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="Endpoint of the operator's own S3 client, for S3-compatible stores.",
    )

    # -- Postgres ---------------------------------------------------------------
    database_url: str | None = Field(
        default=None, description="Postgres URL of the media_assets table; unset = no recording."
    )
    database_timeout: float = Field(
        default=3.0, gt=0, description="Seconds to wait for a database connection before giving up."
    )
    database_pool_size: int = Field(default=4, ge=1, le=64)
    record_retry_interval: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds before the first retry of a row write, a Job creation or a Job event "
            "that failed; the pause doubles with each failure up to retry_max_interval."
        ),
    )
    retry_max_interval: float = Field(
        default=120.0, gt=0, description="Longest pause between two retries, seconds."
    )
    resync_interval: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between resyncs of every live import (what a watch missed).",
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
    list_page_size: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description=(
            "Objects per page when the operator lists MediaImports (at start, and when a watch "
            "must start over), Jobs and pods; one page is in memory at a time (a listed "
            "MediaImport takes some 18 KB while its page is handled)."
        ),
    )
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

    @field_validator(
        "namespaces", "job_command", "allowed_networks", "job_image_pull_secrets",
        "served_namespaces", mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(item, strict=False)) for item in value]

    @field_validator("tmp_size_limit")
    @classmethod
    def _tmp_size(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if parse_quantity(value) < TMP_RESERVE_BYTES + 1:
            raise ValueError(f"tmp_size_limit {value!r} leaves no room: at least 65Mi")
        return value.strip()

    @field_validator("job_resources", mode="before")
    @classmethod
    def _quantities_as_text(cls, value: object) -> object:
        """Quantities given as JSON numbers (helm renders ``cpu: 1.5`` and ``--set
        ...cpu=2`` as numbers) become the text Kubernetes would write."""
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict):
            return value
        return {
            section: {name: _quantity_text(q) for name, q in entries.items()}
            if isinstance(entries, dict) else entries
            for section, entries in value.items()
        }

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        # leader.py's safety argument: a leader stops acting at its renew deadline, which
        # must come before its Lease can expire for a standby.
        if self.lease_renew_deadline >= self.lease_duration:
            raise ValueError(
                f"lease_renew_deadline ({self.lease_renew_deadline:g}) must be less than "
                f"lease_duration ({self.lease_duration:g})"
            )
        return self

    @field_validator("job_resources")
    @classmethod
    def _resources(
        cls, value: dict[str, dict[str, str | None]]
    ) -> dict[str, dict[str, str | None]]:
        for section, entries in value.items():
            if section not in RESOURCE_SECTIONS:
                raise ValueError(f"job_resources: {section!r} is not one of requests, limits")
            for quantity in entries.values():
                if quantity is not None:
                    parse_quantity(quantity)  # raises ValueError with the bad value
        return value

    @property
    def tmp_size(self) -> str:
        """The /tmp sizeLimit: the setting, or max_bytes plus the reserve in whole MiB."""
        if self.tmp_size_limit:
            return self.tmp_size_limit
        return f"{math.ceil((self.max_bytes + TMP_RESERVE_BYTES) / MiB)}Mi"

    @property
    def tmp_size_bytes(self) -> int:
        return int(parse_quantity(self.tmp_size))

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
