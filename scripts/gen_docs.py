"""Generates the reference parts of docs/ from their single sources, or checks them.

    python scripts/gen_docs.py           # rewrite the generated sections in place
    python scripts/gen_docs.py --check   # exit 1 and name the stale files (tests run this)

Sources: the chart's values.yaml (each value's "# --" comment) and the operator's
deployment template (which setting a value becomes), the settings classes (their field
descriptions), the MediaImport CRD (its schema's descriptions and printer columns), and the
API's OpenAPI document (its operations and answers).
Each generated section sits between <!-- NAME:begin --> and <!-- NAME:end --> markers;
everything around them is written by hand.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts/mediaimport"
CRD = CHART / "files/mediaimports.mediaimport.dev.yaml"
Path_ = tuple[str, ...]


# -- the chart's values ----------------------------------------------------------------
def value_comments(text: str) -> dict[Path_, str]:
    """Dotted value paths -> their "# --" comment. A commented key is documented as a
    whole (its sub-keys are its default, not separate values)."""
    comments: dict[Path_, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    inside: int | None = None  # indentation of the documented key being skipped over
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if inside is not None and stripped and indent > inside:
            continue
        inside = None
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped[1:].strip())
            continue
        match = re.match(r"^(\s*)([A-Za-z0-9_.-]+):", line)
        if not stripped or not match:
            pending = None
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key in stack), match.group(2))
        stack.append((indent, match.group(2)))
        if pending is not None:
            comments[path] = " ".join(pending)
            inside = indent
        pending = None
    return comments


def documented_values() -> list[tuple[Path_, Any, str]]:
    """(path, default, description) of every value; raises when one is undocumented."""
    text = (CHART / "values.yaml").read_text()
    comments = value_comments(text)
    rows: list[tuple[Path_, Any, str]] = []

    def walk(node: Any, path: Path_) -> None:
        if path in comments:
            rows.append((path, node, comments[path]))
        elif isinstance(node, dict) and node:
            for key, child in node.items():
                walk(child, (*path, key))
        else:
            raise ValueError(f"values.yaml: {'.'.join(path)} has no '# --' comment")

    for key, child in yaml.safe_load(text).items():
        walk(child, (key,))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    if value in ("", [], {}, None):
        return "" if value is None else f"`{json.dumps(value)}`"
    return f"`{_cell(json.dumps(value, separators=(', ', ': ')))}`"


def values_table() -> str:
    lines = ["| value | default | description |", "|---|---|---|"]
    for path, default, description in documented_values():
        lines.append(f"| `{'.'.join(path)}` | {_default(default)} | {_cell(description)} |")
    return "\n".join(lines)


def chart_sources(template: Path, prefixes: dict[str, str]) -> dict[str, list[str]]:
    """Environment variable -> the values a deployment template sets it from."""
    lines = template.read_text().splitlines()
    sources: dict[str, list[str]] = {}
    for index, line in enumerate(lines):
        entry = re.match(r"^(\s*)- name: ([A-Z][A-Z0-9_]+)(.*)$", line)
        if not entry:
            continue
        depth, body = len(entry.group(1)), [entry.group(3)]
        for following in lines[index + 1:]:
            if len(following) - len(following.lstrip()) <= depth:
                break
            body.append(following)
        refs: list[str] = []
        for ref in re.findall(r"(\.Values\.[\w.]+|\$\w+\.[\w.]+)", "\n".join(body)):
            for prefix, replacement in prefixes.items():
                if ref.startswith(prefix):
                    refs.append(replacement + ref[len(prefix):])
        if refs:
            sources[entry.group(2)] = sorted(set(refs))
    return sources


# -- settings classes ------------------------------------------------------------------
def settings_table(settings: Any, prefix: str, chart: dict[str, list[str]]) -> str:
    lines = ["| variable | default | chart value | description |", "|---|---|---|---|"]
    for name, field in settings.model_fields.items():
        env = f"{prefix}{name.upper()}"
        if field.default_factory in (list, dict):
            default = _default(field.default_factory())
        elif field.default_factory is not None:
            default = "(computed, see the description)"
        else:
            default = _default(field.default)
        values = ", ".join(f"`{v}`" for v in chart.get(env, [])) or "—"
        lines.append(f"| `{env}` | {default} | {values} | {_cell(field.description or '')} |")
    return "\n".join(lines)


def _importable() -> None:
    """The packages' sources on sys.path (the script runs without an installed project)."""
    for folder in ("api", "operator", "job-image"):
        if str(ROOT / folder) not in sys.path:
            sys.path.insert(0, str(ROOT / folder))


