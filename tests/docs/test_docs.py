"""The docs match the code: generated references current, every failure reason documented,
values and schema in step, links that resolve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from mediaimport_job.result import FailureReason
from mediaimport_operator import status

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHART = ROOT / "charts/mediaimport"


def test_generated_references_are_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts/gen_docs.py"), "--check"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def _headings(text: str, section: str) -> set[str]:
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^### (\w+)$", body, re.MULTILINE))


def test_every_condition_reason_has_its_troubleshooting_entry() -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    recorded = {status.REASON_ROW_UP_TO_DATE, status.REASON_DATABASE_UNAVAILABLE,
                status.REASON_ROW_REJECTED, status.REASON_RECORDING_DISABLED}
    ours = {value for name, value in vars(status).items()
            if name.startswith("REASON_") and isinstance(value, str)}
    succeeded = (ours - recorded) | {reason.value for reason in FailureReason}
    assert _headings(text, "Reasons of the Succeeded condition") == succeeded
    assert _headings(text, "Reasons of the Recorded condition") == recorded


def _tree(values: Any) -> set[str]:
    paths: set[str] = set()

    def walk(node: Any, path: str) -> None:
        paths.add(path)
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else key)

    walk(values, "")
    return paths - {""}


def _schema_nodes(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every property path of the schema -> its node ($refs followed)."""
    definitions = schema["definitions"]
    nodes: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], path: str) -> None:
        if "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[1]]
        if path:
            nodes[path] = node
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}" if path else key)

    walk(schema, "")
    return nodes


def test_values_and_schema_name_the_same_settings() -> None:
    """Every default has a schema entry and every schema property a default. Free-form
    maps (resources, podLabels, ...) are leaves: their keys need no entry of their own;
    of properties the schema forbids together (minAvailable/maxUnavailable), one has the
    default."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    nodes = _schema_nodes(schema)
    values = _tree(yaml.safe_load((CHART / "values.yaml").read_text()))
    free = {path for path, node in nodes.items() if not node.get("properties")}

    def covered(path: str) -> bool:
        parts = path.split(".")
        return path in nodes or any(".".join(parts[:i]) in free for i in range(1, len(parts)))

    assert sorted(p for p in values if not covered(p)) == [], "values the schema does not define"
    exclusive = {f"{path}.{name}" for path, node in nodes.items()
                 for name in (node.get("not") or {}).get("required", [])}
    missing = {p for p in nodes if p not in values and p not in exclusive}
    assert sorted(missing) == [], "schema properties without a default in values.yaml"


def test_relative_links_resolve() -> None:
    for doc in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
