"""Events about MediaImports, as the operator posts them (core/v1, like kopf's)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

from mediaimport_operator.events import MAX_MESSAGE, EventPoster, cut, event_body
from mediaimport_operator.model import ObjectRef
from mediaimport_operator.status import Event

REF = ObjectRef(namespace="media", name="sunset", uid="u-1")


def test_the_event_names_its_import_and_its_reporter() -> None:
    now = datetime(2026, 11, 24, 12, 0, 1, 250000, tzinfo=UTC)
    body = event_body(REF.body, Event("Normal", "JobCreated", "Created Job mi-sunset."),
                      component="mediaimport-operator", instance="operator-0", now=now)
    assert body["metadata"] == {"namespace": "media", "generateName": "mediaimport-"}
    assert body["involvedObject"] == {"apiVersion": "mediaimport.dev/v1alpha1",
                                      "kind": "MediaImport", "namespace": "media",
                                      "name": "sunset", "uid": "u-1"}
    assert (body["type"], body["reason"], body["message"]) == (
        "Normal", "JobCreated", "Created Job mi-sunset.")
    assert body["reportingComponent"] == body["source"]["component"] == "mediaimport-operator"
    assert body["reportingInstance"] == "operator-0"
    assert body["eventTime"] == "2026-11-24T12:00:01.250000Z"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-24T12:00:01Z"


def test_a_long_message_keeps_its_start_and_end() -> None:
    message = "start " + "x" * 5000 + " end"
    short = cut(message)
    assert len(short) == MAX_MESSAGE
    assert short.startswith("start ") and short.endswith(" end") and "..." in short
    assert cut("short") == "short"


def test_events_below_the_level_are_not_queued() -> None:
    def poster(level: int) -> EventPoster:
        # Queuing makes no request: no client is needed.
        return EventPoster(cast(Any, None), component="c", instance="i", level=level)

    warnings_only = poster(logging.WARNING)
    warnings_only.post(REF.body, Event("Normal", "Imported", "Done."))
    warnings_only.post(REF.body, Event("Warning", "AttemptFailed", "Again."))
    assert warnings_only.pending() == 1
    everything = poster(logging.INFO)
    everything.post(REF.body, Event("Normal", "Imported", "Done."))
    assert everything.pending() == 1


def test_a_listed_body_without_kind_still_names_a_mediaimport() -> None:
    listed = {"metadata": {"namespace": "media", "name": "sunset", "uid": "u-1"}}
    body = event_body(listed, Event("Warning", "StartRetry", "Later."), component="c",
                      instance="i", now=datetime.now(UTC))
    assert body["involvedObject"]["apiVersion"] == "mediaimport.dev/v1alpha1"
    assert body["involvedObject"]["kind"] == "MediaImport"
