"""Replicate webhooks: issuing signed webhook URLs, and receiving deliveries.

A delivery is checked in this order, and nothing is created unless all pass: the
Standard Webhooks signature over the raw body (401), the signed context that says
for whom, and that user still holding a token (403), the delivery's webhook-id not
already received with another context (409: remembered in Postgres, which every
replica shares, for as long as its signature is accepted), the body (422). A
succeeded prediction becomes one MediaImport per output URL, named from the user,
prediction id and output index, so a redelivery answers 200 with the same imports
and creates nothing. The answer comes within a second (Replicate retries slow
answers): work that takes longer goes on, and the delivery is answered 503 so that
Replicate's retry finds it done.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from .. import context, metrics, replicate
from ..deps import ServicesDep, UserDep
from ..errors import ApiProblem, responses
from ..schemas import WebhookAnswer, WebhookUrl, WebhookUrlRequest
from ..signatures import TOLERANCE_SECONDS, SignatureError, secret_key, verify
from ..store import bind_delivery
from ..validation import (
    MAX_METADATA_KEYS,
    SourceUrlError,
    check_url_address,
    check_url_shape,
    metadata_problem,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
log = logging.getLogger(__name__)

ANSWER_WITHIN_SECONDS = 0.9
# A delivery is remembered a little longer than its signature is accepted: the replicas'
# clocks may differ by that much.
CLOCK_MARGIN_SECONDS = 60
MAX_CONTEXT_METADATA_BYTES = 4096
# Creations still running when a delivery was answered: kept so they are not collected.
_unfinished: set[asyncio.Future[Any]] = set()


def _keys(services: ServicesDep) -> tuple[bytes, bytes]:
    settings = services.settings
    if settings.webhook_secret is None or settings.context_signing_key is None:
        raise ApiProblem(503, "webhooks_disabled",
                         "Webhooks are not configured on this server (no webhook secret "
                         "or context signing key).")
    return (secret_key(settings.webhook_secret.get_secret_value()),
            settings.context_signing_key.get_secret_value().encode())


@router.post("/replicate/urls", response_model=WebhookUrl, summary="Issue a webhook URL",
             responses=responses(401, 413, 415, 422, 503))
async def issue_url(
    request: Request,
    user: UserDep,
    services: ServicesDep,
    body: Annotated[WebhookUrlRequest | None, Body()] = None,
) -> Any:
    """A URL to give Replicate as a prediction's ``webhook``: its signed ``context`` carries
    your user id, the metadata given here and an expiry."""
    _, signing_key = _keys(services)
    body = body or WebhookUrlRequest()
    metadata = body.metadata or {}
    problem = metadata_problem(metadata)
    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if problem is None and size > MAX_CONTEXT_METADATA_BYTES:
        problem = "metadata is larger than 4 KiB as JSON (it travels inside the URL)"
    if problem is None and (merged := _merged_keys(metadata)) > MAX_METADATA_KEYS:
        # Every delivery adds the prediction's keys: checked now, not when Replicate
        # delivers (by then its outputs are an hour from being deleted).
        problem = (f"metadata leaves no room for the keys every delivery adds ("
                   f"{', '.join(sorted(replicate.PREDICTION_METADATA_KEYS))}): an import "
                   f"would have {merged} keys, more than {MAX_METADATA_KEYS}; use at most "
                   f"{_room()} keys of your own (those names excepted), or nest them "
                   f"under one key")
    if problem:
        raise ApiProblem(422, "validation_failed", f"metadata: {problem}")
    expires_at = int(time.time()) + body.expires_in
    token = context.issue(signing_key, context.WebhookContext(user, expires_at, metadata))
    base = services.settings.public_base_url or str(request.base_url).rstrip("/")
    return {"url": f"{base}/api/v1/webhooks/replicate?context={token}",
            "expires_at": datetime.fromtimestamp(expires_at, UTC).isoformat()}


@router.post(
    "/replicate",
    response_model=WebhookAnswer,
    summary="Receive a Replicate delivery",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "description": "A Replicate prediction."}}}}},
    responses=responses(401, 403, 409, 413, 415, 422, 503),
)
async def receive(
    request: Request,
    services: ServicesDep,
    context_token: Annotated[str | None, Query(
        alias="context", description="The signed context of an issued URL."
    )] = None,
) -> Any:
    """Signed with Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)."""
    webhook_key, signing_key = _keys(services)
    raw = await request.body()
    try:
        delivery = verify(webhook_key, request.headers, raw)
    except SignatureError as error:
        metrics.WEBHOOKS.labels("invalid_signature").inc()
        raise ApiProblem(401, "invalid_signature", f"The delivery is not genuine: {error}.",
                         headers={"WWW-Authenticate": 'Webhook-Signature realm="mediaimport"'}
                         ) from error
    try:
        ctx = context.read(signing_key, context_token)
    except context.ContextError as error:
        metrics.WEBHOOKS.labels("invalid_context").inc()
        raise ApiProblem(403, "invalid_context", f"The webhook URL is not valid: {error}."
                         ) from error
    if not services.tokens.has_user(ctx.user_id):
        # The URL is as good as the user's access: revoking their tokens revokes it.
        metrics.WEBHOOKS.labels("invalid_context").inc()
        raise ApiProblem(403, "invalid_context", "The webhook URL is not valid: the user it "
                         "was issued to no longer holds a valid token (revoked).")
    bound_to = await bind_delivery(services.db, delivery.message_id, ctx.user_id,
                                   context_token or "",
                                   delivery.timestamp + TOLERANCE_SECONDS + CLOCK_MARGIN_SECONDS)
    if bound_to is not None:
        # A genuine delivery re-posted within its signature window with another URL's
        # context: it may only create imports for the URL Replicate was given.
        metrics.WEBHOOKS.labels("delivery_conflict").inc()
        raise ApiProblem(409, "delivery_conflict",
                         f"This delivery (webhook-id {delivery.message_id[:100]!r}) was "
                         "already received through another webhook URL; a delivery is only "
                         "accepted for the URL it was sent to.")
    try:
        prediction = replicate.prediction_from_body(raw)
    except replicate.PredictionError as error:
        metrics.WEBHOOKS.labels("invalid_body").inc()
        raise ApiProblem(422, "validation_failed", f"The body is not a prediction: {error}"
                         ) from error
    if prediction.status != replicate.SUCCEEDED or not prediction.outputs:
        metrics.WEBHOOKS.labels("ignored").inc()
        return {"imports": [], "rejected": []}
    merged = _merged_keys(ctx.metadata)
    if merged > MAX_METADATA_KEYS:  # a URL issued before the check at issue time
        metrics.WEBHOOKS.labels("invalid_body").inc()
        raise ApiProblem(
            422, "validation_failed",
            f"The webhook URL's metadata and the prediction's make {merged} keys, more than "
            f"the {MAX_METADATA_KEYS} an import may have: issue a new webhook URL with at "
            f"most {_room()} metadata keys of your own (other than "
            f"{', '.join(sorted(replicate.PREDICTION_METADATA_KEYS))}).")
    accepted, rejected = _checked_outputs(prediction, services)
    work = asyncio.ensure_future(asyncio.gather(*(
        services.imports.import_output(ctx.user_id, prediction, index, url, ctx.metadata)
        for index, url in accepted
    )))
    try:
        results = await asyncio.wait_for(asyncio.shield(work), ANSWER_WITHIN_SECONDS)
    except TimeoutError as error:
        _unfinished.add(work)
        work.add_done_callback(_finished)
        metrics.WEBHOOKS.labels("unavailable").inc()
        raise ApiProblem(503, "unavailable", "Still creating the imports; retry.",
                         headers={"Retry-After": "1"}) from error
    except Exception:
        metrics.WEBHOOKS.labels("unavailable").inc()
        raise
    created = any(was_created for _, _, was_created in results)
    metrics.WEBHOOKS.labels("created" if created else "duplicate").inc()
    return {
        "imports": [{"id": asset, "import_job_id": name} for asset, name, _ in results],
        "rejected": rejected,
    }


def _merged_keys(context_metadata: dict[str, Any]) -> int:
    """How many metadata keys an import made from a delivery to this URL has, at most."""
    return len(set(context_metadata) | replicate.PREDICTION_METADATA_KEYS)


def _room() -> int:
    return MAX_METADATA_KEYS - len(replicate.PREDICTION_METADATA_KEYS)


def _checked_outputs(prediction: replicate.Prediction, services: ServicesDep
                     ) -> tuple[list[tuple[int, str]], list[dict[str, Any]]]:
    accepted: list[tuple[int, str]] = []
    rejected: list[dict[str, Any]] = []
    for index, url in enumerate(prediction.outputs):
        try:
            checked = check_url_shape(url)
            check_url_address(checked, services.policy)
        except SourceUrlError as error:
            rejected.append({"index": index, "url": url[:300], "message": str(error)})
            continue
        accepted.append((index, checked))
    return accepted, rejected


def _finished(task: asyncio.Future[Any]) -> None:
    _unfinished.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("webhook imports failed after the answer",
                    extra={"error": str(task.exception())})
