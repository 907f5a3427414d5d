"""Prometheus metrics of the operator (served on /metrics next to /healthz)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .db import UpsertOutcome
from .retries import Work
from .status import REASON_IMPORTED

REGISTRY = CollectorRegistry(auto_describe=True)

# Label values: the outcome of an import, and the row-write result beside UpsertOutcome's.
OUTCOME_READY, OUTCOME_FAILED = "ready", "failed"
ROW_UNAVAILABLE = "unavailable"
ROW_REJECTED = "rejected"

IMPORTS = Counter(
    "mediaimport_imports",
    "Imports that reached a terminal phase, by outcome (ready/failed) and reason.",
    ["outcome", "reason"],
    registry=REGISTRY,
)
IMPORT_DURATION = Histogram(
    "mediaimport_import_duration_seconds",
    "From the Job's creation to the import's terminal phase.",
    ["outcome"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "mediaimport_imports_in_flight",
    "MediaImports seen by this replica that are Pending or Importing.",
    registry=REGISTRY,
)
JOBS_CREATED = Counter(
    "mediaimport_jobs_created",
    "Import Jobs created (a Job found already there is not counted).",
    registry=REGISTRY,
)
ROW_WRITES = Counter(
    "mediaimport_row_writes",
    "media_assets writes by result (written, terminal, conflict, unavailable, rejected).",
    ["result"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "mediaimport_operator_leader",
    "1 while this replica holds the leader Lease and acts, else 0.",
    registry=REGISTRY,
)
RETRY_QUEUE = Gauge(
    "mediaimport_retry_queue",
    "Work waiting in the retry queue, by kind (start, sync, record-deleted, finalizer).",
    ["work"],
    registry=REGISTRY,
)
IMPORT_LOCKS = Gauge(
    "mediaimport_operator_import_locks",
    "Per-import locks the operator holds (imports being worked on or waited for).",
    registry=REGISTRY,
)
INVALID_RESULTS = Counter(
    "mediaimport_invalid_results",
    "Results of import pods that failed the checks (another bucket, a key outside the "
    "import's prefix, missing objects or sizes, a pod not owned by its Job).",
    registry=REGISTRY,
)
LOOP_ERRORS = Counter(
    "mediaimport_background_errors",
    "Failed rounds and ended tasks of the operator's background loops, by loop.",
    ["loop"],
    registry=REGISTRY,
)

# The per-import channel (channel.py).
CHANNEL_REQUESTS = Counter(
    "mediaimport_channel_requests",
    "Requests of import pods to the channel, by endpoint and HTTP status code.",
    ["endpoint", "code"],
    registry=REGISTRY,
)
PROGRESS_WRITES = Counter(
    "mediaimport_progress_writes",
    "status.progress writes by result: written; finished (the import was no longer "
    "Importing); dropped (too many in flight); failed.",
    ["result"],
    registry=REGISTRY,
)
PROGRESS_WRITTEN, PROGRESS_FINISHED = "written", "finished"
PROGRESS_DROPPED, PROGRESS_FAILED = "dropped", "failed"


# Series that exist from the start, so that rate() and alerts see a zero, not nothing,
# until the first import ends. Failure reasons are many and appear as they happen.
IMPORTS.labels(OUTCOME_READY, REASON_IMPORTED)
for _outcome in (OUTCOME_READY, OUTCOME_FAILED):
    IMPORT_DURATION.labels(_outcome)
for _result in [*(o.value for o in UpsertOutcome), ROW_UNAVAILABLE, ROW_REJECTED]:
    ROW_WRITES.labels(_result)
for _work in Work:
    RETRY_QUEUE.labels(_work.value)
for _result in (PROGRESS_WRITTEN, PROGRESS_FINISHED, PROGRESS_DROPPED, PROGRESS_FAILED):
    PROGRESS_WRITES.labels(_result)
