"""Prometheus metrics of the API (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "mediaimport_api_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "mediaimport_api_request_duration_seconds",
    "Time to answer an HTTP request (to the start of a stream's body), by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "mediaimport_api_webhooks",
    "Replicate deliveries by outcome: created, duplicate, ignored (not succeeded), "
    "invalid_signature, invalid_context, invalid_body, unavailable.",
    ["outcome"],
    registry=REGISTRY,
)
IMPORTS_CREATED = Counter(
    "mediaimport_api_imports_created",
    "MediaImports created, by source (url, webhook).",
    ["source"],
    registry=REGISTRY,
)
OPEN_STREAMS = Gauge(
    "mediaimport_api_open_streams",
    "Open status streams, by kind (sse, websocket).",
    ["kind"],
    registry=REGISTRY,
)
WATCH_CONNECTED = Gauge(
    "mediaimport_api_watch_connected",
    "1 while the shared MediaImport watch is connected, else 0.",
    registry=REGISTRY,
)

WEBHOOK_OUTCOMES = ("created", "duplicate", "ignored", "invalid_signature", "invalid_context",
                    "invalid_body", "unavailable")
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOKS.labels(_outcome)
for _source in ("url", "webhook"):
    IMPORTS_CREATED.labels(_source)
for _kind in ("sse", "websocket"):
    OPEN_STREAMS.labels(_kind)
