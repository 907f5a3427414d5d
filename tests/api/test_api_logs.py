"""The API's JSON log lines: one object per record, the record's own extra fields kept."""

from __future__ import annotations

import json
import logging

from mediaimport_api.logs import JsonFormatter


def _line(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1,
                               "Uvicorn running on %s", ("http://0.0.0.0:8000",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    document: dict[str, object] = json.loads(JsonFormatter().format(record))
    return document


def test_a_record_becomes_one_object_with_its_extra_fields() -> None:
    line = _line(import_name="imp-1")
    assert line["level"] == "INFO"
    assert line["logger"] == "uvicorn.error"
    assert line["message"] == "Uvicorn running on http://0.0.0.0:8000"
    assert line["import_name"] == "imp-1"


def test_uvicorns_terminal_colour_copy_of_the_message_is_left_out() -> None:
    # uvicorn passes the message again with ANSI escapes for terminals; in JSON it is noise.
    line = _line(color_message="Uvicorn running on \x1b[1m%s\x1b[0m")
    assert "color_message" not in line