def operator_settings() -> str:
    _importable()
    from mediaimport_operator.settings import Settings  # noqa: PLC0415

    chart = chart_sources(CHART / "templates/operator/deployment.yaml",
                          {".Values.": "", "$op.": "operator."})
    return settings_table(Settings, "MEDIAIMPORT_", chart)


def api_settings() -> str:
    _importable()
    from mediaimport_api.settings import Settings  # noqa: PLC0415

    chart = chart_sources(CHART / "templates/api/deployment.yaml",
                          {".Values.": "", "$api.": "api."})
    return settings_table(Settings, "MEDIAIMPORT_API_", chart)


def api_operations() -> str:
    """Every operation of the API's OpenAPI document with the answers it may give."""
    _importable()
    from mediaimport_api.app import create_app  # noqa: PLC0415
    from mediaimport_api.settings import Settings  # noqa: PLC0415

    document = create_app(Settings()).openapi()
    rows = ["| operation | what | answers |", "|---|---|---|"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = ", ".join(f"{code} {_cell(answer.get('description', ''))}"
                                for code, answer in sorted(operation.get("responses", {}).items()))
            rows.append(f"| `{method.upper()} {path}` | {_cell(operation.get('summary', ''))} "
                        f"| {answers} |")
    return "\n".join(rows)


# -- the MediaImport CRD ---------------------------------------------------------------
def _schema_rows(schema: dict[str, Any], path: str, required: bool) -> Iterator[str]:
    kind = schema.get("type", "")
    if kind == "array":
        kind = f"array of {schema.get('items', {}).get('type', 'object')}"
    notes: list[str] = []
    if required:
        notes.append("required")
    for key, label in (("enum", "one of"), ("default", "default"), ("pattern", "pattern"),
                       ("format", "format"), ("minimum", "≥"), ("maximum", "≤"),
                       ("minLength", "length ≥"), ("maxLength", "length ≤"),
                       ("maxProperties", "at most keys")):
        if key in schema:
            value = schema[key]
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            notes.append(f"{label} `{shown}`")
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        notes.append("free-form")
    description = " ".join(str(schema.get("description", "")).split())
    extra = f" ({'; '.join(notes)})" if notes else ""
    yield f"| `{path}` | {kind} | {_cell(description + extra)} |"
    children = schema.get("properties") or {}
    needed = set(schema.get("required") or [])
    for name, child in children.items():
        yield from _schema_rows(child, f"{path}.{name}", name in needed)
    items = schema.get("items") or {}
    for name, child in (items.get("properties") or {}).items():
        yield from _schema_rows(child, f"{path}[].{name}", name in set(items.get("required") or []))


def crd_reference() -> str:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    root = version["schema"]["openAPIV3Schema"]
    names = crd["spec"]["names"]
    shorts = ", ".join(f"`{n}`" for n in names.get("shortNames", []))
    categories = ", ".join(f"`{n}`" for n in names.get("categories", []))
    lines = [f"`{crd['spec']['group']}/{version['name']}`, kind `{names['kind']}`"
             f" (plural `{names['plural']}`, short names {shorts}, categories {categories};"
             f" {crd['spec']['scope'].lower()}).", "",
             "### Columns of `kubectl get mediaimports`", "",
             "| column | shown | from | description |", "|---|---|---|---|"]
    for column in version.get("additionalPrinterColumns", []):
        shown = "with `-o wide`" if column.get("priority", 0) > 0 else "always"
        lines.append(f"| {column['name']} | {shown} | `{_cell(column['jsonPath'])}` | "
                     f"{_cell(column.get('description', ''))} |")
    for part in ("spec", "status"):
        schema = root["properties"][part]
        lines += ["", f"### {part}", "", "| field | type | description |", "|---|---|---|"]
        lines += list(_schema_rows(schema, part, part in set(root.get("required") or [])))[1:]
    return "\n".join(lines)


# -- the files -------------------------------------------------------------------------
SECTIONS: dict[str, dict[str, Callable[[], str]]] = {
    "docs/configuration.md": {"values": values_table, "operator-settings": operator_settings,
                              "api-settings": api_settings},
    "docs/mediaimport.md": {"crd": crd_reference},
    "docs/api.md": {"openapi": api_operations},
}


def regenerate(text: str, sections: dict[str, Callable[[], str]], name: str) -> str:
    for section, build in sections.items():
        begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
        if begin not in text or end not in text:
            raise ValueError(f"{name}: the markers of '{section}' are missing")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}\n{build()}\n{end}{tail}"
    return text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, sections in SECTIONS.items():
        path = ROOT / name
        current = path.read_text()
        fresh = regenerate(current, sections, name)
        if fresh != current:
            stale.append(name)
            if not check:
                path.write_text(fresh)
    if check and stale:
        print(f"stale: {', '.join(stale)} (run python scripts/gen_docs.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
